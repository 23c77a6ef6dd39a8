"""Helpers for tests that train: a tiny planned run, and ``medseg ARGS`` in a forked, pre-loaded process.

``python -m medseg.apps.cli.app`` spends ~2-3 s importing torch before it does anything; forking from a server that
imported medseg once (``multiprocessing`` 'forkserver' with :data:`PRELOAD`) makes each training process
start in ~0.1 s, so test_crash_safety can afford many kills.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from medseg.config.plans import Plans, save_plans
from medseg.workflow import TrainOptions, plan_run

__all__ = ["PRELOAD", "plan_tiny_run", "run_cli"]

# modules the fork server imports once: torch (with torch._dynamo, which the optimiser's first step imports),
# the CLI, the training pipeline and the report (matplotlib)
PRELOAD = [
    "torch",
    "torch._dynamo",
    "medseg.apps.cli.app",
    "medseg.apps.cli.views",
    "medseg.workflow",
    "medseg.evaluation.report",
]


def run_cli(argv: list[str], output: str) -> None:
    """Run the ``medseg`` command line with ``argv`` in this process, stdout and stderr appended to ``output``.

    The process exits with the command's exit code (typer raises ``SystemExit``). It computes on one thread:
    the network is tiny, and on a busy machine a second OpenMP thread makes each operation wait for a time slice.
    """
    fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    import torch

    from medseg.apps.cli.app import app

    torch.set_num_threads(1)
    app(argv, prog_name="medseg")


def plan_tiny_run(dataset: Path, run: Path, options: TrainOptions) -> Plans:
    """Plan ``run`` like ``medseg plan``, then edit its plans (as a user may) to a tiny network and batch of 4,
    so that an epoch takes a fraction of a second on one CPU thread."""
    plans = plan_run(dataset, run, options)
    model = replace(plans.model, features=tuple(4 * 2**i for i in range(len(plans.model.features))))
    plans = replace(plans, model=model, train=replace(plans.train, batch_size=4))
    save_plans(plans, run / "plans.json")
    return plans
