"""The one home of sampling settings: a checked, frozen Sampling per stage, and the helpers
that read prompts. The command, the pipeline and the monitors all take their defaults here."""
import dataclasses
import math

import numpy as np
import pytest

from tinymuse import cli, sampling
from tinymuse.sampling import BASE, EDIT, EDIT_SUPERRES, SUPERRES, Sampling, SamplingError


def test_the_defaults_are_valid_frozen_settings():
    for default in (BASE, SUPERRES, EDIT, EDIT_SUPERRES):
        assert isinstance(default, Sampling)
        with pytest.raises(dataclasses.FrozenInstanceError):
            default.steps = 3
    assert EDIT_SUPERRES.guidance_scale == EDIT.guidance_scale
    assert (EDIT_SUPERRES.temperature, EDIT_SUPERRES.top_k) == (EDIT.temperature, EDIT.top_k)
    assert EDIT_SUPERRES.steps == SUPERRES.steps


@pytest.mark.parametrize("setting, value, requirement", [
    ("steps", 0, "whole number >= 1"), ("steps", 2.5, "whole number >= 1"),
    ("steps", True, "whole number >= 1"), ("iterations", 0, "whole number from 1 to 1000"),
    ("iterations", 100000, "whole number from 1 to 1000"),
    ("temperature", -1.0, "number from 0 to 100"), ("temperature", math.inf, "from 0 to 100"),
    ("choice_temperature", math.nan, "from 0 to 100"), ("guidance_scale", "3", "from 0 to 100"),
    ("guidance_scale", 1e308, "from 0 to 100"), ("guidance_scale", math.inf, "from 0 to 100"),
    ("choice_temperature", 1e300, "from 0 to 100"),
    ("guidance_schedule", "cosine", "must be one of"), ("top_k", 0, "whole number >= 1 or None"),
    ("top_k", 2.0, "whole number"), ("fraction", 0.0, r"must lie in \(0, 1\]"),
    ("fraction", 1.5, r"must lie in \(0, 1\]"),
])
def test_a_setting_that_cannot_work_is_refused_by_name(setting, value, requirement):
    with pytest.raises(SamplingError, match=f"^{setting} .*{requirement}") as error:
        BASE.replace(**{setting: value})
    assert error.value.setting == setting
    assert error.value.renamed("--flag").startswith("--flag ")


def test_the_largest_allowed_values_are_accepted():
    settings = BASE.replace(temperature=100, choice_temperature=100, guidance_scale=100,
                            iterations=1000)
    assert (settings.temperature, settings.iterations) == (100.0, 1000)


def test_a_grid_refuses_more_steps_than_tokens_and_top_k_beyond_its_codebook():
    BASE.replace(steps=64, top_k=16).check_grid(num_tokens=64, codebook_size=16)
    with pytest.raises(SamplingError, match="^steps must be at most the 64 tokens") as error:
        BASE.replace(steps=65).check_grid(num_tokens=64, codebook_size=16)
    assert error.value.setting == "steps"
    with pytest.raises(SamplingError, match="^top_k must be at most the 16 codes"):
        BASE.replace(top_k=17).check_grid(num_tokens=64, codebook_size=16)


def test_replace_refuses_unknown_settings_and_leaves_the_default_alone():
    with pytest.raises(TypeError, match=r"no setting\(s\) \['stepz'\]"):
        BASE.replace(stepz=3)
    changed = BASE.replace(steps=3)
    assert changed.steps == 3 and BASE.steps == 24


def test_numbers_become_plain_python_numbers():
    # a NumPy float32 scale would change the dtype of the logits arithmetic
    settings = BASE.replace(steps=np.int64(5), guidance_scale=np.float32(1.5), top_k=np.int32(3))
    assert type(settings.steps) is int and type(settings.top_k) is int
    assert type(settings.guidance_scale) is float and settings.guidance_scale == 1.5


def test_resolve_takes_a_sampling_a_dict_of_changes_or_nothing():
    assert sampling.resolve(BASE) is BASE
    assert sampling.resolve(BASE, {"steps": 4}) == BASE.replace(steps=4)
    assert sampling.resolve(BASE, SUPERRES) is SUPERRES
    with pytest.raises(TypeError, match="dict of changes"):
        sampling.resolve(BASE, 12)


def test_prompts_one_for_all_or_one_each():
    assert sampling.prompt_list("a red circle") == ["a red circle"]
    assert sampling.one_each("a", 3, "image") == ["a", "a", "a"]
    assert sampling.one_each(["a", "b"], 2) == ["a", "b"]
    with pytest.raises(ValueError, match="2 prompts for 3 images"):
        sampling.one_each(["a", "b"], 3, "image")
    assert sampling.negative_prompt_list(None, 2) is None
    assert sampling.negative_prompt_list("x", 2) == ["x", "x"]
    with pytest.raises(ValueError, match="3 negative prompts for 2 prompts"):
        sampling.negative_prompt_list(["a", "b", "c"], 2)
    with pytest.raises(TypeError, match="every prompt must be a string"):
        sampling.prompt_list(["a", None])


def test_the_command_draws_with_the_librarys_defaults_unless_told():
    parser = cli.build_parser()
    for command in (["generate", "a red circle"], ["demo"], ["eval"],
                    ["inpaint", "in.png", "a red circle"]):
        options = cli.generation_settings(parser.parse_args(command))
        assert options["base"] == BASE and options["superres"] == SUPERRES, command
    edit = cli.edit_settings(parser.parse_args(["edit", "in.png", "a red circle"]))
    assert edit["base"] == EDIT and edit["superres"] == EDIT_SUPERRES
    told = cli.edit_settings(parser.parse_args(["edit", "in.png", "a red circle",
                                                "--guidance", "1", "--top-k", "5"]))
    assert told["superres"] == EDIT_SUPERRES.replace(guidance_scale=1.0, top_k=5), \
        "an edit's guidance and top-k reach the super-resolution stage too"
