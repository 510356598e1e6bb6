"""Training: one loop, and the recipe of each stage that feeds it.

- :mod:`~tinymuse.training.loop`: :func:`fit`, the loop every stage trains with (AdamW with
  decay groups, warm-up + cosine, clipping, the NaN stop, EMA, checkpoints with exact resume,
  the JSONL log, progress, periodic evaluations), and its :class:`TrainConfig`;
- :mod:`~tinymuse.training.text`: the text encoder, by masked language modelling;
- :mod:`~tinymuse.training.vq`: the VQ tokenizers, and fine-tuning their decoders;
- :mod:`~tinymuse.training.transformer`: the base and super-resolution transformers.

Each recipe is "model + loss + batches → fit". The whole cascade, stage after stage, is
:mod:`tinymuse.cascade`.
"""
from .loop import TrainConfig, TrainingDiverged, TrainResult, batch_rows, fit, step_generator

__all__ = ["TrainConfig", "TrainResult", "TrainingDiverged", "fit", "batch_rows",
           "step_generator"]
