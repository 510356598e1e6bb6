"""The ``tinymuse`` command, end to end, on a tiny cascade trained in a temporary folder.

The tiny preset draws noise, so these tests check what the command promises (files of the
right size, determinism, resuming, one clear line for every mistake a user can make), not
image quality; ``tinymuse eval`` on the bundled weights measures that.
"""
import dataclasses
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tinymuse import Pipeline, checkpoint, cli, pipeline_files, sampling
from tinymuse.cascade import STAGES, load_record
from tinymuse.data import ShapesDataset, parse_caption

SIZE = 64  # the tiny preset keeps the real image size


def run(*argv):
    return cli.main([str(a) for a in argv])


def error_line(capsys) -> str:
    """stderr of the last command, which must be exactly one line."""
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("tinymuse: error: ")
    return lines[0]


def forget_stage(out, stage: str) -> dict:
    """Take ``stage`` out of the record of the run in ``out`` (its files stay), as if it had
    never finished; returns the record written."""
    record = load_record(out)
    del record["stages"][stage]
    (out / "cascade.json").write_text(json.dumps(record))
    return record


def png(path) -> np.ndarray:
    with Image.open(path) as picture:
        return np.asarray(picture.convert("RGB"))


def grid_side(count: int, side: int = SIZE, scale: int = 1, padding: int = 2) -> int:
    return count * side * scale + (count + 1) * padding


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A tiny cascade, every stage, trained by `tinymuse train`."""
    out = tmp_path_factory.mktemp("cascade") / "run"
    assert run("train", "--stage", "all", "--preset", "tiny", "--out", out, "--quiet") == 0
    return out


@pytest.fixture(scope="module")
def picture(tmp_path_factory):
    """A 64×64 shapes-world picture to edit."""
    path = tmp_path_factory.mktemp("pictures") / "scene.png"
    Image.fromarray(ShapesDataset(SIZE, seed=3)[0][0]).save(path)
    return path


# --------------------------------------------------------------------------- training


def test_train_all_records_every_stage_and_assembles_a_pipeline(run_dir):
    record = load_record(run_dir)
    assert list(record["stages"]) == list(STAGES)
    assert all(entry["seconds"] >= 0 for entry in record["stages"].values())
    assert (run_dir / "pipeline" / "pipeline.json").is_file()
    manifest = json.loads((run_dir / "pipeline" / "pipeline.json").read_text())
    assert manifest["dtype"] == "float16"
    assert manifest["shared_text_encoder"], "one frozen encoder, stored once for both stages"


def test_each_transformer_stage_is_validated_on_fresh_scenes(run_dir):
    from tinymuse.cascade import VALIDATION_SCENES
    from tinymuse.vq import load_image_tokens

    fresh = {which: load_image_tokens(run_dir / "tokens" / f"validation-{which}.safetensors")
             for which in ("base", "superres")}
    scenes = ShapesDataset(32, seed=1)  # the training cache is seed 0's
    assert fresh["base"].captions == [scenes.caption(i) for i in range(VALIDATION_SCENES)]
    assert fresh["superres"].captions == fresh["base"].captions  # the same scenes, 2 sizes
    assert fresh["base"].tokens.shape[1:] == (8, 8)
    assert fresh["superres"].tokens.shape[1:] == (16, 16)
    record = load_record(run_dir)
    for stage in ("base", "superres"):
        logged = [json.loads(line) for line in
                  (run_dir / stage / "log.jsonl").read_text().splitlines()]
        checks = [entry for entry in logged if entry.get("kind") == "validation"]
        assert checks[-1]["step"] == record["preset"][f"{stage}_steps"]
        assert all(entry["loss"] > 0 and entry["training_rows_loss"] > 0 for entry in checks)


def test_the_pipeline_decodes_with_the_fine_tuned_decoders_and_the_cached_tokens(run_dir):
    from tinymuse.vq import VQTokenizer, load_image_tokens

    pipeline = Pipeline.load(run_dir / "pipeline")
    for stage, vq in (("base", pipeline.base_vq), ("superres", pipeline.superres_vq)):
        original = VQTokenizer.load(run_dir / f"vq-{stage}" / "tokenizer.safetensors")
        finetuned = VQTokenizer.load(run_dir / "decoders" / stage / "tokenizer.safetensors")
        grids = load_image_tokens(run_dir / "tokens" / f"{stage}.safetensors").tokens[:4]
        assert not np.array_equal(finetuned.decode(grids).numpy(), original.decode(grids).numpy())
        np.testing.assert_allclose(vq.decode(grids).numpy(), finetuned.decode(grids).numpy(),
                                   atol=2e-2)  # stored as float16


def test_a_base_stage_that_trained_its_text_encoder_does_not_replace_the_superres_one(
        run_dir, tmp_path):
    from tinymuse.models import BaseTransformer

    out = tmp_path / "run"
    shutil.copytree(run_dir, out)
    base = BaseTransformer.load(out / "base" / "model.safetensors")
    for param in base.text_encoder.parameters():  # as if trained with train_text_encoder
        param.data = param.data + 0.5
    base.save(out / "base" / "model.safetensors")
    forget_stage(out, "pipeline")
    assert run("train", "--stage", "pipeline", "--preset", "tiny", "--out", out, "--resume",
               "--quiet") == 0
    pipeline = Pipeline.load(out / "pipeline")
    superres = checkpoint.load(out / "superres" / "model.safetensors").tensors
    for name, value in pipeline.superres.text_encoder.state_dict().items():
        np.testing.assert_allclose(value, superres[f"text_encoder.{name}"], rtol=2e-3,
                                   atol=1e-3)  # stored as float16
    for name, value in pipeline.base.text_encoder.state_dict().items():
        np.testing.assert_allclose(value, base.text_encoder.state_dict()[name], rtol=2e-3,
                                   atol=1e-3)


def test_train_refuses_to_overwrite_and_resume_skips_finished_stages(run_dir, capsys):
    assert run("train", "--stage", "base", "--preset", "tiny", "--out", run_dir) == 2
    assert "--resume" in error_line(capsys)
    before = load_record(run_dir)
    assert run("train", "--stage", "all", "--preset", "tiny", "--out", run_dir, "--resume",
               "--quiet") == 0
    out = capsys.readouterr().out
    assert out.count("skipped") == len(STAGES)
    assert load_record(run_dir)["stages"] == before["stages"]


def test_a_run_without_decoder_fine_tuning_resumes_past_the_decoders_stage(tmp_path, capsys):
    # decoder_steps=0 (the lab preset) finishes "decoders" without writing a file: a resumed
    # run must skip it, not ask for the fine-tuned decoders it never made.
    out = tmp_path / "run"
    for stage in ("tokenizer", "text", "vq-base", "vq-superres", "tokens", "decoders"):
        assert run("train", "--stage", stage, "--preset", "tiny", "--set", "decoder_steps=0",
                   "--out", out, "--quiet") == 0
    assert not (out / "decoders").exists()
    capsys.readouterr()
    assert run("train", "--stage", "all", "--out", out, "--resume", "--quiet") == 0
    assert "[decoders] already trained" in capsys.readouterr().out
    assert list(load_record(out)["stages"]) == list(STAGES)
    Pipeline.load(out / "pipeline")


def test_resume_reassembles_a_missing_pipeline_and_names_a_missing_stage_file(
        run_dir, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(run_dir, out)
    shutil.rmtree(out / "pipeline")
    capsys.readouterr()
    assert run("train", "--stage", "all", "--preset", "tiny", "--out", out, "--resume",
               "--quiet") == 0
    assert "pipeline.json is missing; assembling it again" in capsys.readouterr().out
    Pipeline.load(out / "pipeline")

    (out / "base" / "model.safetensors").unlink()
    before = load_record(out)
    assert run("train", "--stage", "all", "--preset", "tiny", "--out", out, "--resume",
               "--quiet") == 2
    line = error_line(capsys)
    assert "stage 'base' as finished" in line and "model.safetensors is missing" in line
    assert load_record(out) == before
    assert (out / "pipeline" / "pipeline.json").is_file(), "what was saved is kept"


def test_train_refuses_another_preset_in_the_same_folder(run_dir, capsys):
    assert run("train", "--preset", "lab", "--out", run_dir, "--resume") == 2
    assert "preset 'tiny'" in error_line(capsys)


def test_a_run_folder_remembers_its_preset(run_dir, tmp_path, capsys):
    """Without --preset, a later stage in a run folder trains with the run's own preset (a
    new folder gets 'default')."""
    out = tmp_path / "run"
    shutil.copytree(run_dir, out)
    record = forget_stage(out, "pipeline")
    assert run("train", "--stage", "pipeline", "--out", out, "--resume", "--quiet") == 0
    assert load_record(out)["preset"]["name"] == "tiny"
    record["preset"]["name"] = "retired"
    (out / "cascade.json").write_text(json.dumps(record))
    assert run("train", "--stage", "pipeline", "--out", out, "--resume", "--quiet") == 2
    assert "preset 'retired'" in error_line(capsys)


def test_a_stage_without_its_inputs_names_the_stage_to_run(tmp_path, capsys):
    assert run("train", "--stage", "base", "--preset", "tiny", "--out", tmp_path / "r") == 2
    assert "--stage tokenizer" in error_line(capsys)


@pytest.fixture
def interruption(monkeypatch):
    """``interruption.on()``: the next transformer training stops after its checkpoint at step
    2 and raises KeyboardInterrupt, as Ctrl-C would; ``interruption.off()`` undoes it."""
    from tinymuse.training import transformer as transformer_training

    real = transformer_training.train_transformer

    def interrupted(*args, **kwargs):
        real(*args, **{**kwargs, "stop_at": 2})
        raise KeyboardInterrupt

    class Interruption:
        def on(self):
            monkeypatch.setattr(transformer_training, "train_transformer", interrupted)

        def off(self):
            monkeypatch.setattr(transformer_training, "train_transformer", real)

    return Interruption()


def test_interrupted_stage_resumes_from_its_checkpoint(tmp_path, interruption, capsys):
    from tinymuse.cascade import train_cascade

    out, quiet = tmp_path / "r", (lambda *_: None)
    for stage in ("tokenizer", "text", "vq-base", "vq-superres", "tokens"):
        train_cascade(out, stage, "tiny", resume=True, progress=False, log=quiet)
    interruption.on()  # at step 2 of 3
    with pytest.raises(KeyboardInterrupt):
        train_cascade(out, "base", "tiny", resume=True, progress=False, log=quiet)
    assert "base" not in load_record(out)["stages"]
    # the interrupted call's training time is in the stage's checkpoint (made long here, so
    # it shows in the total)
    state = checkpoint.load(out / "base" / "checkpoint.safetensors")
    checkpoint.save(state.path, state.tensors, state.config,
                    {**state.metadata, "extra": {"seconds": 1000.0}})
    interruption.off()
    capsys.readouterr()
    train_cascade(out, "base", "tiny", resume=True, progress=True, log=quiet)
    assert "steps 2-3" in capsys.readouterr().out  # continued, not started again
    assert 1000 <= load_record(out)["stages"]["base"]["seconds"] < 1100


def test_more_steps_continue_a_stage_from_its_weights_and_reassemble(run_dir, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(run_dir, out)
    weights = out / "base" / "model.safetensors"
    before = checkpoint.load(weights).tensors
    pipeline_before = checkpoint.load(out / "pipeline" / "base.safetensors").tensors
    superres_before = (out / "superres" / "model.safetensors").read_bytes()
    for round_ in (1, 2):
        assert run("train", "--stage", "base", "--out", out, "--more-steps", 3, "--lr", 1e-3,
                   "--quiet") == 0
        entry = load_record(out)["stages"]["base"]
        assert [m["steps"] for m in entry["more"]] == [3] * round_
        assert entry["more"][-1]["lr"] == 1e-3
        continued = out / "base" / f"more-{round_}" / "model.safetensors"
        assert weights.read_bytes() == continued.read_bytes()
    after = checkpoint.load(weights).tensors
    # from the old weights: six AdamW steps of lr 1e-3 move each weight by ~0.006 at most,
    # while a fresh initialisation (std 0.02) would differ by far more
    assert after.keys() == before.keys()
    moved = [k for k in after if not np.array_equal(after[k], before[k])]
    assert moved and all(np.abs(after[k] - before[k]).max() < 0.02 for k in after)
    # the pipeline was assembled again with them; the other stage was left alone
    pipeline_after = checkpoint.load(out / "pipeline" / "base.safetensors").tensors
    assert any(not np.array_equal(pipeline_after[k], pipeline_before[k]) for k in pipeline_after)
    assert (out / "superres" / "model.safetensors").read_bytes() == superres_before
    assert load_record(out)["stages"].keys() == load_record(run_dir)["stages"].keys()
    # the super-resolution stage continues the same way, with the architecture its weights
    # were saved with even when the run's preset has changed since
    record = json.loads((out / "cascade.json").read_text())
    record["preset"]["superres"]["num_layers"] += 2
    (out / "cascade.json").write_text(json.dumps(record))
    layers = checkpoint.load(out / "superres" / "model.safetensors").config["num_layers"]
    assert run("train", "--stage", "superres", "--out", out, "--more-steps", 2, "--quiet") == 0
    assert checkpoint.load(out / "superres" / "model.safetensors").config["num_layers"] == layers
    assert ((out / "superres" / "model.safetensors").read_bytes()
            == (out / "superres" / "more-1" / "model.safetensors").read_bytes() != superres_before)


def test_interrupted_more_steps_resume_and_keep_the_old_weights_meanwhile(
        run_dir, tmp_path, interruption, capsys):
    from tinymuse.cascade import train_more

    out = tmp_path / "run"
    shutil.copytree(run_dir, out)
    weights = (out / "base" / "model.safetensors").read_bytes()
    interruption.on()  # at step 2 of 3
    with pytest.raises(KeyboardInterrupt):
        train_more(out, "base", 3, progress=False, log=lambda *_: None)
    assert "more" not in load_record(out)["stages"]["base"]
    assert (out / "base" / "model.safetensors").read_bytes() == weights
    # the round's time so far is in its checkpoint (made long here, so it shows in the total)
    state = checkpoint.load(out / "base" / "more-1" / "checkpoint.safetensors")
    checkpoint.save(state.path, state.tensors, state.config,
                    {**state.metadata, "extra": {"seconds": 1000.0}})
    interruption.off()
    capsys.readouterr()
    train_more(out, "base", 3, progress=False)
    assert "steps 2-3 of 3 more" in capsys.readouterr().out  # continued, not started again
    record = load_record(out)
    assert len(record["stages"]["base"]["more"]) == 1
    assert 1000 <= record["stages"]["base"]["more"][0]["seconds"] < 1100
    assert (out / "base" / "model.safetensors").read_bytes() != weights


def test_two_commands_finishing_at_once_both_get_recorded(tmp_path):
    import threading

    from tinymuse.cascade import RECORD, CascadeError
    from tinymuse.cascade.runs import _record_lock, _record_stage

    out = tmp_path / "run"
    out.mkdir()
    (out / RECORD).write_text(json.dumps({"preset": {}, "data": "shapes", "stages": {}}))
    lock = out / f".{RECORD}.lock"
    lock.write_text("")  # another command is in the middle of updating the record
    finish_base = threading.Thread(target=_record_stage, args=(out, "base", 5.0))
    finish_base.start()
    finish_base.join(0.3)
    assert finish_base.is_alive() and load_record(out)["stages"] == {}  # it waits its turn
    record = load_record(out)  # the other command's update, then its lock released
    record["stages"]["superres"] = {"seconds": 7.0}
    (out / RECORD).write_text(json.dumps(record))
    lock.unlink()
    finish_base.join(5)
    assert not finish_base.is_alive() and not lock.exists()
    assert set(load_record(out)["stages"]) == {"base", "superres"}  # neither update lost
    lock.write_text("")  # left behind by a command killed mid-update
    with pytest.raises(CascadeError, match="delete it"):
        with _record_lock(out, timeout=0.1):
            pass


def test_set_changes_the_preset_of_a_new_run_and_is_recorded(tmp_path, capsys):
    out = tmp_path / "run"
    assert run("train", "--stage", "tokenizer", "--preset", "tiny", "--out", out, "--set",
               "captions=123", "--set", "text.d_model=8", "--set", "ema=0.9", "--quiet") == 0
    preset = load_record(out)["preset"]
    assert (preset["name"], preset["captions"], preset["ema"]) == ("tiny", 123, 0.9)
    assert preset["text"] == {"d_model": 8, "num_layers": 1, "num_heads": 2}
    for assignment, message in (("captions", "FIELD=VALUE"), ("nope=3", "no field 'nope'"),
                                ("base_steps=1.5", "expected a value like 3"),
                                ("vq.x=1", "not one of the preset's model settings"),
                                ('text={"d_model": 8}', "like --set text.d_model=VALUE")):
        assert run("train", "--stage", "tokenizer", "--preset", "tiny", "--out",
                   tmp_path / "other", "--set", assignment) == 2
        assert message in error_line(capsys)


def test_more_steps_needs_a_finished_transformer_stage(run_dir, tmp_path, capsys):
    assert run("train", "--stage", "all", "--out", run_dir, "--more-steps", 3) == 2
    assert "--stage base, superres or ar-base" in error_line(capsys)
    assert run("train", "--stage", "all", "--out", run_dir, "--lr", 1e-3) == 2
    assert "with --stage base, superres or ar-base" in error_line(capsys)
    assert run("train", "--stage", "base", "--out", run_dir, "--more-steps", 3,
               "--steps", 3) == 2
    assert "drop --steps" in error_line(capsys)
    assert run("train", "--stage", "superres", "--out", run_dir, "--more-steps", 0) == 2
    assert ">= 1" in error_line(capsys)
    assert run("train", "--stage", "base", "--out", tmp_path / "empty", "--more-steps", 3) == 2
    assert "train it first" in error_line(capsys)


def test_images_encodes_the_caches_again_with_more_scenes_that_rounds_then_train_on(
        run_dir, tmp_path):
    from tinymuse.vq import load_image_tokens

    out = tmp_path / "run"
    shutil.copytree(run_dir, out)
    tokens = {stage: out / "tokens" / f"{stage}.safetensors" for stage in ("base", "superres")}
    before = {stage: load_image_tokens(path) for stage, path in tokens.items()}
    count = len(before["base"])
    assert run("train", "--stage", "tokens", "--out", out, "--images", count + 8,
               "--quiet") == 0
    for stage, path in tokens.items():
        after = load_image_tokens(path)
        assert len(after) == count + 8
        # scene i is the same whatever the count: the old cache is the new one's beginning
        assert np.array_equal(after.tokens[:count], before[stage].tokens)
        assert after.captions[:count] == before[stage].captions
    entry = load_record(out)["stages"]["tokens"]
    assert [m["images"] for m in entry["more"]] == [count + 8]
    assert entry["seconds"] >= load_record(run_dir)["stages"]["tokens"]["seconds"]
    # the super-resolution stage pairs the two new caches and trains on them
    assert run("train", "--stage", "superres", "--out", out, "--more-steps", 2, "--quiet") == 0


def test_images_needs_the_tokens_stage_of_a_finished_shapes_run(run_dir, tmp_path, capsys):
    assert run("train", "--stage", "base", "--out", run_dir, "--images", 100) == 2
    assert "use it with --stage tokens" in error_line(capsys)
    assert run("train", "--stage", "tokens", "--out", run_dir, "--images", 100,
               "--more-steps", 3) == 2
    assert "two commands" in error_line(capsys)
    assert run("train", "--stage", "tokens", "--out", run_dir, "--images", 100, "--lr", 1e-3) == 2
    assert "two commands" in error_line(capsys)
    assert run("train", "--stage", "tokens", "--out", run_dir, "--images", 0) == 2
    assert ">= 1" in error_line(capsys)
    assert run("train", "--stage", "tokens", "--out", tmp_path / "empty", "--images", 100) == 2
    assert "no finished 'tokens' stage" in error_line(capsys)
    folder_run = tmp_path / "folder-run"
    shutil.copytree(run_dir, folder_run)
    record = json.loads((folder_run / "cascade.json").read_text())
    record["data"] = str(tmp_path / "pictures")
    (folder_run / "cascade.json").write_text(json.dumps(record))
    cache = (folder_run / "tokens" / "base.safetensors").read_bytes()
    assert run("train", "--stage", "tokens", "--out", folder_run, "--images", 100) == 2
    assert "for the shapes world" in error_line(capsys)
    assert (folder_run / "tokens" / "base.safetensors").read_bytes() == cache


def test_a_transformer_stage_trains_on_its_own_schedule_and_records_it(run_dir, tmp_path,
                                                                         capsys):
    out = tmp_path / "run"
    shutil.copytree(run_dir, out)
    shutil.rmtree(out / "base")
    forget_stage(out, "base")
    assert run("train", "--stage", "base", "--preset", "tiny", "--out", out, "--resume",
               "--steps", 4, "--batch-size", 2, "--ema", 0.9, "--quiet") == 0
    schedule = {"steps": 4, "batch_size": 2, "ema_decay": 0.9, "warmup_steps": 0}
    assert load_record(out)["stages"]["base"]["schedule"] == schedule
    trained = checkpoint.load(out / "base" / "checkpoint.safetensors").config["train"]
    assert {key: trained[key] for key in schedule} == schedule  # not the preset's 3 steps of 4
    capsys.readouterr()
    assert run("train", "--stage", "superres", "--out", tmp_path / "new", "--batch-size",
               0) == 2
    assert "argument --batch-size: must be a whole number >= 1" in error_line(capsys)
    assert run("train", "--stage", "superres", "--out", tmp_path / "new", "--lr", "nan") == 2
    assert "argument --lr: must be a number above 0 and at most 1, got 'nan'" \
        in error_line(capsys)


def test_set_on_a_started_run_is_refused_when_it_would_change_a_value(tmp_path, capsys):
    out = tmp_path / "run"
    assert run("train", "--stage", "tokenizer", "--preset", "tiny", "--out", out, "--set",
               "text_steps=2", "--quiet") == 0
    before = (out / "cascade.json").read_text()
    assert run("train", "--stage", "text", "--out", out, "--set", "text_steps=40",
               "--quiet") == 2
    assert "started with text_steps=2, not 40" in error_line(capsys)
    assert run("train", "--stage", "text", "--out", out, "--set", "text.d_model=8",
               "--quiet") == 2
    assert "started with text=" in error_line(capsys)
    assert (out / "cascade.json").read_text() == before and not (out / "text").exists()
    # the value it was started with may be given again
    assert run("train", "--stage", "text", "--out", out, "--set", "text_steps=2",
               "--quiet") == 0
    assert load_record(out)["preset"]["text_steps"] == 2 and "text" in load_record(out)["stages"]


def test_a_resumed_run_keeps_the_preset_it_was_started_with(run_dir, tmp_path, capsys):
    out = tmp_path / "run"
    shutil.copytree(run_dir, out)
    shutil.rmtree(out / "base")
    record = forget_stage(out, "base")
    record["preset"]["base_steps"] = 5  # as if this version's "tiny" preset said 3 since
    (out / "cascade.json").write_text(json.dumps(record))
    capsys.readouterr()
    assert run("train", "--stage", "base", "--preset", "tiny", "--out", out, "--resume",
               "--quiet") == 0
    assert "base_steps (5 here, 3 asked for)" in capsys.readouterr().out
    trained = checkpoint.load(out / "base" / "checkpoint.safetensors")
    assert trained.config["train"]["steps"] == 5 and trained.metadata["step"] == 5


def test_train_from_an_image_caption_folder(tmp_path):
    folder = tmp_path / "pictures"
    folder.mkdir()
    shapes = ShapesDataset(96, seed=1)  # other sizes are cropped and resized
    for i in range(6):
        image, caption = shapes[i]
        Image.fromarray(image).save(folder / f"{i}.png")
        (folder / f"{i}.txt").write_text(caption)
    out = tmp_path / "run"
    assert run("train", "--preset", "tiny", "--data", folder, "--out", out, "--quiet") == 0
    assert load_record(out)["data"] == str(folder.resolve())
    assert run("generate", shapes.caption(0), "--pipeline", out, "--out", out / "g.png") == 0
    assert png(out / "g.png").shape == (SIZE, SIZE, 3)


def test_train_data_must_be_shapes_or_a_folder(tmp_path, capsys):
    assert run("train", "--preset", "tiny", "--data", tmp_path / "none", "--out",
               tmp_path / "r") == 2
    assert "not a folder" in error_line(capsys)


# ------------------------------------------------------------------------- sampling


def test_generate_one_prompt_is_one_image_and_the_seed_fixes_it(run_dir, tmp_path):
    # The tiny model's greedy super-resolution stage draws one code everywhere, whatever the
    # base tokens; sampling it lets a different seed show in the picture.
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        assert run("generate", "a red circle", "--pipeline", run_dir, "--seed", seed,
                   "--sr-temperature", 1, "--out", tmp_path / f"{name}.png") == 0
    a, b, c = (png(tmp_path / f"{n}.png") for n in "abc")
    assert a.shape == (SIZE, SIZE, 3)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_generate_several_prompts_and_samples_make_a_grid(run_dir, tmp_path):
    out = tmp_path / "grid.png"
    assert run("generate", "a red circle", "two blue squares", "the letter A in green",
               "--samples", 2, "--steps", 3, "--sr-steps", 2, "--guidance", 0, "--negative",
               "a blue circle", "--pipeline", run_dir, "--scale", 2, "--out", out) == 0
    # one row per prompt, one column per sample
    assert png(out).shape == (grid_side(3, scale=2), grid_side(2, scale=2), 3)


def test_only_the_base_stage_is_guided_unless_sr_guidance_says_so(run_dir, tmp_path):
    pipeline = Pipeline.load(run_dir / "pipeline")
    # the super-resolution stage samples here: the tiny model's greedy one draws one code
    # everywhere, guided or not
    for name, extra in (("default", []), ("both", ["--sr-guidance", 3])):
        assert run("generate", "a red circle", "--pipeline", run_dir, "--guidance", 3,
                   "--sr-temperature", 1, *extra, "--out", tmp_path / f"{name}.png") == 0
    default, both = png(tmp_path / "default.png"), png(tmp_path / "both.png")
    for image, guidance in ((default, (3.0, 0.0)), (both, (3.0, 3.0))):
        expected = pipeline.generate("a red circle", base={"guidance_scale": guidance[0]},
                                     superres={"guidance_scale": guidance[1],
                                               "temperature": 1.0},
                                     seed=0, output="uint8")[0]
        assert np.array_equal(image, expected)
    assert not np.array_equal(default, both)
    assert run("generate", "a red circle", "--pipeline", run_dir,
               "--out", tmp_path / "plain.png") == 0
    assert np.array_equal(pipeline.generate("a red circle", seed=0, output="uint8")[0],
                          png(tmp_path / "plain.png")), "the command's defaults are the pipeline's"


def test_the_guidance_schedule_flags_reach_the_pipeline(run_dir, tmp_path, capsys):
    pipeline = Pipeline.load(run_dir / "pipeline")
    out = tmp_path / "constant.png"
    assert run("generate", "a red circle", "--pipeline", run_dir, "--guidance", 3,
               "--guidance-schedule", "constant", "--sr-guidance", 2, "--sr-guidance-schedule",
               "linear", "--sr-temperature", 1, "--out", out) == 0
    expected = pipeline.generate("a red circle", seed=0, output="uint8",
                                 base={"guidance_scale": 3.0, "guidance_schedule": "constant"},
                                 superres={"guidance_scale": 2.0, "guidance_schedule": "linear",
                                           "temperature": 1.0})[0]
    assert np.array_equal(png(out), expected)
    capsys.readouterr()
    assert run("generate", "a red circle", "--pipeline", run_dir, "--guidance-schedule",
               "cosine") == 2
    assert "invalid choice: 'cosine'" in error_line(capsys)


def test_demo_draws_every_example_prompt_labelled(run_dir, tmp_path):
    out = tmp_path / "demo.png"
    assert run("demo", "--pipeline", run_dir / "pipeline", "--out", out) == 0
    grid = png(out)
    rows = -(-len(cli.DEMO_PROMPTS) // 4)
    strip = (grid.shape[0] - grid_side(rows, scale=2)) // rows  # the label under each row
    assert grid.shape[1] == grid_side(4, scale=2) and strip > 0
    drawn = Pipeline.load(run_dir / "pipeline").generate(list(cli.DEMO_PROMPTS), seed=0,
                                                         output="uint8")
    cell = 2 * SIZE
    for index, image in enumerate(drawn):
        top, left = 2 + (index // 4) * (cell + strip + 2), 2 + (index % 4) * (cell + 2)
        np.testing.assert_array_equal(grid[top:top + cell, left:left + cell],
                                      image.repeat(2, axis=0).repeat(2, axis=1))
        label = grid[top + cell:top + cell + strip, left:left + cell]
        assert (label.max(axis=-1) < 128).any(), f"no label text under cell {index}"


def test_demo_prompts_are_captions_of_the_shapes_world():
    kinds = set()
    for prompt in cli.DEMO_PROMPTS:
        spec = parse_caption(prompt)
        kinds.add("glyph" if spec.glyph else "relation" if spec.relation else spec.count > 1)
    assert kinds == {"glyph", "relation", True, False}


def test_inpaint_outpaint_and_edit(run_dir, picture, tmp_path):
    common = ("--pipeline", run_dir, "--steps", 2, "--sr-steps", 2)
    assert run("inpaint", picture, "a blue square", "--box", "0,0,32,32", *common,
               "--out", tmp_path / "i.png") == 0
    mask = np.zeros((SIZE, SIZE, 3), np.uint8)
    mask[40:, 40:] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    assert run("inpaint", picture, "a blue square", "--mask", tmp_path / "mask.png", *common,
               "--out", tmp_path / "m.png") == 0
    assert run("outpaint", picture, "a green circle", "--shift", "0,16", *common,
               "--out", tmp_path / "o.png") == 0
    assert run("outpaint", picture, "a green circle", "--extend", "8,8,8,8", *common,
               "--out", tmp_path / "x.png") == 0
    assert run("edit", picture, "a yellow circle", "--iterations", 3, "--pipeline", run_dir,
               "--sr-steps", 2, "--out", tmp_path / "e.png") == 0
    for name in "imoxe":
        assert png(tmp_path / f"{name}.png").shape == (SIZE, SIZE, 3)


def test_eval_scores_every_attribute_and_the_base_stage_alone(run_dir, tmp_path, capsys):
    out = tmp_path / "scores.json"
    assert run("eval", "--prompts", 1, "--split", "train", "--compare-base", "--steps", 2,
               "--sr-steps", 2, "--pipeline", run_dir, "--out", out) == 0
    scores = json.loads(out.read_text())
    settings = scores.pop("settings")
    assert settings["base"] == {**dataclasses.asdict(sampling.BASE), "steps": 2}, \
        "the file says how its images were drawn"
    assert settings["superres"]["steps"] == 2 and settings["seed"] == 0
    assert set(scores) == {"train/single", "train/count", "train/relation", "train/glyph",
                           "overall"}
    assert scores["overall"]["prompts"] == 4
    for entry in scores.values():
        for which in ("pipeline", "base_alone"):
            assert entry[which] and all(0.0 <= v <= 1.0 for v in entry[which].values())
    assert "glyph" in scores["overall"]["pipeline"]
    assert "overall (4 prompts)" in capsys.readouterr().out


def test_eval_scores_one_kind_of_prompt(run_dir, tmp_path, capsys):
    out = tmp_path / "single.json"
    assert run("eval", "--prompts", 2, "--kind", "single", "--steps", 2, "--sr-steps", 2,
               "--pipeline", run_dir, "--out", out) == 0
    scores = json.loads(out.read_text())
    assert set(scores) == {"train/single", "heldout/single", "overall", "settings"}
    assert scores["overall"]["prompts"] == 4
    assert run("eval", "--kind", "glyph", "--split", "heldout", "--pipeline", run_dir) == 2
    assert "no glyph prompts" in error_line(capsys)


def test_eval_reads_a_prompt_file(run_dir, tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\n\nthe letter A in blue\n")
    assert run("eval", "--prompt-file", prompts, "--steps", 2, "--sr-steps", 2,
               "--pipeline", run_dir) == 0
    assert "file/prompts (2 prompts)" in capsys.readouterr().out


# --------------------------------------------------------------------------- mistakes


def test_unknown_word_is_one_line_naming_it(run_dir, capsys):
    assert run("generate", "a red dog", "--pipeline", run_dir) == 2
    assert "unknown word 'dog'" in error_line(capsys)


def test_missing_image_wrong_size_and_resize(run_dir, tmp_path, capsys):
    assert run("edit", tmp_path / "none.png", "a red circle", "--pipeline", run_dir) == 2
    assert "no image file" in error_line(capsys)
    big = tmp_path / "big.png"
    Image.fromarray(ShapesDataset(80, seed=0)[0][0]).save(big)
    assert run("edit", big, "a red circle", "--pipeline", run_dir) == 2
    line = error_line(capsys)
    assert "80×80" in line and "64×64" in line and "--resize" in line
    assert run("edit", big, "a red circle", "--resize", "--iterations", 1, "--sr-steps", 1,
               "--pipeline", run_dir, "--out", tmp_path / "e.png") == 0
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    assert run("inpaint", text, "a red circle", "--box", "0,0,8,8", "--pipeline", run_dir) == 2
    error_line(capsys)


def test_bad_boxes_and_shifts(run_dir, picture, capsys):
    assert run("inpaint", picture, "a red circle", "--pipeline", run_dir) == 2
    assert "--mask" in error_line(capsys)
    assert run("inpaint", picture, "a red circle", "--box", "0,0,99,8", "--pipeline",
               run_dir) == 2
    assert "not a box inside" in error_line(capsys)
    assert run("outpaint", picture, "a red circle", "--shift", "1,2,3", "--pipeline",
               run_dir) == 2
    assert "--shift takes 2" in error_line(capsys)


def test_edit_guides_the_super_resolution_stage_as_told(run_dir, picture, tmp_path):
    from tinymuse.pipeline import Pipeline

    pipeline = Pipeline.load(run_dir / "pipeline")
    image = png(picture)
    options = dict(seed=0, output="uint8")
    for flags, guidance in (([], (4.0, 4.0)), (["--sr-guidance", 0], (4.0, 0.0)),
                            (["--guidance", 1, "--sr-guidance", 2], (1.0, 2.0))):
        out = tmp_path / "edited.png"
        assert run("edit", picture, "a blue square", "--iterations", 2, "--sr-steps", 2,
                   "--pipeline", run_dir, "--out", out, "--overwrite", *flags) == 0
        expected = pipeline.edit(image, "a blue square", **options,
                                 base={"iterations": 2, "guidance_scale": guidance[0]},
                                 superres={"steps": 2, "guidance_scale": guidance[1]})
        np.testing.assert_array_equal(png(out), expected[0])


def test_bad_guidance_temperature_or_steps_are_named_by_their_flag(run_dir, picture, capsys):
    for command, flag in ((["generate", "a red circle"], "--sr-guidance"),
                          (["edit", picture, "a red circle"], "--guidance"),
                          (["demo"], "--guidance"),
                          (["generate", "a red circle"], "--temperature"),
                          (["eval", "--prompts", "1"], "--choice-temperature"),
                          (["inpaint", picture, "a red circle", "--box", "0,0,8,8"],
                           "--sr-choice-temperature")):
        assert run(*command, "--pipeline", run_dir, flag, -1) == 2
        assert f"{flag} must be a number from 0 to 100" in error_line(capsys)
    for command, flag in ((["generate", "a red circle"], "--steps"), (["demo"], "--sr-steps"),
                          (["edit", picture, "a red circle"], "--sr-steps")):
        assert run(*command, "--pipeline", run_dir, flag, 0) == 2
        assert f"{flag} must be a whole number >= 1" in error_line(capsys)
    assert run("edit", picture, "a red circle", "--pipeline", run_dir, "--iterations", 0) == 2
    assert "--iterations must be a whole number from 1 to 1000" in error_line(capsys)
    # --top-k is for both stages of an edit; a bad one is named as the flag it came from
    assert run("edit", picture, "a red circle", "--pipeline", run_dir, "--top-k", 0) == 2
    assert "--top-k must be a whole number >= 1" in error_line(capsys)


def test_missing_and_damaged_pipelines(run_dir, tmp_path, capsys, monkeypatch):
    assert run("generate", "a red circle", "--pipeline", tmp_path / "none") == 2
    assert "no pipeline at" in error_line(capsys)
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    for file in (run_dir / "pipeline").iterdir():
        if file.name != "base.safetensors":
            (damaged / file.name).write_bytes(file.read_bytes())
    assert run("generate", "a red circle", "--pipeline", damaged) == 2
    assert "base.safetensors" in error_line(capsys)
    monkeypatch.setattr(pipeline_files, "BUNDLED", tmp_path / "empty")
    assert run("demo") == 2
    assert "tinymuse train" in error_line(capsys)


def test_debug_shows_the_traceback(run_dir):
    with pytest.raises(ValueError, match="dog"):
        run("--debug", "generate", "a red dog", "--pipeline", run_dir)


def test_bundled_weights_load_and_draw_the_demo_or_say_how_to_make_them(capsys, tmp_path):
    if (cli.BUNDLED / "pipeline.json").is_file():
        size = sum(f.stat().st_size for f in cli.BUNDLED.rglob("*") if f.is_file())
        assert size < 25 * 2 ** 20
        pipeline = Pipeline.load(cli.BUNDLED)
        assert pipeline.image_size == SIZE
        for prompt in cli.DEMO_PROMPTS:
            pipeline.tokenizer.check_words(prompt)
        out = tmp_path / "demo.png"
        assert cli.main(["demo", "--out", str(out)]) == 0
        assert png(out).shape[1] == grid_side(4, scale=2)
    else:
        assert cli.main(["demo"]) == 2
        assert cli.TRAIN_COMMAND in error_line(capsys)


def test_python_dash_m_tinymuse_runs_the_command():
    done = subprocess.run([sys.executable, "-m", "tinymuse", "--version"], capture_output=True,
                          text=True, check=True)
    assert done.stdout.startswith("tinymuse ")


# A few steps of every stage: the lab preset's sizes, world and monitors fit each other.
LAB_IN_SECONDS = ("captions=400", "text_steps=2", "vq_base_steps=2", "vq_base_batch=4",
                  "vq_superres_steps=2", "vq_superres_batch=2", "images=16", "base_steps=2",
                  "base_batch=4", "superres_steps=2", "superres_batch=2", "sample_every=2")


def test_the_lab_preset_trains_every_stage_on_the_one_object_world(tmp_path):
    out = tmp_path / "lab"
    settings = [arg for setting in LAB_IN_SECONDS for arg in ("--set", setting)]
    assert run("train", "--stage", "all", "--preset", "lab", "--out", out, *settings,
               "--quiet") == 0
    record = load_record(out)
    assert list(record["stages"]) == list(STAGES)
    assert (record["preset"]["name"], record["preset"]["world"]) == ("lab", "centred")
    assert (out / "base" / "samples" / "step_000002.png").is_file()
    logged = [json.loads(line) for line in (out / "base" / "log.jsonl").read_text().splitlines()]
    sampled = [entry for entry in logged if "oracle/shape" in entry]
    assert sampled and not {"oracle/relation", "oracle/glyph"} & set(sampled[-1]), \
        "one-object prompts only"
    cache = ShapesDataset(32, seed=0, world="centred")
    from tinymuse.vq import load_image_tokens
    captions = load_image_tokens(out / "tokens" / "base.safetensors").captions
    assert list(captions) == [cache.caption(i) for i in range(16)]
    assert run("generate", "a red circle", "--pipeline", out, "--out", out / "g.png") == 0


def test_set_refuses_a_world_that_does_not_exist(tmp_path, capsys):
    assert run("train", "--stage", "tokenizer", "--preset", "lab", "--out", tmp_path / "r",
               "--set", "world=moon") == 2
    assert "--set world: must be one of full, single, centred, got 'moon'" in error_line(capsys)
