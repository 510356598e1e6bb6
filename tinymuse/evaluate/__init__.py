"""Measuring what the models draw, with the shapes oracle instead of eyes.

- :mod:`~tinymuse.evaluate.oracle`: does an image show what its caption says, attribute by
  attribute (:func:`score_image`, :func:`score_prompts`);
- :mod:`~tinymuse.evaluate.stats`: error bars on those scores (standard error, Wilson
  interval, the paired difference of two scores on the same prompts);
- :mod:`~tinymuse.evaluate.prompts`: the prompt sets scores are measured on;
- :mod:`~tinymuse.evaluate.monitor`: sample grids and scores while a stage trains;
- :mod:`~tinymuse.evaluate.scoring`: a whole pipeline on prompt sets (``tinymuse eval``).
"""
from .oracle import ATTRIBUTES, OracleReport, attribute_accuracy, score_image, score_prompts
from .stats import paired_difference, standard_error, wilson_interval
from .prompts import PROMPT_KINDS, evaluation_prompts, monitor_prompts
from .monitor import SampleMonitor, base_sampler, superres_monitor, superres_sampler
from .scoring import score_pipeline

__all__ = ["ATTRIBUTES", "OracleReport", "score_image", "score_prompts", "attribute_accuracy",
           "standard_error", "wilson_interval", "paired_difference", "PROMPT_KINDS",
           "evaluation_prompts", "monitor_prompts", "SampleMonitor", "base_sampler",
           "superres_sampler", "superres_monitor", "score_pipeline"]
