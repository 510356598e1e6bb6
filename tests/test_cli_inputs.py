"""What a user gets from the ``tinymuse`` command for every kind of bad or unusual input: one
clear line (never a traceback), a bound on all work, no file replaced unasked, no wrong value
accepted in silence; and the conventions of image tools (parameters in the PNG, progress,
prompt files, default names that do not collide).

The bundled weights draw here, as they do for a user; drawings use few steps to stay fast.
"""
import os
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tinymuse import Pipeline, backend, cli, files
from tinymuse.cli import outputs
from tinymuse.cli.train import try_it
from tinymuse.data import ShapesDataset

from cli_helpers import error_line, png, run

FAST = ("--steps", "2", "--sr-steps", "2")
ROOT = Path(__file__).resolve().parent.parent




@pytest.fixture(scope="module")
def bundled():
    return Pipeline.from_pretrained()


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """A 64×64 shapes-world picture, as a PNG."""
    path = tmp_path_factory.mktemp("pictures") / "scene.png"
    Image.fromarray(ShapesDataset(64, seed=3)[0][0]).save(path)
    return path


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (len(data).to_bytes(4, "big") + kind + data
            + zlib.crc32(kind + data).to_bytes(4, "big"))


def huge_png_header(path: Path, side: int) -> Path:
    """A PNG whose header claims side×side pixels, a few bytes on disk."""
    header = side.to_bytes(4, "big") * 2 + bytes([8, 2, 0, 0, 0])
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
                     + _png_chunk(b"IDAT", zlib.compress(b"\0" * 16))
                     + _png_chunk(b"IEND", b""))
    return path


# --------------------------------------------------------------------------- #
# Run as a user runs it: a separate process, and never a traceback.
# --------------------------------------------------------------------------- #


def test_bad_input_in_a_real_process_is_one_line_and_never_a_traceback(tmp_path, scene):
    huge = huge_png_header(tmp_path / "huge.png", 14000)
    truncated = tmp_path / "cut.png"
    whole = scene.read_bytes()
    truncated.write_bytes(whole[:len(whole) // 2])
    binary = tmp_path / "prompts.txt"
    binary.write_bytes(bytes(range(256)) * 4)
    cases = [
        (["generate", "a red circle", "--scale", "5000"], "--scale: must be a whole number"),
        (["generate", "a red circle", "--device", "cuda"] if not backend.cuda_available()
         else ["generate", "a red circle", "--device", "tpu"], "cuda"),
        (["eval", "--prompts", "0"], "--prompts: must be a whole number from 1"),
        (["eval", "--prompts", "-1"], "--prompts: must be a whole number from 1"),
        (["eval", "--batch-size", "-1"], "--batch-size: must be a whole number from 1"),
        (["edit", huge, "a red circle"], "14000×14000"),
        (["inpaint", truncated, "a red circle", "--box", "0,0,8,8"], "cut.png"),
        (["generate", "--prompt-file", binary], "is not a UTF-8 text file"),
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               PYTHONPATH=str(ROOT))
    for argv, expected in cases:
        done = subprocess.run([sys.executable, "-m", "tinymuse", *map(str, argv)],
                              capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
        lines = done.stderr.strip().splitlines()
        assert done.returncode == 2 and "Traceback" not in done.stderr, (argv, done.stderr)
        assert len(lines) == 1 and lines[0].startswith("tinymuse: error: "), (argv, lines)
        assert expected in lines[0], (argv, lines[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.png", "huge.png", "prompts.txt"]


def test_a_missing_gpu_is_one_line_naming_the_fix(monkeypatch, capsys):
    monkeypatch.setattr(backend, "cuda_available", lambda: False)
    assert run("generate", "a red circle", "--device", "cuda") == 2
    assert "pip install tinymuse[gpu]" in error_line(capsys)


# --------------------------------------------------------------------------- #
# Every run is bounded.
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("argv, expected", [
    (["generate", "a red circle", "--steps", "100000"], "--steps must be at most the 64 tokens"),
    (["generate", "a red circle", "--sr-steps", "257"], "--sr-steps must be at most the 256"),
    (["generate", "a red circle", "--samples", "100000"], "--samples: must be a whole number"),
    (["generate", "a", "b", "--samples", "600"], "more than the 1024 one command draws"),
    (["generate", "a red circle", "--samples", "300", "--scale", "32"], "more than 8192 a side"),
    (["edit", "SCENE", "a red circle", "--iterations", "100000"],
     "--iterations must be a whole number from 1 to 1000"),
    (["edit", "SCENE", "a red circle", "--top-k", "100000"], "--top-k must be at most the"),
    (["eval", "--prompts", "100000"], "--prompts: must be a whole number from 1 to 10000"),
])
def test_work_that_cannot_make_sense_is_refused_before_it_starts(argv, expected, scene, capsys,
                                                                 tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run(*[scene if a == "SCENE" else a for a in argv]) == 2
    assert expected in error_line(capsys)
    assert list(tmp_path.iterdir()) == []


def test_long_work_reports_its_progress_through_the_callback(bundled):
    calls = []
    bundled.generate(["a red circle", "a blue square"], seed=0, base={"steps": 3},
                     superres={"steps": 2}, callback=lambda *call: calls.append(call))
    assert calls == [("base", 1, 3), ("base", 2, 3), ("base", 3, 3),
                     ("superres", 1, 2), ("superres", 2, 2)]
    calls.clear()
    image = bundled.generate("a red circle", seed=0, output="uint8")
    bundled.edit(image, "a blue circle", seed=0, base={"iterations": 4},
                 callback=lambda *call: calls.append(call))
    assert [c for c in calls if c[0] == "edit"] == [("edit", i, 4) for i in (1, 2, 3, 4)]
    assert all(stage in ("edit", "superres") for stage, _, _ in calls)


def test_the_progress_bar_counts_every_step_on_a_terminal_and_is_quiet_otherwise(
        scene, tmp_path, monkeypatch, capsys):
    class Terminal:  # stderr as a terminal, so that the bar shows
        text = ""

        def write(self, text):
            self.text += text

        def flush(self):
            pass

        def isatty(self):
            return True

    closed = []  # (description, steps counted, total, shown) of each bar when it closes
    close = outputs.Progress.close

    def recording_close(self):
        bar = self.bar
        closed.append((self.what, bar.n, bar.total, not bar.disable))
        close(self)

    monkeypatch.setattr(outputs.Progress, "close", recording_close)
    monkeypatch.setattr(sys, "stderr", Terminal())
    assert run("generate", "a red circle", *FAST, "--out", tmp_path / "a.png") == 0
    assert run("edit", scene, "a blue circle", "--iterations", 3, "--sr-steps", 2,
               "--out", tmp_path / "b.png") == 0
    assert "drawing" in sys.stderr.text
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\ntwo blue squares\n")
    assert run("eval", "--prompt-file", prompts, "--batch-size", 1, *FAST) == 0
    assert run("generate", "a red circle", *FAST, "--out", tmp_path / "c.png", "--quiet") == 0
    monkeypatch.setattr(sys, "stderr", sys.__stderr__)
    capsys.readouterr()
    assert run("generate", "a red circle", *FAST, "--out", tmp_path / "d.png") == 0
    assert capsys.readouterr().err == ""
    # the edit redraws super-resolution tokens only under changed base tokens: up to 2 steps
    assert closed[0] == ("drawing", 4, 4, True)
    assert closed[1][0] == "edit" and closed[1][2] == 5 and 3 <= closed[1][1] <= 5
    assert closed[2] == ("scoring", 8, 8, True)  # two batches of one prompt, 4 steps each
    assert closed[3][3] is False and closed[4][3] is False, "--quiet, or not a terminal"


def test_many_samples_are_drawn_in_batches_from_one_stream(bundled, tmp_path, monkeypatch):
    monkeypatch.setattr("tinymuse.cli.draw.DRAW_BATCH", 2)
    assert run("generate", "a red circle", "--samples", 5, *FAST, "--out",
               tmp_path / "grid.png") == 0
    grid = png(tmp_path / "grid.png")
    cells = [grid[2:66, 2 + i * 66:66 + i * 66] for i in range(5)]
    generator = backend.Generator(0)
    expected = np.concatenate([bundled.generate(["a red circle"] * n, seed=generator,
                                                output="uint8", base={"steps": 2},
                                                superres={"steps": 2}) for n in (2, 2, 1)])
    np.testing.assert_array_equal(np.stack(cells), expected)
    assert len({cell.tobytes() for cell in cells}) == 5, "batches must not repeat each other"


# --------------------------------------------------------------------------- #
# No wrong value is accepted in silence.
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("flag, value", [("--temperature", "inf"), ("--guidance", "inf"),
                                         ("--guidance", "1e308"), ("--sr-guidance", "nan"),
                                         ("--choice-temperature", "1e300")])
def test_infinite_or_overflowing_settings_are_refused(flag, value, capsys):
    assert run("generate", "a red circle", flag, value) == 2
    assert f"{flag} must be a number from 0 to 100" in error_line(capsys)


def test_a_16_bit_picture_is_read_as_the_8_bit_one_it_holds(scene, tmp_path):
    grey = png(scene).mean(axis=-1).round().astype(np.uint16)
    eight = tmp_path / "grey8.png"
    Image.fromarray(grey.astype(np.uint8)).save(eight)
    sixteen = tmp_path / "grey16.png"
    Image.frombytes("I;16B", (64, 64), (grey * 257).astype(">u2").tobytes()).save(sixteen)
    for source in (eight, sixteen):
        assert run("edit", source, "a blue circle", "--iterations", 2, "--sr-steps", 2,
                   "--out", tmp_path / f"from-{source.stem}.png") == 0
    np.testing.assert_array_equal(png(tmp_path / "from-grey8.png"),
                                  png(tmp_path / "from-grey16.png"))


def test_an_empty_prompt_says_it_draws_the_unconditional_sample(tmp_path, capsys):
    assert run("generate", "", "  ", *FAST, "--out", tmp_path / "a.png") == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unconditional sample" in err[0]  # one note for both


def test_an_empty_negative_prompt_is_said_to_be_none(tmp_path, capsys):
    assert run("generate", "a red circle", "--negative", " ", *FAST,
               "--out", tmp_path / "a.png") == 0
    assert "empty negative prompt is the same as none" in capsys.readouterr().err


def test_known_words_that_do_not_parse_get_a_note_and_captions_do_not(tmp_path, capsys):
    assert run("generate", "circle red a", *FAST, "--out", tmp_path / "a.png") == 0
    note = capsys.readouterr().err
    assert "'circle red a' is not a caption of the shapes world" in note
    assert run("generate", "a red circle above a blue square", *FAST,
               "--out", tmp_path / "b.png") == 0
    assert capsys.readouterr().err == ""


def test_a_prompt_is_read_in_the_case_the_captions_were_written_in(tmp_path, capsys):
    """"Red" in capitals is no word the tokenizer learnt: its pieces are letters, which the
    models read as glyphs. The shapes world's prompts are drawn as written captions."""
    assert run("generate", "A Red Circle.", *FAST, "--out", tmp_path / "shouted.png") == 0
    assert "reading 'A Red Circle.' as 'a red circle'" in capsys.readouterr().err
    assert run("generate", "a red circle", *FAST, "--out", tmp_path / "written.png") == 0
    np.testing.assert_array_equal(png(tmp_path / "shouted.png"), png(tmp_path / "written.png"))
    assert run("generate", "the letter a in blue", *FAST, "--out", tmp_path / "a.png") == 0
    assert "as 'the letter A in blue'" in capsys.readouterr().err


def test_an_unknown_word_is_refused_before_anything_is_drawn(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run("generate", "a red circle", "a red dog") == 2
    assert "unknown word 'dog'" in error_line(capsys)
    assert list(tmp_path.iterdir()) == []


def test_a_custom_data_runs_hint_uses_one_of_its_own_captions(tmp_path):
    folder = tmp_path / "pictures"
    folder.mkdir()
    for name, caption in (("cat", "a cat on a sofa"), ("dog", "a dog in the snow")):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / f"{name}.png")
        (folder / f"{name}.txt").write_text(caption)
    hint = try_it("runs/my run", str(folder))
    assert hint.startswith("tinymuse generate --pipeline 'runs/my run' ")
    assert hint.endswith(("'a cat on a sofa'", "'a dog in the snow'"))
    assert try_it("runs/cascade", "shapes") == "tinymuse demo --pipeline runs/cascade"


# --------------------------------------------------------------------------- #
# No file is replaced unasked.
# --------------------------------------------------------------------------- #


def test_an_existing_out_is_kept_unless_overwrite_is_given(tmp_path, capsys):
    out = tmp_path / "mine.png"
    out.write_bytes(b"precious")
    assert run("generate", "a red circle", *FAST, "--out", out) == 2
    assert "--overwrite" in error_line(capsys)
    assert out.read_bytes() == b"precious"
    assert run("generate", "a red circle", *FAST, "--out", out, "--overwrite") == 0
    assert png(out).shape == (64, 64, 3)


def test_the_input_picture_is_never_written_over(scene, tmp_path, capsys):
    keep = tmp_path / "keep.png"
    keep.write_bytes(scene.read_bytes())
    for command in (["edit", keep, "a blue circle"],
                    ["inpaint", keep, "a blue circle", "--box", "0,0,8,8"],
                    ["outpaint", keep, "a blue circle", "--shift", "0,8"]):
        assert run(*command, "--out", keep, "--overwrite") == 2
        assert "never writes over its input" in error_line(capsys)
    assert keep.read_bytes() == scene.read_bytes()


def test_a_write_that_fails_leaves_the_old_file(tmp_path, capsys, monkeypatch):
    out = tmp_path / "mine.png"
    out.write_bytes(b"precious")

    def full_disk(source, target):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", full_disk)
    assert run("generate", "a red circle", *FAST, "--out", out, "--overwrite") == 2
    assert "No space left on device" in error_line(capsys)
    assert out.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine.png"]


def test_default_names_do_not_collide(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for _ in range(3):
        assert run("generate", "a red circle", *FAST) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "tinymuse-2.png", "tinymuse-3.png", "tinymuse.png"]
    assert "wrote tinymuse-3.png" in capsys.readouterr().out


def test_the_default_outputs_are_ignored_by_git():
    ignored = subprocess.run(["git", "check-ignore", "tinymuse.png", "tinymuse-demo-2.png",
                              "tinymuse-edit.png"], cwd=ROOT, capture_output=True, text=True)
    assert ignored.stdout.split() == ["tinymuse.png", "tinymuse-demo-2.png", "tinymuse-edit.png"]


# --------------------------------------------------------------------------- #
# Clear words for every mistake.
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("argv, expected", [
    (["generate", "a red circle", "--seed", "-1"], "argument --seed: must be a whole number"),
    (["generate", "a red circle", "--scale", "0"], "argument --scale: must be a whole number"),
    (["generate", "a red circle", "--out", "picture"], "--out picture must name a .png file"),
    (["eval", "--batch-size", "0"], "argument --batch-size: must be a whole number"),
    (["eval", "--out", "scores.txt"], "--out scores.txt must name a .json file"),
    (["train", "--out", "r", "--lr", "nan"], "argument --lr: must be a number above 0"),
    (["generate", "a red circle", "--pipeline", "UNFINISHED"], "if it is a run that has not"),
    (["generate", "a red circle", "--bogus"], "unrecognized arguments: --bogus"),
    (["generate", "a red circle", "--pipeline", "EMPTY"], "holds no pipeline"),
    (["generate", "a red circle", "--out", "MISSING/deeper/x.png"], "cannot write"),
    (["train", "--out", "r", "--set", "base_steps=-5"], "--set base_steps: must be a finite"),
    (["train", "--out", "PROMPTS"], "is a file; a run is a folder"),
    (["train", "--out", "r", "--set", "base.d_model=abc"], "expected a value like 256"),
    (["train", "--out", "r", "--set", "base.width=3"], "has no field 'width'"),
    (["generate", "a red circle", "--prompt-file", "PROMPTS"], "not both"),
    (["generate", " ".join(["circle"] * 5000) + " dog"], "unknown word 'dog'"),
    (["generate", "a red dog"], "`tinymuse vocab` lists"),
])
def test_every_mistake_is_one_line_that_names_the_flag(argv, expected, tmp_path, capsys,
                                                      monkeypatch):
    monkeypatch.chdir(tmp_path)
    unfinished = tmp_path / "run"
    (unfinished / "tokenizer").mkdir(parents=True)
    (unfinished / "cascade.json").write_text("{}")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\n")
    (tmp_path / "empty").mkdir()
    (tmp_path / "MISSING").write_text("a file where a folder should be")
    names = {"UNFINISHED": str(unfinished), "PROMPTS": str(prompts), "EMPTY": "empty"}
    argv = [names.get(a, a) for a in argv]
    assert run(*argv) == 2
    line = error_line(capsys)
    assert expected in line and len(line) < 400, line


def test_a_damaged_picture_or_mask_is_named(scene, tmp_path, capsys):
    cut = tmp_path / "cut.png"
    whole = scene.read_bytes()
    cut.write_bytes(whole[:len(whole) // 2])
    assert run("edit", cut, "a red circle") == 2
    assert "cut.png" in error_line(capsys)
    assert run("inpaint", scene, "a red circle", "--mask", cut) == 2
    line = error_line(capsys)
    assert "cut.png" in line and "mask" in line


def test_negative_shifts_and_boxes_take_the_plain_form(scene, tmp_path):
    assert run("outpaint", scene, "a red circle", "--shift", "-24,0", *FAST,
               "--out", tmp_path / "plain.png") == 0
    assert run("outpaint", scene, "a red circle", "--shift=-24,0", *FAST,
               "--out", tmp_path / "equals.png") == 0
    np.testing.assert_array_equal(png(tmp_path / "plain.png"), png(tmp_path / "equals.png"))


def test_ctrl_c_while_drawing_says_nothing_was_written(tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(Pipeline, "generate", interrupted)
    assert run("generate", "a red circle", "--out", tmp_path / "a.png") == 130
    err = capsys.readouterr().err
    assert "nothing was written" in err and "resume" not in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("failure, code, expected", [
    (MemoryError(), 2, "out of memory: draw fewer images at once"),
    (TypeError("unsupported operand"), 1, "this is a bug in tinymuse: run the command again "
                                          "with --debug"),
])
def test_an_unexpected_failure_is_still_one_line(failure, code, expected, tmp_path, capsys,
                                                monkeypatch):
    def failing(*args, **kwargs):
        raise failure

    monkeypatch.setattr(Pipeline, "generate", failing)
    assert run("generate", "a red circle", "--out", tmp_path / "a.png") == code
    assert expected in error_line(capsys)
    with pytest.raises(type(failure)):
        run("--debug", "generate", "a red circle", "--out", tmp_path / "a.png")


def test_demo_help_shows_its_own_scale_default(capsys):
    with pytest.raises(SystemExit):
        run("demo", "--help")
    assert "(default 2)" in " ".join(capsys.readouterr().out.split())


# --------------------------------------------------------------------------- #
# The conventions of image tools.
# --------------------------------------------------------------------------- #


def test_from_pretrained_loads_the_bundled_weights_from_any_folder(tmp_path):
    script = ("import tinymuse; p = tinymuse.Pipeline.from_pretrained(); "
              "print(p.generate('a red circle', seed=1, output='uint8').sum())")
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, capture_output=True,
                          text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    here = Pipeline.from_pretrained().generate("a red circle", seed=1, output="uint8").sum()
    assert int(done.stdout) == int(here)


def test_from_pretrained_takes_a_saved_folder_or_a_run_folder(bundled, tmp_path):
    bundled.save(tmp_path / "run" / "pipeline", dtype="float16")
    for path in (tmp_path / "run", tmp_path / "run" / "pipeline"):
        loaded = Pipeline.from_pretrained(path)
        np.testing.assert_array_equal(
            loaded.generate("a red circle", seed=2, output="uint8", base={"steps": 2}),
            bundled.generate("a red circle", seed=2, output="uint8", base={"steps": 2}))


def test_every_png_carries_its_parameters_and_info_draws_it_again(tmp_path, capsys):
    first = tmp_path / "first.png"
    assert run("generate", "two blue squares", "--seed", 5, "--negative", "a red circle",
               "--steps", 3, "--sr-steps", 2, "--out", first) == 0
    capsys.readouterr()
    assert run("info", first) == 0
    printed = capsys.readouterr().out.splitlines()
    fields = dict(line.split(": ", 1) for line in printed)
    assert fields["prompts"] == '["two blue squares"]' and fields["seed"] == "5"
    assert fields["negative_prompt"] == "a red circle"
    assert '"steps": 3' in fields["base"] and '"steps": 2' in fields["superres"]
    again = fields["draw it again"].split()
    assert again[:2] == ["tinymuse", "generate"]
    second = tmp_path / "second.png"
    out = again.index("--out")
    again[out + 1] = str(second)
    import shlex
    assert run(*shlex.split(" ".join(again))[1:]) == 0
    np.testing.assert_array_equal(png(first), png(second))
    plain = tmp_path / "plain.png"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(plain)
    assert run("info", plain) == 2
    assert "carries no tinymuse parameters" in error_line(capsys)


def test_prompt_files_feed_generate_and_eval(tmp_path, capsys):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\n\n  two blue squares  \n", encoding="utf-8")
    assert run("generate", "--prompt-file", prompts, *FAST, "--out", tmp_path / "a.png") == 0
    assert png(tmp_path / "a.png").shape == (68, 134, 3)  # two cells, one row
    assert run("eval", "--prompt-file", prompts, *FAST, "--out", tmp_path / "s.json") == 0
    assert "file/prompts (2 prompts)" in capsys.readouterr().out


def test_edit_takes_a_negative_prompt(bundled, scene, tmp_path):
    image = png(scene)
    assert run("edit", scene, "a blue circle", "--negative", "a red circle", "--iterations", 3,
               "--sr-steps", 2, "--out", tmp_path / "e.png") == 0
    expected = bundled.edit(image, "a blue circle", negative_prompt="a red circle", seed=0,
                            output="uint8", base={"iterations": 3}, superres={"steps": 2})
    np.testing.assert_array_equal(png(tmp_path / "e.png"), expected[0])
    unguided = bundled.edit(image, "a blue circle", seed=0, output="uint8",
                            base={"iterations": 3}, superres={"steps": 2})
    assert not np.array_equal(expected, unguided), "the negative prompt must matter"


def test_vocab_lists_the_words_prompts_may_use(bundled, capsys):
    assert run("vocab") == 0
    out = capsys.readouterr().out
    assert f"{len(bundled.tokenizer.known_words)} words" in out
    listed = set(" ".join(out.splitlines()[1:]).split())
    assert set(bundled.tokenizer.known_words) <= listed
    assert "captions" in out


def test_write_pictures_refuses_a_name_taken_while_drawing(tmp_path):
    out = tmp_path / "late.png"
    args = type("Args", (), {"scale": 1, "overwrite": False})()
    files.write_bytes(out, b"someone else's")
    with pytest.raises(cli.CommandError, match="appeared while the pictures were drawn"):
        outputs.write_pictures(np.zeros((1, 4, 4, 3), np.uint8), out, args, 1, {})
    assert out.read_bytes() == b"someone else's"
