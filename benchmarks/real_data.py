"""Train on a real dataset from ../shared/data under a CPU time budget and report held-out Dice and where
the time went. Not a test: figures go into docs/benchmarks.md by hand, with the command that made them.

    python benchmarks/real_data.py hippocampus --budget 30m --out /tmp/bench-hippocampus
    python benchmarks/real_data.py jsrt --budget 15m --out /tmp/bench-jsrt
    python benchmarks/real_data.py hippocampus --epochs 100 --out /tmp/bench-hippocampus   # fixed work
    python benchmarks/real_data.py jsrt --budget 15m --no-budget-plan --out /tmp/bench-jsrt-old   # the old plan

hippocampus: MSD Task04 (200 cases here), fold 0 of 5 held out (40 cases), 3D, labels anterior/posterior.
jsrt: 40 chest X-rays; images (2048²) are block-averaged to the masks' 1024² grid by ``medseg convert
--resize-images-to-masks``; 5 overlapping binary structures; fold 0 of 5 held out (8 cases).
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
DATASETS = {"hippocampus": "msd-hippocampus", "jsrt": "jsrt-scr-cxr"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", choices=sorted(DATASETS))
    parser.add_argument("--budget", default="30m", help="training time budget (medseg train --time-budget)")
    parser.add_argument(
        "--epochs", type=int, default=0, help="train exactly this many epochs instead of a time budget (fixed work)"
    )
    parser.add_argument("--out", type=Path, required=True, help="new folder for the converted data and the run")
    parser.add_argument(
        "--no-budget-plan",
        action="store_true",
        help="keep the device's default plan (the plan before budget-aware planning), only stop on time",
    )
    parser.add_argument("--amp", default="", help="medseg train --amp (e.g. off); default: as planned")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    source = SHARED / DATASETS[args.dataset]
    if not source.is_dir():
        print(f"{source} not found: this benchmark needs ../shared/data", file=sys.stderr)
        return 2
    medseg = [sys.executable, "-m", "medseg.apps.cli.app"]
    args.out.mkdir(parents=True, exist_ok=True)
    data = source
    if args.dataset == "jsrt":
        data = args.out / "jsrt-nnunet"
        if not data.exists():
            subprocess.run([*medseg, "convert", str(source), str(data), "--resize-images-to-masks"], check=True)
    run = args.out / "run"
    started = time.perf_counter()
    length = ["--epochs", str(args.epochs)] if args.epochs else ["--time-budget", args.budget]
    length += ["--no-budget-plan"] if args.no_budget_plan else []
    length += ["--amp", args.amp] if args.amp else []
    subprocess.run([*medseg, "train", str(data), "--out", str(run), *length, "--device", "cpu"], check=True)
    wall = time.perf_counter() - started
    print(summarise(run, wall))
    return 0


def summarise(run: Path, wall: float) -> str:
    """Held-out Dice per class and the split of training time, as a markdown snippet."""
    metrics = json.loads((run / "metrics.json").read_text())
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]
    plans = json.loads((run / "plans.json").read_text())
    epochs = len(log)
    train_s = sum(r["seconds"] for r in log)
    data_s = sum(r.get("data_seconds", 0.0) for r in log)
    step_s = sum(r.get("step_seconds", 0.0) for r in log)
    other_s = train_s - data_s - step_s
    iterations = epochs * plans["train"]["iterations_per_epoch"]
    lines = [
        f"held-out cases: {len(metrics['cases'])}; epochs: {epochs} ({iterations} iterations of batch "
        f"{plans['train']['batch_size']}, patch {plans['patch_size']})",
        "",
        "| class | Dice mean ± std | median | HD95 mm | NSD |",
        "|---|---|---|---|---|",
    ]
    for k, name in metrics["classes"].items():
        s = metrics["summary"][k]
        lines.append(
            f"| {name} | {s['dice']['mean']:.4f} ± {s['dice']['std']:.4f} | {s['dice']['median']:.4f} | "
            f"{s['hd95']['mean']:.2f} | {s['nsd']['mean']:.4f} |"
        )
    lines += [
        "",
        f"training time {train_s:.0f} s: data loading {data_s:.0f} s ({100 * data_s / train_s:.1f} %), "
        f"forward/backward/step {step_s:.0f} s ({100 * step_s / train_s:.1f} %), validation and checkpoints "
        f"{other_s:.0f} s ({100 * other_s / train_s:.1f} %); whole command {wall:.0f} s "
        f"(planning, preprocessing, final held-out prediction and evaluation included)",
    ]
    budget = plans.get("budget")
    if budget:  # budget-aware planning: the candidates timed on this CPU and the one chosen
        lines += [
            "",
            f"budget plan ({budget['rule']}, {budget['device']}, measured in {budget['measured_seconds']:.0f} s):",
            "",
            "| candidate | patch | spacing | batch | coverage | s/step | steps in budget | chosen |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for i, c in enumerate(budget["configurations"]):
            spacing = "×".join(f"{v:.3g}" for v in c["target_spacing"])
            lines.append(
                f"| {c['name']} | {c['patch_size']} | {spacing} | {c['batch_size']} | {c['coverage']:.2f} | "
                f"{c['step_seconds']:.3f} | {c['steps']} | {'yes' if i == budget['chosen'] else ''} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
