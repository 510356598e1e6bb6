"""The backend's CPU threads: how many, and running a kernel's parts on them."""
import threading

import numpy as np
import pytest

from tinymuse import backend


@pytest.mark.parametrize("threads", ["1", "2", "5"])
def test_cpu_threads_follows_the_blas_setting(monkeypatch, threads):
    for name in backend.THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", threads)
    assert backend.cpu_threads() == int(threads)
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "3")        # read before OMP_NUM_THREADS
    assert backend.cpu_threads() == 3


def test_cpu_threads_without_a_setting_is_the_usable_cores(monkeypatch):
    for name in backend.THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "none")     # not a number: ignored
    assert 1 <= backend.cpu_threads() <= (backend.os.cpu_count() or 1)


@pytest.mark.parametrize("threads, parts", [("1", 7), ("2", 7), ("3", 2), ("4", 10)])
def test_run_in_parallel_runs_every_part_once_on_up_to_that_many_threads(monkeypatch, threads,
                                                                        parts):
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", threads)
    seen, lock = [], threading.Lock()

    def kernel(part):
        with lock:
            seen.append((part, threading.get_ident()))

    backend.run_in_parallel(kernel, list(range(parts)))
    assert sorted(part for part, _ in seen) == list(range(parts))
    used = {ident for _, ident in seen}
    assert threading.get_ident() in used                  # the caller takes a run itself
    assert len(used) <= min(int(threads), parts)


def test_run_in_parallel_raises_what_a_helper_thread_raised(monkeypatch):
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")

    def kernel(part):
        if part == 3:                                     # in the second run: a helper's
            raise ValueError("part 3 failed")

    with pytest.raises(ValueError, match="part 3 failed"):
        backend.run_in_parallel(kernel, [0, 1, 2, 3])


@pytest.mark.parametrize("length, parts", [(10, 3), (2, 5), (7, 1), (0, 2), (6, 6)])
def test_split_evenly_covers_the_range_once_in_order(length, parts):
    pieces = backend.split_evenly(length, parts)
    assert len(pieces) == min(length, parts)
    covered = [i for piece in pieces for i in range(length)[piece]]
    assert covered == list(range(length))
    sizes = [piece.stop - piece.start for piece in pieces]
    assert not sizes or max(sizes) - min(sizes) <= 1


def test_thread_slices_cut_only_large_numpy_work(monkeypatch):
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "4")
    large, small = backend.MIN_PARALLEL_SIZE, backend.MIN_PARALLEL_SIZE - 1
    assert len(backend.thread_slices(np, 100, large)) == 4
    assert backend.thread_slices(np, 100, small) == [slice(0, 100)]
    assert backend.thread_slices(object(), 100, large) == [slice(0, 100)]   # not NumPy: a GPU
