"""Killing a training stage with SIGKILL and resuming it gives the run that never stopped.

``kill -9`` is the hardest stop there is: no ``finally`` runs, no file is closed, no handler is
called. For each stage of the cascade that trains, each test below starts ``python -m tinymuse
train --stage S`` in a real subprocess, waits until the stage has checkpointed a few times and
logged a loss, kills it with SIGKILL, runs the same command again with ``--resume``, and checks
that the resumed run

- started from the killed run's last checkpoint (its progress bar starts at that step), and
- wrote the same log, line for line (every logged loss, learning rate, gradient norm and
  evaluation, exactly equal), and the same weights, bit for bit, as the same command run
  without a stop in another folder.

Exactly equal, not close: a resumed run reads the same batches and random draws in the same
order and does the same float operations on the same machine, so any difference is a bug
(a generator or an optimizer moment not restored, a step run twice or skipped).

The stages before the one under test are trained once (the module's fixture), which is also
the uninterrupted run each test compares with. The last test kills a command in the one other
place a kill could hurt: while it holds the lock on the run's record.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from tinymuse import checkpoint
from tinymuse.cascade import RECORD, STAGES, CascadeError, CascadePreset, load_record
from tinymuse.cascade.runs import _record_lock, _record_stage
from tinymuse.cascade.stages import outputs
from tinymuse.training.loop import CHECKPOINT, LOG

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT_EVERY = 3
# Enough steps that each stage is still running well after its first logged loss (the loop
# logs every 10 steps), so that the kill lands in the middle of the stage.
SETTINGS = {"checkpoint_every": CHECKPOINT_EVERY, "text_steps": 300, "vq_base_steps": 40,
            "vq_superres_steps": 36, "decoder_steps": 30, "base_steps": 150,
            "superres_steps": 40}
# The folders in which each stage runs the training loop; the last one is where it is killed
# (the decoders stage fine-tunes the base decoder, then the super-resolution one).
FOLDERS = {"text": ["text"], "vq-base": ["vq-base"], "vq-superres": ["vq-superres"],
           "decoders": ["decoders/base", "decoders/superres"], "base": ["base"],
           "superres": ["superres"]}
STEPS = {"text": "text_steps", "vq-base": "vq_base_steps", "vq-superres": "vq_superres_steps",
         "decoders": "decoder_steps", "base": "base_steps", "superres": "superres_steps"}
TIMEOUT = 180  # seconds for one command; a stage here trains in a few


def environment() -> dict:
    """One thread per process: tiny matrices, and a 2-core machine shared with the test."""
    threads = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                      "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")}
    return {**os.environ, **threads, "PYTHONPATH": str(ROOT)}


def command(stage: str, out: Path, *flags: str) -> list:
    settings = [item for key, value in SETTINGS.items() for item in ("--set", f"{key}={value}")]
    return [sys.executable, "-m", "tinymuse", "train", "--stage", stage, "--out", str(out),
            "--preset", "tiny", *settings, *flags]


def train(stage: str, out: Path, *flags: str) -> subprocess.CompletedProcess:
    done = subprocess.run(command(stage, out, *flags), cwd=ROOT, env=environment(),
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, f"`tinymuse train --stage {stage}` failed:\n{done.stderr}"
    return done


def checkpoint_step(folder: Path) -> int:
    """The step of the checkpoint in ``folder`` (0 if there is none yet). Each checkpoint is
    written atomically, so a reader sees a whole old one or a whole new one."""
    path = folder / CHECKPOINT
    if not path.exists():
        return 0
    return checkpoint.read_header(path)[1]["step"]


def read_log(folder: Path) -> list:
    """The whole lines of a loop's log: one dict each (the last line may still be written)."""
    path = folder / LOG
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    return [json.loads(line) for line in text.splitlines(keepends=True) if line.endswith("\n")]


def losses(entries: list) -> list:
    return [entry for entry in entries if "kind" not in entry]  # the rest are evaluations


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Every stage up to ``superres`` trained without a stop, one command each: the run each
    test compares with; and ``before[stage]``, a copy of the run folder as it was before
    ``stage`` started."""
    root = tmp_path_factory.mktemp("kill-resume")
    out, before = root / "reference", {}
    for stage in STAGES[:STAGES.index("superres") + 1]:
        if stage in FOLDERS:
            before[stage] = root / f"before-{stage}"
            shutil.copytree(out, before[stage])
        train(stage, out, "--quiet")
    return out, before


def kill_mid_stage(stage: str, out: Path, log_path: Path) -> int:
    """Start the stage in ``out``, SIGKILL it once it has checkpointed twice and logged a
    loss; return the step of the checkpoint it left."""
    folder = out / FOLDERS[stage][-1]
    with open(log_path, "w") as output:
        process = subprocess.Popen(command(stage, out, "--quiet"), cwd=ROOT, env=environment(),
                                   stdout=output, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + TIMEOUT
        try:
            while checkpoint_step(folder) < 2 * CHECKPOINT_EVERY or not losses(read_log(folder)):
                assert process.poll() is None, (
                    f"the {stage} stage ended (exit status {process.returncode}) before it "
                    f"could be killed mid-stage; give it more steps. Its output:\n"
                    f"{log_path.read_text()}")
                assert time.monotonic() < deadline, f"the {stage} stage never checkpointed"
                time.sleep(0.002)
            os.kill(process.pid, signal.SIGKILL)
        finally:  # on a failed check too: no process outlives its test
            if process.poll() is None:
                process.kill()
            process.wait(TIMEOUT)
    assert process.returncode == -signal.SIGKILL, (
        f"the {stage} stage finished (exit status {process.returncode}) before the kill "
        f"reached it; give it more steps")
    return checkpoint_step(folder)


def started_at(progress: str) -> int:
    """The lowest step any progress bar of a command showed: where its training began (a bar
    starts at the step it resumed from, and only counts up)."""
    counts = [int(n) for n in re.findall(r"(\d+)/\d+ \[", progress)]
    assert counts, f"no progress bar in the output:\n{progress}"
    return min(counts)


def weights(path: Path) -> dict:
    return checkpoint.load(path).tensors


@pytest.mark.parametrize("stage", list(FOLDERS))
def test_a_stage_killed_mid_training_resumes_as_if_never_stopped(stage, reference, tmp_path):
    finished, before = reference
    out = tmp_path / "run"
    shutil.copytree(before[stage], out)
    steps = SETTINGS[STEPS[stage]]

    killed_at = kill_mid_stage(stage, out, tmp_path / "killed.txt")
    assert 2 * CHECKPOINT_EVERY <= killed_at < steps, (
        f"the {stage} stage was killed after its last checkpoint (step {killed_at} of {steps}); "
        f"give it more steps")
    assert stage not in load_record(out)["stages"], "a killed stage is not recorded as done"

    resumed = train(stage, out, "--resume")  # with its progress bars, which show the start
    assert started_at(resumed.stderr) == killed_at, resumed.stderr
    assert stage in load_record(out)["stages"]
    assert not (out / f".{RECORD}.lock").exists()

    for folder in FOLDERS[stage]:
        straight = read_log(finished / folder)
        assert len(losses(straight)) >= steps // 10, "the comparison needs logged losses"
        assert read_log(out / folder) == straight, f"{folder}/{LOG} differs from the unbroken run's"
        assert checkpoint_step(out / folder) == steps
    for path in outputs(finished, stage, CascadePreset(**load_record(finished)["preset"])):
        expected, got = weights(path), weights(out / path.relative_to(finished))
        assert expected.keys() == got.keys()
        for name in expected:
            np.testing.assert_array_equal(got[name], expected[name], err_msg=name)


HOLD_THE_LOCK = """
import sys, time
from pathlib import Path
from tinymuse.cascade.runs import _record_lock
with _record_lock(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(600)
"""


def test_a_command_killed_while_it_holds_the_record_lock_does_not_block_the_next(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / RECORD).write_text(json.dumps({"preset": {}, "data": "shapes", "stages": {}}))
    lock = out / f".{RECORD}.lock"
    holder = subprocess.Popen([sys.executable, "-c", HOLD_THE_LOCK, str(out)], cwd=ROOT,
                              env=environment(), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert wait_for_lock(out, timeout=0.3) == "timed out"  # a live holder is waited for
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(TIMEOUT)
        holder.stdout.close()
    assert lock.exists(), "SIGKILL runs no clean-up: the lock is left behind"
    breaking = lock.with_name(lock.name + ".break")
    breaking.write_text("")  # another command is breaking it (or was killed doing so)
    outcome = []  # then the lock is waited for until the timeout, and not spun on for ever
    waiter = threading.Thread(target=lambda: outcome.append(wait_for_lock(out, timeout=0.3)),
                              daemon=True)
    waiter.start()
    waiter.join(30)
    assert not waiter.is_alive() and outcome == ["timed out"], outcome
    breaking.unlink()
    started = time.monotonic()
    _record_stage(out, "base", 5.0)  # waits up to a minute for a lock held by a live command
    assert time.monotonic() - started < 10, "the dead holder's lock was waited out"
    assert list(load_record(out)["stages"]) == ["base"]
    assert not lock.exists() and not breaking.exists()


def wait_for_lock(out: Path, timeout: float) -> str:
    try:
        with _record_lock(out, timeout=timeout):
            return "taken"
    except CascadeError as error:
        return "timed out" if "delete it" in str(error) else str(error)
