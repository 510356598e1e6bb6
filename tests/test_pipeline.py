"""The cascade pipeline: text → base tokens → super-resolution tokens → image; seeds,
per-stage settings, output layouts, saving and loading a directory, and clear errors."""
import json
import shutil

import numpy as np
import pytest
from PIL import Image

import tinymuse
from tinymuse import backend, checkpoint, decoding, sampling
from tinymuse.data import shapes_captions
from tinymuse.pipeline import Pipeline, PipelineOutput
from tinymuse.pipeline_files import FILES
from tinymuse.text.tokenizer import OutOfVocabularyError, Tokenizer

PROMPTS = ["a red circle", "two blue squares"]
FAST = dict(base={"steps": 3}, superres={"steps": 2})
# both stages sample (by default the super-resolution stage takes the likeliest token)
SAMPLED = dict(base={"steps": 3, "temperature": 1.0}, superres={"steps": 2, "temperature": 1.0})


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
    base = dict(steps=3, guidance_scale=2.0, temperature=1.5, top_k=4, choice_temperature=2.0,
                guidance_schedule="constant")
    superres = dict(steps=2, guidance_scale=0.5, temperature=0.0, choice_temperature=1.0,
                    guidance_schedule="linear")
    pipeline.generate(PROMPTS, base=base, superres=superres, negative_prompt="a green circle",
                      seed=0)
    first, second = calls
    assert first["settings"] == sampling.BASE.replace(**base)
    assert second["settings"] == sampling.SUPERRES.replace(**superres)
    assert first["mask_id"] == 32 and second["mask_id"] == 32
    # the negative prompt is the unconditional branch of both stages
    negative = pipeline.base.encode_prompts(["a green circle"] * 2)
    np.testing.assert_array_equal(first["uncond_condition"].embeddings.numpy(),
                                  negative.embeddings.numpy())
    calls.clear()
    pipeline.generate(PROMPTS, seed=0)
    assert [c["settings"] for c in calls] == [sampling.BASE, sampling.SUPERRES], \
        "by default each stage draws with its default settings"
    assert calls[1]["uncond_condition"] is None, "no guidance, no second branch"
    calls.clear()
    unguided = sampling.BASE.replace(guidance_scale=0.0, steps=3)
    pipeline.generate(PROMPTS, base=unguided, seed=0)
    assert calls[0]["settings"] is unguided and calls[0]["uncond_condition"] is None


def test_training_samples_the_base_stage_as_the_pipeline_does(pipeline, decode_calls):
    from tinymuse.evaluate import base_sampler

    pipeline.generate(PROMPTS, seed=0)
    base_sampler(pipeline.base_vq)(pipeline.base, PROMPTS)
    from_pipeline, _, from_monitor = decode_calls
    assert from_monitor["settings"] == from_pipeline["settings"], \
        "the training monitor's scores would not show what users get"


def test_a_negative_prompt_changes_the_images(pipeline):
    guided = dict(SAMPLED, base={"steps": 3, "guidance_scale": 3.0})
    plain = pipeline.generate(PROMPTS, seed=1, **guided)
    negative = pipeline.generate(PROMPTS, seed=1, negative_prompt=["a green circle",
                                                                   "a red square"], **guided)
    assert (plain != negative).any()


@pytest.mark.parametrize("options, error, message", [
    (dict(base={"steps": 0}), ValueError, "steps must be a whole number >= 1"),
    (dict(superres={"steps": 2.5}), ValueError, "steps must be a whole number >= 1"),
    (dict(base={"guidance_scale": -1.0}), ValueError, "guidance_scale must be a number from 0 to 100"),
    (dict(base={"temperature": float("inf")}), ValueError, "temperature must be a number from 0 to 100"),
    (dict(superres={"choice_temperature": -1.0}), ValueError, "choice_temperature must be"),
    (dict(base={"guidance_schedule": "cosine"}), ValueError, "guidance_schedule must be one of"),
    (dict(base={"top_k": 0}), ValueError, "top_k must be a whole number >= 1 or None"),
    (dict(base={"stepz": 3}), TypeError, r"Sampling has no setting\(s\) \['stepz'\]"),
    (dict(base=12), TypeError, "sampling settings are a Sampling, a dict of changes"),
    (dict(negative_prompt=["a", "b", "c"]), ValueError, "3 negative prompts for 2 prompts"),
    (dict(output="png"), ValueError, "output must be one of"),
    (dict(seed=1.5), TypeError, "seed must be an int or None"),
])
def test_bad_options_get_clear_errors(pipeline, options, error, message):
    with pytest.raises(error, match=message):
        pipeline.generate(PROMPTS, **{**FAST, **options})


def test_bad_prompts_get_clear_errors(pipeline):
    with pytest.raises(OutOfVocabularyError, match="unknown word 'dragon'"):
        pipeline.generate(["a red dragon"], **FAST)
    with pytest.raises(OutOfVocabularyError, match="'zebra'"):
        pipeline.generate(PROMPTS, negative_prompt="a zebra", **FAST)
    with pytest.raises(ValueError, match="no prompts given"):
        pipeline.generate([], **FAST)
    with pytest.raises(TypeError, match="every prompt must be a string"):
        pipeline.generate(["a red circle", 3], **FAST)


def test_an_empty_prompt_draws_unconditionally(pipeline):
    assert pipeline.generate([""], seed=0, **FAST).shape == (1, 3, 64, 64)


def test_redraw_keeps_every_unmasked_token_of_both_stages(pipeline):
    first = pipeline.generate(PROMPTS, seed=0, return_tokens=True, **SAMPLED)
    low_mask = np.zeros((2, 8, 8), bool)
    low_mask[:, :4] = True
    high_mask = low_mask.repeat(2, axis=1).repeat(2, axis=2)
    again = pipeline.redraw(PROMPTS, (first.base_tokens, first.superres_tokens),
                            (low_mask, high_mask), seed=1, return_tokens=True, **SAMPLED)
    np.testing.assert_array_equal(again.base_tokens[~low_mask], first.base_tokens[~low_mask])
    np.testing.assert_array_equal(again.superres_tokens[~high_mask],
                                  first.superres_tokens[~high_mask])
    assert (again.superres_tokens[high_mask] != first.superres_tokens[high_mask]).any()


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
