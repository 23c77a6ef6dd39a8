"""SIGKILL a real training process at random moments, over and over: the run folder must stay usable.

After every kill: each checkpoint present loads, no visible half-written file exists (temporary files are
hidden ``.NAME.tmp-*`` files), at most the epoch in flight is lost, and ``--resume`` carries on. Finally an
ordinary ``python -m medseg.apps.cli.app train --resume`` finishes the run with exactly one log line per epoch, and
(``--deterministic``) with the very weights of an uninterrupted run.

To keep this affordable on a busy 2-core machine, the run is planned first (as ``medseg plan`` would) and
its plans shrunk to a tiny network and batch; the killed processes are forked from a fork server that has
imported torch and medseg once (:mod:`tests.training.tiny_runs`) and run the ``medseg train`` command line.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from multiprocessing.process import BaseProcess
from pathlib import Path

import numpy as np
import torch

from medseg.run import load_checkpoint
from medseg.synthetic import SyntheticSpec, write_dataset
from medseg.workflow import TrainOptions, train_run
from tests.training.tiny_runs import PRELOAD, plan_tiny_run, run_cli

logger = logging.getLogger(__name__)

EPOCHS = 30
KILLS = 12
HANG_S = 120.0  # guard against a hung child only; never a pass/fail criterion on speed


def _argv(dataset: Path, run: Path, resume: bool) -> list[str]:
    argv = ["train", str(dataset), "--out", str(run), "--device", "cpu"]
    return [*argv, "--resume"] if resume else argv


def _log_records(run: Path) -> list[dict]:
    """Complete lines of log.jsonl (a line cut short by the kill is ignored)."""
    path = run / "log.jsonl"
    records = []
    for line in path.read_text(encoding="utf-8").splitlines() if path.exists() else []:
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def _checkpoint_temps(run: Path) -> set[str]:
    """Hidden temporary checkpoint files: one being written now, or left behind by an earlier kill."""
    return {p.name for p in run.iterdir() if p.name.startswith(".checkpoint_") and ".tmp-" in p.name}


def _wait(condition: Callable[[], bool], proc: BaseProcess, deadline: float, poll_s: float) -> bool:
    """Poll ``condition`` until true (True) or until ``proc`` ends (False)."""
    while not condition():
        if proc.exitcode is not None:
            return False
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("training process hung")
        time.sleep(poll_s)
    return True


def _identity(path: Path) -> tuple[int, int]:
    """Changes whenever the file is replaced (an inode number alone may be reused at once)."""
    if not path.exists():
        return (-1, -1)
    stat = path.stat()
    return (stat.st_ino, stat.st_mtime_ns)


def _kill_at_random_moment(proc: BaseProcess, run: Path, first: bool, rng: np.random.Generator) -> str:
    """Wait for a moment picked with ``rng``, SIGKILL ``proc``; return where it was (for the log)."""
    deadline = time.monotonic() + HANG_S
    last = run / "checkpoint_last.pt"
    left_over = _checkpoint_temps(run)

    def writing() -> bool:
        return bool(_checkpoint_temps(run) - left_over)

    if first:  # land in preprocessing, model building or the first epochs
        time.sleep(rng.uniform(0.0, 1.0))
        moment = "first epochs" if last.exists() else "before the first checkpoint"
    elif last.exists() and load_checkpoint(last)["epoch"] == EPOCHS:  # only evaluation is left
        time.sleep(rng.uniform(0.0, 3.0))
        moment = "evaluation"
    else:  # once this process has replaced checkpoint_last it is surely in the training loop
        before = _identity(last)
        if not _wait(lambda: _identity(last) != before, proc, deadline, 0.005):
            return "exited"
        if rng.random() < 0.4:  # hunt for a checkpoint write: kill the moment its temp file appears
            hit = _wait(writing, proc, deadline, 0.001)
            moment = "checkpoint write" if hit else "exited"
        else:
            time.sleep(rng.uniform(0.0, 1.2) * float(_log_records(run)[-1]["seconds"]))
            moment = "checkpoint write" if writing() else "epoch"
    proc.kill()
    return moment


def _assert_usable(run: Path) -> None:
    """What must hold after any kill."""
    visible = [p for p in run.rglob("*") if not any(part.startswith(".") for part in p.relative_to(run).parts)]
    assert not [p for p in visible if ".tmp-" in p.name], "a visible temporary file was left"
    for ckpt in (p for p in visible if p.suffix == ".pt"):
        load_checkpoint(ckpt)  # raises DataError when unreadable
    for record in (p for p in visible if p.suffix == ".json"):
        json.loads(record.read_text(encoding="utf-8"))
    epochs = [r["epoch"] for r in _log_records(run)]
    assert epochs == list(range(1, len(epochs) + 1)), epochs
    last_logged = epochs[-1] if epochs else 0
    saved = load_checkpoint(run / "checkpoint_last.pt")["epoch"] if (run / "checkpoint_last.pt").exists() else 0
    assert last_logged - 1 <= saved <= last_logged, (saved, last_logged)  # at most the epoch in flight is lost


def test_sigkill_at_random_moments_then_resume(tmp_path: Path) -> None:
    dataset = write_dataset(tmp_path / "ds", SyntheticSpec(ndim=2, shape=(48, 48)), n_cases=6, seed=0, layout="msd")
    run, output = tmp_path / "run", tmp_path / "train-output.txt"
    options = TrainOptions(epochs=EPOCHS, iterations_per_epoch=2, val_every=2, device="cpu", folds=3, seed=0)
    plan_tiny_run(dataset, run, replace(options, deterministic=True))
    rng = np.random.default_rng(20240611)
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    moments = []
    for attempt in range(KILLS + 4):  # a process may finish its phase before its kill lands
        if len([m for m in moments if m != "exited"]) == KILLS:
            break
        proc = ctx.Process(target=run_cli, args=(_argv(dataset, run, resume=attempt > 0), str(output)))
        proc.start()
        moments.append(_kill_at_random_moment(proc, run, attempt == 0, rng))
        proc.join()
        assert proc.exitcode in (0, -9), output.read_text()[-3000:]
        proc.close()
        _assert_usable(run)
    logger.info("kills landed: %s", moments)
    assert len([m for m in moments if m != "exited"]) == KILLS, moments

    done = subprocess.run(
        [sys.executable, "-m", "medseg.apps.cli.app", *_argv(dataset, run, resume=True)],
        capture_output=True,
        encoding="utf-8",
        errors="replace",
        timeout=HANG_S * 3,
        env={**os.environ, "OMP_NUM_THREADS": "1"},  # as run_cli: a tiny network, a busy machine
    )
    assert done.returncode == 0, done.stderr[-3000:]
    _assert_usable(run)
    assert (run / "metrics.json").is_file() and (run / "checkpoint_best.pt").is_file()
    assert [r["epoch"] for r in _log_records(run)] == list(range(1, EPOCHS + 1))
    assert load_checkpoint(run / "checkpoint_last.pt")["epoch"] == EPOCHS
    _assert_same_as_uninterrupted(dataset, run, tmp_path / "uninterrupted")


def _assert_same_as_uninterrupted(dataset: Path, run: Path, whole: Path) -> None:
    """Twelve kills and resumes end with the weights of one uninterrupted run of the same plans."""
    whole.mkdir()
    for name in ("plans.json", "dataset.json"):
        shutil.copy(run / name, whole / name)
    before, threads = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads()
    torch.set_num_threads(1)  # as the killed processes
    try:
        train_run(dataset, whole, TrainOptions(device="cpu"))
    finally:
        torch.use_deterministic_algorithms(before)
        torch.set_num_threads(threads)
    a, b = load_checkpoint(run / "checkpoint_last.pt")["model"], load_checkpoint(whole / "checkpoint_last.pt")["model"]
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
