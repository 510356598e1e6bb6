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
