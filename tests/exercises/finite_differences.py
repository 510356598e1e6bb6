"""Central finite differences in float64: the reference every exercise's gradient is checked
against."""
import numpy as np


def numeric_gradient(f, arrays, k, weight, eps=1e-6):
    """d/d(arrays[k]) of L = Σ weight · f(*arrays), by central differences (float64)."""
    arrays = [np.array(a, dtype=np.float64) for a in arrays]
    x, out = arrays[k], np.zeros_like(arrays[k])
    for i in np.ndindex(x.shape):
        saved = x[i]
        x[i] = saved + eps
        plus = np.sum(weight * f(*arrays))
        x[i] = saved - eps
        minus = np.sum(weight * f(*arrays))
        x[i] = saved
        out[i] = (plus - minus) / (2 * eps)
    return out
