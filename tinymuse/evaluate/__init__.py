"""Measuring what the models draw, with the shapes oracle instead of eyes.

- :mod:`~tinymuse.evaluate.oracle`: does an image show what its caption says, attribute by
  attribute (:func:`score_image`, :func:`score_prompts`);
- :mod:`~tinymuse.evaluate.prompts`: the prompt sets scores are measured on;
- :mod:`~tinymuse.evaluate.monitor`: sample grids and scores while a stage trains;
- :mod:`~tinymuse.evaluate.scoring`: a whole pipeline on prompt sets (``tinymuse eval``).
"""
from .oracle import ATTRIBUTES, OracleReport, score_image, score_prompts
from .prompts import PROMPT_KINDS, evaluation_prompts, monitor_prompts
from .monitor import SampleMonitor, base_sampler, superres_monitor, superres_sampler
from .scoring import score_pipeline

__all__ = ["ATTRIBUTES", "OracleReport", "score_image", "score_prompts", "PROMPT_KINDS",
           "evaluation_prompts", "monitor_prompts", "SampleMonitor", "base_sampler",
           "superres_sampler", "superres_monitor", "score_pipeline"]
