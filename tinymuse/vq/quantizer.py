"""Vector quantization: turning continuous vectors into codebook indices.

The encoder maps every patch of an image to a vector ``z`` (of ``code_dim``
numbers). The quantizer owns a *codebook* of K vectors ``e_1 … e_K`` and
replaces ``z`` by its nearest code,

    k = argmin_j ‖z − e_j‖²,        q = e_k,

so an image becomes a grid of integers k, the tokens a transformer can model.
(van den Oord et al., 2017, "Neural Discrete Representation Learning".)

**Nearest codes as one matrix product.** Expanding the square,
‖z − e‖² = ‖z‖² − 2 z·e + ‖e‖²: for all N vectors and K codes at once that is
one (N, D) @ (D, K) product plus two cheap norms, instead of an (N, K, D)
tensor of differences. ‖z‖² is the same for every code, so the argmin skips it.

**The straight-through estimator.** argmin has no useful gradient, so the
decoder's gradient with respect to ``q`` is handed to ``z`` unchanged:

    z_q = z + sg[q − z]

(``sg`` = stop-gradient = ``.detach()``). Its value is ``q``; its gradient is
the identity with respect to ``z``.

**Losses.** The codebook is pulled towards the encoder outputs and the encoder
is asked to *commit* to its code (β = 0.25 in the paper):

    L = ‖sg[z] − q‖²  (codebook)  +  β ‖z − sg[q]‖²  (commitment).

**EMA codebook** (``update="ema"``, VQ-VAE-2 / van den Oord §A.1). Instead of a
gradient, each code becomes the running mean of the vectors assigned to it:
with n_k vectors and their sum s_k in this batch,

    N_k ← γ N_k + (1 − γ) n_k,      S_k ← γ S_k + (1 − γ) s_k,      e_k = S_k / N_k,

where N_k is Laplace-smoothed, (N_k + ε) / (N + Kε) · N, so no code divides
by zero. The codebook loss is then dropped; the commitment loss stays.

**Codebook collapse and dead-code restarts.** Codes that no encoder output is
near never get updated (neither remedy above reaches them), and training can
end with a handful of codes doing all the work. ``N_k`` doubles as a running
count of how often code k is used; when it falls below ``dead_code_threshold``
the code is moved onto a random encoder output of the current batch, where it
is guaranteed to be someone's nearest code. (The usage counts start at zero,
so the first training step seeds the whole codebook from encoder outputs.)

**Cosine codes** (``l2_normalize=True``, Yu et al., 2022, "Vector-quantized
image modeling with improved VQGAN"): z and the codes are scaled to unit length
before the lookup, so the distance is 2 − 2 cos(z, e) and codes cannot drift
to a different scale than the encoder outputs.

Two numbers describe the codebook in use: *usage*, the share of codes chosen at
least once, and *perplexity*, exp(−Σ_k p_k log p_k) for the code frequencies
p_k: K when all codes are equally frequent, 1 when one code takes everything.
"""
from __future__ import annotations

from dataclasses import dataclass

from .. import backend
from .. import functional as F
from ..nn import Module, Parameter
from ..tensor import Tensor, no_grad


@dataclass
class Quantized:
    """What the quantizer returns for a batch of encoder outputs (B, D, h, w)."""

    z_q: Tensor              # (B, D, h, w): the codes, with the straight-through gradient
    ids: Tensor              # (B, h, w): the integer token of every position
    loss: Tensor             # codebook + β · commitment (a scalar to add to the training loss)
    commitment: float        # ‖z − sg[q]‖² (before the factor β)
    usage: float             # share of the codebook used in this batch
    perplexity: float        # exp(entropy of this batch's code frequencies)


def l2_normalize(x: Tensor, axis: int = -1, eps: float = 1e-6) -> Tensor:
    """x / ‖x‖ along ``axis`` (differentiable)."""
    return x / ((x * x).sum(axis=axis, keepdims=True) + eps).sqrt()


def _l2_normalize_array(x, eps: float = 1e-6):
    xp = backend.get_array_module(x)
    return x / xp.sqrt((x * x).sum(axis=-1, keepdims=True) + eps)


def codebook_statistics(ids, codebook_size: int) -> tuple[float, float]:
    """(usage, perplexity) of the code ids in an integer array of any shape."""
    xp = backend.get_array_module(ids)
    counts = xp.bincount(ids.reshape(-1), minlength=codebook_size)
    p = counts[counts > 0] / ids.size
    entropy = float(-(p * xp.log(p)).sum())
    return float((counts > 0).mean()), float(xp.exp(entropy))


class VectorQuantizer(Module):
    """A codebook of ``codebook_size`` vectors of ``code_dim`` numbers.

    ``update="loss"`` learns the codebook by gradient descent on the codebook
    loss (it is a :class:`Parameter`); ``update="ema"`` keeps it as a buffer
    updated by moving averages in training mode. ``generator`` (a
    :class:`tinymuse.backend.Generator`) picks the encoder outputs that
    restart dead codes.
    """

    def __init__(self, codebook_size: int, code_dim: int, beta: float = 0.25,
                 update: str = "ema", decay: float = 0.99, restart_dead_codes: bool = True,
                 dead_code_threshold: float = 0.03, l2_normalize: bool = False,
                 eps: float = 1e-5, generator=None):
        super().__init__()
        if update not in ("ema", "loss"):
            raise ValueError(f"update must be 'ema' or 'loss', got {update!r}")
        self.codebook_size, self.code_dim = codebook_size, code_dim
        self.beta, self.update, self.decay, self.eps = beta, update, decay, eps
        self.restart_dead_codes, self.dead_code_threshold = restart_dead_codes, dead_code_threshold
        self.l2_normalize = l2_normalize
        self.generator = generator if generator is not None else backend.Generator(0)
        # Small random codes, as in VQGAN: U(−1/K, 1/K).
        codes = self.generator.uniform((codebook_size, code_dim), -1.0 / codebook_size,
                                       1.0 / codebook_size)
        xp = backend.get_array_module(codes)
        if update == "loss":
            self.codebook = Parameter(codes)
        else:
            self.register_buffer("codebook", Tensor(codes))
            self.register_buffer("code_sum", Tensor(xp.zeros_like(codes)))         # S_k
        self.register_buffer("code_count", Tensor(xp.zeros(codebook_size, codes.dtype)))  # N_k

    # ------------------------------------------------------------ look-ups
    def codes(self) -> Tensor:
        """The codebook as used for look-ups (unit length for cosine codes)."""
        return l2_normalize(self.codebook) if self.l2_normalize else self.codebook

    def nearest(self, z) -> Tensor:
        """Index of the nearest code for each row of ``z`` (N, D): argmin_k
        (−2 z·e_k + ‖e_k‖²), one matrix product. Never records a graph."""
        z = z.data if isinstance(z, Tensor) else z
        with no_grad():
            codes = self.codes().data
        if self.l2_normalize:
            z = _l2_normalize_array(z)
        # BEGIN EXERCISE ch04_ex1
        scores = z @ codes.T                          # (N, K): z·e_k
        scores *= -2.0
        scores += (codes * codes).sum(axis=1)         # + ‖e_k‖²
        return Tensor(scores.argmin(axis=1))
        # END EXERCISE

    def embed(self, ids) -> Tensor:
        """Code vectors for integer ids of any shape: ids.shape + (code_dim,)."""
        with no_grad():
            return F.embedding(ids, self.codes())

    # ------------------------------------------------------------- forward
    def forward(self, z: Tensor) -> Quantized:
        """Quantize encoder outputs ``z`` (B, D, h, w); see the module docstring."""
        b, d, h, w = z.shape
        if d != self.code_dim:
            raise ValueError(f"the quantizer expects {self.code_dim}-dimensional vectors "
                             f"(channels), got z of shape {z.shape}")
        z = z.permute(0, 2, 3, 1).reshape(b * h * w, d)     # one row per position
        if self.l2_normalize:
            z = l2_normalize(z)
        ids = self.nearest(z)
        # BEGIN EXERCISE ch04_ex2
        if self.update == "loss":
            q = F.embedding(ids, self.codes())                # gradient reaches the codebook
            loss = F.mse_loss(q, z.detach())
        else:
            q = F.embedding(ids, self.codes().detach())       # a constant: EMA moves the codes
            loss = None
        commitment = F.mse_loss(z, q.detach())
        loss = self.beta * commitment if loss is None else loss + self.beta * commitment
        z_q = z + (q - z).detach()                            # straight-through
        # END EXERCISE
        if self.training:
            with no_grad():
                self._update_codebook(z.data, ids.data)
        usage, perplexity = codebook_statistics(ids.data, self.codebook_size)
        return Quantized(z_q=z_q.reshape(b, h, w, d).permute(0, 3, 1, 2),
                         ids=ids.reshape(b, h, w), loss=loss, commitment=commitment.item(),
                         usage=usage, perplexity=perplexity)

    # ------------------------------------------------------ codebook upkeep
    def _update_codebook(self, z, ids) -> None:
        """Training-mode bookkeeping on raw arrays: running counts, the EMA
        update of the codes, and restarts of dead codes."""
        xp = backend.get_array_module(z)
        # BEGIN EXERCISE ch04_ex3
        gamma = self.decay
        count = self.code_count.data
        count *= gamma
        count += (1.0 - gamma) * xp.bincount(ids, minlength=self.codebook_size).astype(z.dtype)
        if self.update == "ema":
            one_hot = xp.zeros((z.shape[0], self.codebook_size), dtype=z.dtype)
            one_hot[xp.arange(z.shape[0]), ids] = 1.0
            code_sum = self.code_sum.data                             # s_k = Σ_{i: k_i = k} z_i
            code_sum *= gamma
            code_sum += (1.0 - gamma) * (one_hot.T @ z)
            total = count.sum()
            smoothed = (count + self.eps) / (total + self.codebook_size * self.eps) * total
            self.codebook.data[...] = code_sum / smoothed[:, None]
        # END EXERCISE
        if self.restart_dead_codes:
            self._restart_dead_codes(z)

    def _restart_dead_codes(self, z) -> None:
        xp = backend.get_array_module(z)
        # BEGIN EXERCISE ch04_ex4
        dead = xp.flatnonzero(self.code_count.data < self.dead_code_threshold)
        if dead.size == 0:
            return
        n = z.shape[0]
        if n >= dead.size:   # distinct encoder outputs when there are enough
            picks = self.generator.permutation(n, device=backend.device_of(z))[:dead.size]
        else:
            picks = self.generator.integers(0, n, (dead.size,), device=backend.device_of(z))
        fresh = z[picks]
        self.codebook.data[dead] = fresh
        self.code_count.data[dead] = self.dead_code_threshold
        if self.update == "ema":
            self.code_sum.data[dead] = fresh * self.dead_code_threshold
        # END EXERCISE

    def extra_repr(self) -> str:
        return (f"{self.codebook_size}, {self.code_dim}, beta={self.beta}, update={self.update!r}, "
                f"restart_dead_codes={self.restart_dead_codes}, l2_normalize={self.l2_normalize}")
