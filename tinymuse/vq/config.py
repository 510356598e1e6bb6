"""The configuration of the VQ image tokenizer: a plain dataclass, saved as JSON.

:class:`VQConfig` says what the model *is* (it is stored next to the weights, so
a checkpoint can rebuild its own model; how it trains is a
:class:`tinymuse.training.TrainConfig`). :func:`stage_config` gives the two defaults of
the Muse cascade:

=============  ===========  ==========  =====================================
stage          image        tokens      used by
=============  ===========  ==========  =====================================
``base``       32 × 32      8 × 8       the base transformer
``superres``   64 × 64      16 × 16     the super-resolution transformer
=============  ===========  ==========  =====================================

Both are sized for the shapes world on a laptop CPU; for real photographs on a
GPU raise ``channels``, ``num_res_blocks`` and ``codebook_size``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

CODEBOOK_UPDATES = ("ema", "loss")


@dataclass
class VQConfig:
    """The architecture of a VQ tokenizer (encoder → quantizer → decoder).

    ``channel_mult`` lists the width of each resolution level as a multiple of
    ``channels``; every level after the first halves the image, so
    ``channel_mult=(1, 2, 2)`` downsamples by 2² = 4 (32 × 32 → 8 × 8 tokens)
    and ``(1, 1, 2, 2)`` by 8.
    """

    image_size: int = 32
    in_channels: int = 3
    channels: int = 16
    channel_mult: tuple[int, ...] = (1, 2, 4)
    num_res_blocks: int = 1
    norm_groups: int = 8
    # --- the quantizer
    codebook_size: int = 512
    code_dim: int = 32
    beta: float = 0.25                 # weight of the commitment loss
    codebook_update: str = "ema"       # "ema": moving averages; "loss": a gradient on the codebook loss
    ema_decay: float = 0.99
    restart_dead_codes: bool = True    # move unused codes onto random encoder outputs
    dead_code_threshold: float = 0.03  # a code is dead when its average use per batch falls below this
    l2_normalize: bool = False         # cosine-similarity codes (improved VQGAN)

    def __post_init__(self):
        self.channel_mult = tuple(int(m) for m in self.channel_mult)
        if not self.channel_mult or min(self.channel_mult) < 1:
            raise ValueError(f"channel_mult must be a non-empty tuple of positive ints, "
                             f"got {self.channel_mult}")
        if self.image_size % self.downsample:
            raise ValueError(f"image_size {self.image_size} is not divisible by the "
                             f"downsampling factor {self.downsample} (from channel_mult "
                             f"{self.channel_mult}); pick a multiple of {self.downsample}")
        for width in self.widths:
            if width % self.norm_groups:
                raise ValueError(f"channel width {width} is not divisible by norm_groups "
                                 f"{self.norm_groups}; change channels or norm_groups")
        if self.codebook_update not in CODEBOOK_UPDATES:
            raise ValueError(f"codebook_update must be one of {CODEBOOK_UPDATES}, "
                             f"got {self.codebook_update!r}")
        if not 0.0 < self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must lie in (0, 1), got {self.ema_decay}")
        if self.codebook_size < 2 or self.code_dim < 1:
            raise ValueError("codebook_size must be at least 2 and code_dim at least 1")

    @property
    def downsample(self) -> int:
        """How many pixels one token spans along each side."""
        return 2 ** (len(self.channel_mult) - 1)

    @property
    def token_size(self) -> int:
        """Tokens along each side of the grid: image_size // downsample."""
        return self.image_size // self.downsample

    @property
    def widths(self) -> tuple[int, ...]:
        """Channels at each resolution level, from the full image down."""
        return tuple(self.channels * m for m in self.channel_mult)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["channel_mult"] = list(self.channel_mult)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "VQConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown VQConfig fields {sorted(unknown)}")
        return cls(**d)


def base_config() -> VQConfig:
    """32 × 32 images → 8 × 8 tokens."""
    return VQConfig(image_size=32)


def superres_config() -> VQConfig:
    """64 × 64 images → 16 × 16 tokens."""
    return VQConfig(image_size=64)


STAGES = {"base": base_config, "superres": superres_config}


def stage_config(stage: str) -> VQConfig:
    """The default tokenizer of a stage: "base" or "superres"."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; choose one of {sorted(STAGES)}")
    return STAGES[stage]()
