"""Where the numbers live: NumPy on the CPU, CuPy on a GPU.

Every tensor holds an array from one *array module* (``xp``): ``numpy`` for the
device ``"cpu"`` or ``cupy`` for ``"cuda"``. The two modules share almost all of
their API, so library code asks a tensor for its module (``get_array_module``)
and never names NumPy directly; the same model code then runs on both.

Randomness goes through :class:`Generator`, a seeded NumPy generator whose
samples are moved to the requested device. The same seed therefore gives the
same numbers on the CPU and on the GPU.
"""
from __future__ import annotations

import contextlib
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

try:  # CuPy is optional: `pip install tinymuse[gpu]`.
    import cupy as _cupy
    _CUPY_IMPORT_ERROR: Exception | None = None
except Exception as error:  # ImportError, or a CUDA library that fails to load
    _cupy = None
    _CUPY_IMPORT_ERROR = error

DEVICES = ("cpu", "cuda")
DEFAULT_DTYPE = np.float32
_default_device = "cpu"


def cuda_available() -> bool:
    """True when CuPy imports and sees at least one GPU."""
    if _cupy is None:
        return False
    try:
        return _cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


class DeviceError(RuntimeError):
    """The device asked for cannot be used here (no CuPy, or no GPU)."""


def check_device(device: str) -> str:
    """``device`` itself if it can be used here; otherwise a one-line error saying why."""
    if device not in DEVICES:
        raise ValueError(f"unknown device {device!r}; choose one of {DEVICES}")
    if device == "cuda" and not cuda_available():
        reason = (f"CuPy failed to import ({_CUPY_IMPORT_ERROR})" if _cupy is None
                  else "CuPy found no GPU")
        raise DeviceError(f"device 'cuda' is not available: {reason}. "
                           "Install the GPU extra with `pip install tinymuse[gpu]` "
                           "on a machine with an NVIDIA GPU, or use device='cpu'.")
    return device


def xp_for(device: str):
    """The array module for a device name: numpy for 'cpu', cupy for 'cuda'."""
    return np if check_device(device) == "cpu" else _cupy


def get_array_module(array):
    """The array module (numpy or cupy) that owns ``array``."""
    if _cupy is not None and isinstance(array, _cupy.ndarray):
        return _cupy
    return np


def device_of(array) -> str:
    """'cuda' for a CuPy array, 'cpu' for anything else."""
    return "cuda" if get_array_module(array) is not np else "cpu"


def to_device(array, device: str):
    """Copy ``array`` to ``device`` (no copy when it is already there)."""
    if device_of(array) == check_device(device):
        return array
    if device == "cpu":
        return _cupy.asnumpy(array)
    return _cupy.asarray(array)


def to_numpy(array) -> np.ndarray:
    """A NumPy array with the same values, wherever ``array`` lives."""
    return to_device(array, "cpu")


# The variables that set how many threads the BLAS uses, in the order they are read.
THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def cpu_threads() -> int:
    """How many threads element-wise kernels use on the CPU: the first of
    :data:`THREAD_VARIABLES` that is set (so ``OPENBLAS_NUM_THREADS=1`` makes the
    whole step serial, matrix products and all), otherwise the cores this process may
    run on."""
    for name in THREAD_VARIABLES:
        value = os.environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


_pool: tuple[int, int, ThreadPoolExecutor] | None = None  # (process id, threads, pool)


def _thread_pool(threads: int) -> ThreadPoolExecutor:
    """The helper threads, made on first use; made again in a forked child (a fork copies
    no threads) or when the thread count changed."""
    global _pool
    if _pool is None or _pool[:2] != (os.getpid(), threads):
        _pool = (os.getpid(), threads, ThreadPoolExecutor(threads - 1, "tinymuse"))
    return _pool[2]


def run_in_parallel(kernel, parts: list) -> None:
    """``kernel(part)`` for every part, the parts shared out over :func:`cpu_threads`
    threads in contiguous runs, the calling thread taking the first run.

    Why threads help: NumPy lets go of Python's global lock while a ufunc's loop runs, so
    kernels made of ufuncs on large arrays (an element-wise pass over a block of rows, an
    optimizer's update of one slice) run on all cores at once, as the BLAS does for matrix
    products. Each element is computed by the same operations whichever thread takes it, so
    the result is the same to the last bit for any thread count. With one thread or one
    part (on a GPU a caller passes one part: the whole array), the parts run here in turn.
    """
    runs = [parts[piece] for piece in split_evenly(len(parts), cpu_threads())]
    if len(runs) <= 1:
        _run_all(kernel, parts)
        return
    pending = [_thread_pool(len(runs)).submit(_run_all, kernel, run) for run in runs[1:]]
    _run_all(kernel, runs[0])
    for future in pending:
        future.result()  # waits, and raises here what a helper thread raised


def _run_all(kernel, run: list) -> None:
    for part in run:
        kernel(part)


# The fewest numbers an operation must cover before it is worth cutting into one piece per
# thread: below it, handing the pieces to threads costs more than it saves.
MIN_PARALLEL_SIZE = 1 << 16


def split_evenly(length: int, parts: int) -> list:
    """``parts`` contiguous slices covering ``range(length)``, as even as whole numbers allow
    (fewer when there are fewer than ``parts`` items, none for none)."""
    parts = min(parts, length)
    return [slice(i * length // parts, (i + 1) * length // parts) for i in range(parts)]


def thread_slices(xp, length: int, size: int) -> list:
    """Slices of ``range(length)`` for :func:`run_in_parallel`: one per CPU thread when the
    arrays are NumPy's and the work covers at least :data:`MIN_PARALLEL_SIZE` numbers
    (``size``), otherwise one slice of everything (on a GPU, one kernel per operation)."""
    threads = cpu_threads() if xp is np and size >= MIN_PARALLEL_SIZE else 1
    return split_evenly(length, threads)


def set_default_device(device: str) -> None:
    """Device for tensors created without an explicit ``device=``."""
    global _default_device
    _default_device = check_device(device)


def get_default_device() -> str:
    return _default_device


class Generator:
    """A seeded source of random numbers for any device.

    Samples are drawn with NumPy's PCG64 generator and then moved to the
    requested device, so a seed means the same numbers everywhere.
    """

    def __init__(self, seed: int | None = None):
        self.seed = seed
        self._rng = np.random.default_rng(seed)

    def manual_seed(self, seed: int) -> "Generator":
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        return self

    def _out(self, array, dtype, device):
        if dtype is not None:
            array = array.astype(dtype, copy=False)
        return to_device(array, device or _default_device)

    def random(self, shape, dtype=DEFAULT_DTYPE, device=None):
        """Uniform samples in [0, 1).

        Drawn directly in float32 when float32 is asked for: a float64 draw
        rounded to float32 could land on 1.0."""
        native = np.float32 if np.dtype(dtype) == np.float32 else np.float64
        return self._out(self._rng.random(shape, dtype=native), dtype, device)

    def normal(self, shape, mean=0.0, std=1.0, dtype=DEFAULT_DTYPE, device=None):
        return self._out(self._rng.normal(mean, std, shape), dtype, device)

    def uniform(self, shape, low=0.0, high=1.0, dtype=DEFAULT_DTYPE, device=None):
        return self._out(self._rng.uniform(low, high, shape), dtype, device)

    def integers(self, low, high, shape, device=None):
        """Integers in [low, high)."""
        return self._out(self._rng.integers(low, high, shape), np.int64, device)

    def permutation(self, n: int, device=None):
        return self._out(self._rng.permutation(n), np.int64, device)

    def gumbel(self, shape, dtype=DEFAULT_DTYPE, device=None):
        """Standard Gumbel samples, −log(E) with E ~ Exponential(1).

        E is drawn in float64 (a float32 draw can be exactly 0, giving +inf)."""
        e = self._rng.standard_exponential(shape).astype(dtype, copy=False)
        np.log(e, out=e)
        np.negative(e, out=e)
        return self._out(e, None, device)

    def state_dict(self) -> dict:
        return self._rng.bit_generator.state

    def load_state_dict(self, state: dict) -> None:
        self._rng.bit_generator.state = state


default_generator = Generator(0)


def manual_seed(seed: int) -> Generator:
    """Reseed the generator used when no ``generator=`` is passed."""
    return default_generator.manual_seed(seed)


@contextlib.contextmanager
def default_generator_kept():
    """Run the block, then put the default generator back where it was. Building a model
    draws its initial weights from the default generator; when the weights are loaded from a
    file right after, that draw should leave no trace on the user's random numbers."""
    state = default_generator.state_dict()
    try:
        yield
    finally:
        default_generator.load_state_dict(state)
