"""Training the whole Muse cascade, stage by stage, into one folder.

- :mod:`~tinymuse.cascade.presets`: the presets, as data (the only preset table);
- :mod:`~tinymuse.cascade.stages`: the recipe: each stage, what it trains and in what order;
- :mod:`~tinymuse.cascade.runs`: the plumbing: running the stages, resuming, training
  further, and the run's record (``cascade.json``).

``tinymuse train`` is a thin command over :func:`train_cascade`, :func:`train_more` and
:func:`more_images`.
"""
from .presets import PRESETS, CascadePreset, changed
from .runs import (RECORD, SCHEDULE_KEYS, load_record, more_images, preset_differences,
                   train_cascade, train_more)
from .stages import (OPTIONAL_STAGES, STAGES, TRANSFORMER_STAGES, VALIDATION_SCENES,
                     CascadeError, stage_paths)

__all__ = ["PRESETS", "CascadePreset", "changed", "STAGES", "OPTIONAL_STAGES",
           "TRANSFORMER_STAGES", "VALIDATION_SCENES", "CascadeError", "stage_paths",
           "train_cascade", "train_more", "more_images", "load_record", "preset_differences",
           "RECORD", "SCHEDULE_KEYS"]
