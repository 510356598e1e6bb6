"""Shared fixtures: one test suite for both backends.

A test that takes the ``device`` fixture runs once on the CPU (NumPy) and once
on the GPU (CuPy); the GPU run is marked ``gpu`` and skips cleanly where CuPy or
a GPU is missing. Run only the GPU half with ``pytest -m gpu``.
"""
import os
import re

# Tests multiply tiny matrices, where BLAS threads cost more than they save (and
# on a busy 2-core machine make the suite several times slower). Set before NumPy
# loads; an explicit setting in the environment wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tinymuse import backend  # noqa: E402

requires_gpu = pytest.mark.skipif(not backend.cuda_available(),
                                  reason="needs CuPy and an NVIDIA GPU (pip install tinymuse[gpu])")


@pytest.fixture(params=["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, requires_gpu])])
def device(request):
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(0)


# An exercise's tests (tests/exercises/test_chNN.py) are named test_chNN_exM_...; the name
# gives each its exercise's marker, so `pytest -m ch04_ex2` runs that exercise's tests.
_EXERCISE_TEST = re.compile(r"test_(ch\d\d_ex\d+)_")


def pytest_collection_modifyitems(config, items):
    for item in items:
        match = _EXERCISE_TEST.match(item.name)
        if match:
            item.add_marker(getattr(pytest.mark, match.group(1)))


def pytest_configure(config):
    for chapter in range(1, 13):
        for number in range(1, 10):
            config.addinivalue_line("markers", f"ch{chapter:02d}_ex{number}: the tests of "
                                    f"chapter {chapter}'s exercise {number}")
