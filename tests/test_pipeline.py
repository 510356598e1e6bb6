"""The cascade pipeline: text → base tokens → super-resolution tokens → image; seeds,
per-stage settings, output layouts, saving and loading a directory, and clear errors."""
import json
import shutil

import numpy as np
import pytest
from PIL import Image

import tinymuse
from tinymuse import backend, checkpoint, decoding
from tinymuse.data.grammar import UnknownWordError
from tinymuse.pipeline import FILES, Pipeline, PipelineOutput, per_stage
from tinymuse.text.pretrain import shapes_captions
from tinymuse.text.tokenizer import Tokenizer

PROMPTS = ["a red circle", "two blue squares"]
FAST = dict(base_steps=3, sr_steps=2)
SAMPLED = dict(FAST, temperature=1.0)  # both stages sample (by default SR is greedy)


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer.train(shapes_captions(300, seed=0), vocab_size=200)


@pytest.fixture(scope="module")
def pipeline(tokenizer):
    return Pipeline.tiny(seed=0, tokenizer=tokenizer)


@pytest.fixture(scope="module")
def saved(pipeline, tmp_path_factory):
    return pipeline.save(tmp_path_factory.mktemp("pipeline") / "tiny")


def test_it_is_exported_at_the_top():
    assert tinymuse.Pipeline is Pipeline


def test_generate_gives_images_and_both_token_grids(pipeline):
    out = pipeline.generate(PROMPTS, seed=0, return_tokens=True, **FAST)
    assert isinstance(out, PipelineOutput)
    assert out.images.shape == (2, 3, 64, 64) and out.images.dtype == np.float32
    assert out.images.min() >= -1 and out.images.max() <= 1
    assert out.base_tokens.shape == (2, 8, 8) and out.superres_tokens.shape == (2, 16, 16)
    assert out.base_tokens.max() < 32 and out.superres_tokens.max() < 32  # never [MASK]
    # the images are the super-resolution tokens, decoded
    np.testing.assert_array_equal(out.images, pipeline.decode_tokens(out.superres_tokens))


def test_the_same_seed_gives_the_same_images_and_another_seed_others(pipeline):
    first = pipeline.generate(PROMPTS, seed=7, return_tokens=True, **SAMPLED)
    again = pipeline.generate(PROMPTS, seed=7, return_tokens=True, **SAMPLED)
    other = pipeline.generate(PROMPTS, seed=8, return_tokens=True, **SAMPLED)
    np.testing.assert_array_equal(first.images, again.images)
    np.testing.assert_array_equal(first.superres_tokens, again.superres_tokens)
    assert (first.base_tokens != other.base_tokens).any()
    assert (first.superres_tokens != other.superres_tokens).any()


def test_seed_none_draws_from_the_default_generator(pipeline):
    tinymuse.manual_seed(3)
    a = pipeline.generate(PROMPTS, seed=None, **SAMPLED)
    b = pipeline.generate(PROMPTS, seed=None, **SAMPLED)
    tinymuse.manual_seed(3)
    np.testing.assert_array_equal(pipeline.generate(PROMPTS, seed=None, **SAMPLED), a)
    assert (a != b).any(), "two draws in a row differ"


def test_a_seeded_call_leaves_the_default_generator_alone(pipeline):
    tinymuse.manual_seed(5)
    before = backend.default_generator.state_dict()
    pipeline.generate(PROMPTS, seed=1, **FAST)
    assert backend.default_generator.state_dict() == before


def test_output_layouts_agree(pipeline):
    floats = pipeline.generate(PROMPTS[:1], seed=2, **FAST)
    pictures = pipeline.generate(PROMPTS[:1], seed=2, output="uint8", **FAST)
    pil = pipeline.generate(PROMPTS[:1], seed=2, output="pil", **FAST)
    assert pictures.shape == (1, 64, 64, 3) and pictures.dtype == np.uint8
    np.testing.assert_array_equal(pictures, tinymuse.data.to_uint8_images(floats))
    assert isinstance(pil[0], Image.Image) and pil[0].size == (64, 64)
    np.testing.assert_array_equal(np.asarray(pil[0]), pictures[0])


def test_a_single_prompt_string_is_a_batch_of_one(pipeline):
    np.testing.assert_array_equal(pipeline.generate("a red circle", seed=4, **FAST),
                                  pipeline.generate(["a red circle"], seed=4, **FAST))


@pytest.fixture
def decode_calls(monkeypatch):
    """The keyword arguments of every ``decoding.decode`` call made during the test."""
    calls = []
    original = decoding.decode

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(decoding, "decode", spy)
    return calls


def test_each_stage_gets_its_own_settings(pipeline, decode_calls):
    calls = decode_calls
    pipeline.generate(PROMPTS, base_steps=3, sr_steps=2, guidance_scale=(2.0, 0.5),
                      temperature=(1.5, 0.0), top_k=(4, None), negative_prompt="a green circle",
                      choice_temperature=(2.0, 1.0), guidance_schedule=("constant", "linear"),
                      seed=0)
    base, superres = calls
    assert (base["steps"], base["guidance_scale"], base["temperature"], base["top_k"],
            base["choice_temperature"], base["guidance_schedule"]) == (3, 2.0, 1.5, 4, 2.0,
                                                                       "constant")
    assert (superres["steps"], superres["guidance_scale"], superres["temperature"],
            superres["top_k"], superres["choice_temperature"],
            superres["guidance_schedule"]) == (2, 0.5, 0.0, None, 1.0, "linear")
    assert base["mask_id"] == 32 and superres["mask_id"] == 32
    # the negative prompt is the unconditional branch of both stages
    negative = pipeline.base.encode_prompts(["a green circle"] * 2)
    np.testing.assert_array_equal(base["uncond_condition"].embeddings.numpy(),
                                  negative.embeddings.numpy())
    calls.clear()
    pipeline.generate(PROMPTS, guidance_scale=0.0, seed=0, **FAST)
    assert all(c["uncond_condition"] is None for c in calls), "no guidance, no second branch"
    assert [c["temperature"] for c in calls] == [0.8, 0.0], \
        "by default the base stage samples (a little cooled) and the super-resolution stage " \
        "takes the likeliest"
    assert [c["choice_temperature"] for c in calls] == [0.0, 4.5], \
        "by default the base stage keeps its most confident tokens, without MaskGIT's noise"
    assert [c["guidance_schedule"] for c in calls] == ["linear", "constant"], \
        "by default the base stage's guidance rises over the steps"
    calls.clear()
    pipeline.generate(PROMPTS, temperature=0.7, seed=0, **FAST)
    assert [c["temperature"] for c in calls] == [0.7, 0.7], "one value is for both stages"


def test_training_samples_the_base_stage_as_the_pipeline_does(pipeline, decode_calls):
    from tinymuse.train import base_sampler

    pipeline.generate(PROMPTS, seed=0, **FAST)
    base_sampler(pipeline.base_vq, steps=3)(pipeline.base, PROMPTS)
    from_pipeline, _, from_monitor = decode_calls
    for option in ("temperature", "choice_temperature", "guidance_schedule"):
        assert from_monitor.get(option) == from_pipeline[option], \
            f"the training monitor's scores would not show what users get ({option})"


def test_a_negative_prompt_changes_the_images(pipeline):
    plain = pipeline.generate(PROMPTS, seed=1, guidance_scale=3.0, **SAMPLED)
    negative = pipeline.generate(PROMPTS, seed=1, guidance_scale=3.0,
                                 negative_prompt=["a green circle", "a red square"], **SAMPLED)
    assert (plain != negative).any()


@pytest.mark.parametrize("options, error, message", [
    (dict(base_steps=0), ValueError, "base_steps must be a positive"),
    (dict(sr_steps=2.5), ValueError, "sr_steps must be a positive"),
    (dict(guidance_scale=-1.0), ValueError, "guidance_scale must be a number >= 0"),
    (dict(guidance_scale=(1.0, 2.0, 3.0)), ValueError, r"or a pair \(base, super-resolution\)"),
    (dict(temperature=-0.5), ValueError, "temperature must be a number >= 0"),
    (dict(choice_temperature=(0.0, -1.0)), ValueError, "choice_temperature must be a number"),
    (dict(guidance_schedule="cosine"), ValueError, "guidance_schedule must be one of"),
    (dict(negative_prompt=["a", "b", "c"]), ValueError, "3 negative prompts for 2 prompts"),
    (dict(output="png"), ValueError, "output must be one of"),
    (dict(seed=1.5), TypeError, "seed must be an int or None"),
])
def test_bad_options_get_clear_errors(pipeline, options, error, message):
    with pytest.raises(error, match=message):
        pipeline.generate(PROMPTS, **{**FAST, **options})


def test_bad_prompts_get_clear_errors(pipeline):
    with pytest.raises(UnknownWordError, match="unknown word 'dragon'"):
        pipeline.generate(["a red dragon"], **FAST)
    with pytest.raises(UnknownWordError, match="'zebra'"):
        pipeline.generate(PROMPTS, negative_prompt="a zebra", guidance_scale=1.0, **FAST)
    with pytest.raises(ValueError, match="no prompts given"):
        pipeline.generate([], **FAST)
    with pytest.raises(TypeError, match="every prompt must be a string"):
        pipeline.generate(["a red circle", 3], **FAST)


def test_an_empty_prompt_draws_unconditionally(pipeline):
    assert pipeline.generate([""], seed=0, **FAST).shape == (1, 3, 64, 64)


def test_parts_that_do_not_fit_are_refused(tokenizer, pipeline):
    small = Pipeline.tiny(seed=0, tokenizer=tokenizer, image_size=32)
    with pytest.raises(ValueError, match="do not form a cascade") as error:
        Pipeline.from_components(tokenizer=tokenizer, base_vq=small.base_vq, base=pipeline.base,
                                 superres_vq=pipeline.superres_vq, superres=pipeline.superres)
    assert "base VQ gives 32 codes on 4×4" in str(error.value)
    with pytest.raises(TypeError, match="SuperResTransformer"):
        Pipeline.from_components(tokenizer=tokenizer, base_vq=pipeline.base_vq,
                                 base=pipeline.base, superres_vq=pipeline.superres_vq,
                                 superres=pipeline.base)
    assert per_stage(2.0, "x") == (2.0, 2.0) and per_stage([1, 2], "x") == (1, 2)


def test_tiny_is_deterministic_and_leaves_the_default_generator_alone(tokenizer, pipeline):
    before = backend.default_generator.state_dict()
    again = Pipeline.tiny(seed=0, tokenizer=tokenizer)
    assert backend.default_generator.state_dict() == before
    for model, same in zip(pipeline.models, again.models):
        for (name, a), b in zip(model.state_dict().items(), same.state_dict().values()):
            np.testing.assert_array_equal(a, b, err_msg=name)


# ------------------------------------------------------------------ save / load
def test_save_writes_one_directory_and_load_gives_the_same_images(pipeline, saved):
    names = {p.name for p in saved.iterdir()}
    assert {"pipeline.json", "tokenizer.model", *FILES.values()} <= names
    manifest = json.loads((saved / "pipeline.json").read_text())
    assert manifest["shared_text_encoder"] and manifest["dtype"] == "float32"
    loaded = Pipeline.load(saved)
    assert loaded.superres.text_encoder is loaded.base.text_encoder, "one shared encoder"
    np.testing.assert_array_equal(loaded.generate(PROMPTS, seed=3, **FAST),
                                  pipeline.generate(PROMPTS, seed=3, **FAST))
    # the text encoder is stored once, not inside each transformer's file
    stored = checkpoint.load(saved / FILES["base"]).tensors
    assert not any(name.startswith("text_encoder.") for name in stored)


def test_float16_storage_is_smaller_and_loads_back_as_float32(pipeline, tmp_path):
    half = pipeline.save(tmp_path / "half", dtype="float16")
    full = pipeline.save(tmp_path / "full")
    size = lambda folder: sum(p.stat().st_size for p in folder.glob("*.safetensors"))
    assert size(half) < 0.6 * size(full)
    loaded = Pipeline.load(half)
    for model, original in zip(loaded.models, pipeline.models):
        for (name, param), value in zip(model.named_parameters(),
                                        dict(original.named_parameters()).values()):
            assert param.dtype == np.float32, name
            np.testing.assert_allclose(param.numpy(), value.numpy(), rtol=1e-3, atol=1e-4)
    with pytest.raises(ValueError, match="dtype must be one of"):
        pipeline.save(tmp_path / "bad", dtype="int8")


def test_loading_leaves_the_default_generator_alone(saved):
    before = backend.default_generator.state_dict()
    Pipeline.load(saved)
    assert backend.default_generator.state_dict() == before


def copy_of(saved, tmp_path):
    return shutil.copytree(saved, tmp_path / "copy")


def test_a_missing_directory_or_file_is_named(saved, tmp_path):
    with pytest.raises(FileNotFoundError, match="no pipeline directory"):
        Pipeline.load(tmp_path / "nowhere")
    for name in ["pipeline.json", FILES["superres"], "tokenizer.model"]:
        folder = copy_of(saved, tmp_path)
        (folder / name).unlink()
        with pytest.raises(checkpoint.CheckpointError, match=f"has no {name}.*Copy the whole "
                                                             f"directory again"):
            Pipeline.load(folder)
        shutil.rmtree(folder)


def test_a_damaged_file_is_refused(saved, tmp_path):
    folder = copy_of(saved, tmp_path)
    path = folder / FILES["base_vq"]
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF  # flip bits in the last tensor's bytes
    path.write_bytes(bytes(data))
    with pytest.raises(checkpoint.CheckpointError, match="base_vq.safetensors is corrupt"):
        Pipeline.load(folder)
    (folder / "pipeline.json").write_text("{ not json")
    with pytest.raises(checkpoint.CheckpointError, match="pipeline.json is not valid JSON"):
        Pipeline.load(folder)
    (folder / "pipeline.json").write_text(json.dumps({"format": "something else"}))
    with pytest.raises(checkpoint.CheckpointError, match="not a pipeline saved by"):
        Pipeline.load(folder)


def test_mixed_up_files_are_refused(saved, tmp_path):
    folder = copy_of(saved, tmp_path)
    # two files swapped: each holds the other part's config and kind
    shutil.copyfile(saved / FILES["base"], folder / FILES["superres"])
    with pytest.raises(checkpoint.CheckpointError, match="superres.safetensors was saved with "
                                                         "a different config"):
        Pipeline.load(folder)
    # a config edited in pipeline.json no longer matches the stored weights
    shutil.copyfile(saved / FILES["superres"], folder / FILES["superres"])
    manifest = json.loads((folder / "pipeline.json").read_text())
    manifest["components"]["base"]["config"]["d_model"] = 64
    (folder / "pipeline.json").write_text(json.dumps(manifest))
    with pytest.raises(checkpoint.CheckpointError, match="d_model: file has 32, expected 64"):
        Pipeline.load(folder)


def test_save_refuses_a_file_path(pipeline, tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="saved as a directory"):
        pipeline.save(tmp_path / "file")


def test_generate_on_device(pipeline, saved, device):
    loaded = Pipeline.load(saved, device=device)
    assert loaded.device == device
    out = loaded.generate(PROMPTS, seed=5, return_tokens=True, **FAST)
    assert out.images.shape == (2, 3, 64, 64) and isinstance(out.images, np.ndarray)
    again = loaded.generate(PROMPTS, seed=5, return_tokens=True, **FAST)
    np.testing.assert_array_equal(out.superres_tokens, again.superres_tokens)
