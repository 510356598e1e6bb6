"""The VQ image tokenizer: images ⇄ grids of integer tokens.

    image (B, 3, H, W) ─Encoder─► z (B, D, h, w) ─VectorQuantizer─► ids (B, h, w)
    ids ─codebook─► q (B, D, h, w) ─Decoder─► image (B, 3, H, W)

with h = H / f for the downsampling factor f. Training minimises
(:meth:`VQTokenizer.training_loss`)

    L = recon(x̂, x) + ‖sg[z] − q‖² + β ‖z − sg[q]‖²

(the codebook term only with ``codebook_update="loss"``; with EMA the codes move by moving
averages inside the forward pass); everything downstream only needs
:meth:`VQTokenizer.encode` and :meth:`VQTokenizer.decode`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .. import backend, checkpoint
from .. import functional as F
from ..nn import Module
from ..tensor import Tensor, no_grad
from .config import VQConfig
from .model import Decoder, Encoder
from .quantizer import Quantized, VectorQuantizer


RECON_LOSSES = ("l1", "mse")


def reconstruction_loss(recon: Tensor, images: Tensor, kind: str = "mse") -> Tensor:
    """The mean absolute ("l1") or squared ("mse") error of a reconstruction, per pixel."""
    if kind not in RECON_LOSSES:
        raise ValueError(f"recon_loss must be one of {RECON_LOSSES}, got {kind!r}")
    return F.l1_loss(recon, images) if kind == "l1" else F.mse_loss(recon, images)


@dataclass
class VQOutput:
    """What one training forward pass returns."""

    recon: Tensor            # (B, 3, H, W) reconstruction, not clipped (the loss sees it raw)
    quantized: Quantized     # ids, the quantizer loss, usage and perplexity


class VQTokenizer(Module):
    """Encoder → vector quantizer → decoder, built from a :class:`VQConfig`.

    ``seed`` fixes the generator that restarts dead codes; the layers'
    initial weights come from ``tinymuse.manual_seed``.
    """

    def __init__(self, config: VQConfig | None = None, seed: int = 0):
        super().__init__()
        self.config = config = config if config is not None else VQConfig()
        self.encoder = Encoder(config)
        self.quantizer = VectorQuantizer(
            config.codebook_size, config.code_dim, beta=config.beta,
            update=config.codebook_update, decay=config.ema_decay,
            restart_dead_codes=config.restart_dead_codes,
            dead_code_threshold=config.dead_code_threshold,
            l2_normalize=config.l2_normalize, generator=backend.Generator(seed))
        self.decoder = Decoder(config)

    # ----------------------------------------------------------- training
    def forward(self, images) -> VQOutput:
        """Reconstruct ``images`` through the codebook; in training mode this
        also updates the codebook (EMA, dead-code restarts)."""
        quantized = self.quantizer(self.encoder(self._check_images(images)))
        return VQOutput(self.decoder(quantized.z_q), quantized)

    def training_loss(self, images, recon_loss: str = "mse"):
        """``(loss, metrics)`` of one training batch: the reconstruction error plus the
        quantizer's loss (module docstring), and the reconstruction and commitment losses,
        the codebook usage and perplexity as floats."""
        images = self._check_images(images)
        out = self(images)
        recon = reconstruction_loss(out.recon, images, recon_loss)
        q = out.quantized
        return recon + q.loss, {"recon": recon.item(), "commit": q.commitment,
                                "usage": q.usage, "perplexity": q.perplexity}

    # ---------------------------------------------------------- inference
    @no_grad()
    def encode(self, images) -> Tensor:
        """Token ids (B, h, w), int64, for images (B, 3, H, W) in [-1, 1].
        Deterministic: it never changes the codebook, in any mode."""
        z = self.encoder(self._check_images(images))
        b, d, h, w = z.shape
        return self.quantizer.nearest(z.permute(0, 2, 3, 1).reshape(b * h * w, d)).reshape(b, h, w)

    @no_grad()
    def decode(self, ids) -> Tensor:
        """Images (B, 3, H, W) clipped to [-1, 1] for token ids (B, h, w)."""
        ids = self._check_ids(ids)
        codes = self.quantizer.embed(ids).permute(0, 3, 1, 2)   # (B, D, h, w)
        return self.decoder(codes).clip(-1.0, 1.0)

    def reconstruct(self, images) -> Tensor:
        """decode(encode(images)): what the tokens keep of an image."""
        return self.decode(self.encode(images))

    # ------------------------------------------------------------- checks
    def _check_images(self, images) -> Tensor:
        c = self.config
        expected = (c.in_channels, c.image_size, c.image_size)
        images = images if isinstance(images, Tensor) else Tensor(images)
        if images.ndim != 4 or tuple(images.shape[1:]) != expected:
            raise ValueError(
                f"this tokenizer takes images of shape (B, {c.in_channels}, {c.image_size}, "
                f"{c.image_size}) (NCHW floats in [-1, 1]), got {tuple(images.shape)}. Resize "
                f"the images to {c.image_size}×{c.image_size} or use a tokenizer built for "
                f"their size (VQConfig(image_size=...)); uint8 HWC pictures convert with "
                f"tinymuse.data.images.to_model_images")
        if images.dtype.kind != "f":
            raise TypeError(f"images must be floats in [-1, 1], got dtype {images.dtype}; "
                            f"convert uint8 pictures with tinymuse.data.images.to_model_images")
        if images.device != self.device:
            images = images.to(self.device)
        return images

    def _check_ids(self, ids) -> Tensor:
        c = self.config
        ids = ids if isinstance(ids, Tensor) else Tensor(ids)
        expected = (c.token_size, c.token_size)
        if ids.ndim != 3 or tuple(ids.shape[1:]) != expected:
            raise ValueError(f"this tokenizer decodes token grids of shape (B, {c.token_size}, "
                             f"{c.token_size}), got {tuple(ids.shape)}")
        if ids.dtype.kind not in "iu":
            raise TypeError(f"token ids must be integers, got dtype {ids.dtype}")
        if ids.device != self.device:
            ids = ids.to(self.device)
        return ids

    # -------------------------------------------------------- save / load
    def save(self, path, metadata: dict | None = None) -> Path:
        """Weights (safetensors) and config (JSON in the same file), atomically."""
        return checkpoint.save(path, self.state_dict(), config=self.config.to_dict(),
                               metadata={"kind": "vq_tokenizer", **(metadata or {})})

    @classmethod
    def load(cls, path, device: str | None = None) -> "VQTokenizer":
        """A tokenizer rebuilt from the config stored in ``path``, with its weights."""
        saved = checkpoint.load(path)
        if saved.config is None or saved.metadata.get("kind") != "vq_tokenizer":
            raise checkpoint.CheckpointError(
                f"{path} is not a saved VQTokenizer (save one with VQTokenizer.save; a "
                f"training run keeps its state in checkpoint.safetensors and the tokenizer in "
                f"tokenizer.safetensors)")
        with backend.default_generator_kept():
            model = cls(VQConfig.from_dict(saved.config))
        model.load_state_dict(saved.tensors)
        if device is not None:
            model.to(device)
        return model.eval()
