"""Train on a real dataset from ../shared/data under a CPU time budget and report held-out Dice and where
the time went. Not a test: figures go into docs/benchmarks.md by hand, with the command that made them.

    python benchmarks/real_data.py hippocampus --budget 30m --out /tmp/bench-hippocampus
    python benchmarks/real_data.py jsrt --budget 15m --out /tmp/bench-jsrt
    python benchmarks/real_data.py hippocampus --epochs 100 --out /tmp/bench-hippocampus   # fixed work
    python benchmarks/real_data.py jsrt --budget 15m --no-budget-plan --out /tmp/bench-jsrt-old   # the old plan
    python benchmarks/real_data.py drive --budget 15m --out /tmp/bench-drive   # also: official test-set F1

hippocampus: MSD Task04 (200 cases here), fold 0 of 5 held out (40 cases), 3D, labels anterior/posterior.
jsrt: 40 chest X-rays; images (2048²) are block-averaged to the masks' 1024² grid by ``medseg convert
--resize-images-to-masks``; 5 overlapping binary structures; fold 0 of 5 held out (8 cases).
isbi: 30 EM sections 512², label 255 = cell interior, 0 = membrane; fold 0 of 5 held out (6 sections).
kvasir: 880 colonoscopy photographs with JPEG masks, binarised by ``medseg convert --mask-threshold 128``;
fold 0 of 5 held out (176 images).
lgg: 20 brain MRI patients (3 sequences, FLAIR abnormality), fold 0 of 5 held out (4 patients).
drive: the 20 official training images train (fold 0 of 5, 4 images, validates); the run then predicts the 20
official test images, and the vessel F1 (= Dice) inside the field-of-view masks against the 1st observer is
printed too: the figure the literature reports.
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
DATASETS = {
    "hippocampus": "msd-hippocampus",
    "jsrt": "jsrt-scr-cxr",
    "isbi": "isbi2012-em",
    "lgg": "lgg-flair-mri",
    "kvasir": "kvasir-seg",
    "drive": "drive-retina",
}


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
    data = prepare(args.dataset, source, args.out, medseg)
    run = args.out / "run"
    started = time.perf_counter()
    length = ["--epochs", str(args.epochs)] if args.epochs else ["--time-budget", args.budget]
    length += ["--no-budget-plan"] if args.no_budget_plan else []
    length += ["--amp", args.amp] if args.amp else []
    subprocess.run([*medseg, "train", str(data), "--out", str(run), *length, "--device", "cpu"], check=True)
    wall = time.perf_counter() - started
    print(summarise(run, wall))
    if args.dataset == "drive":
        print(drive_test_f1(source, run, args.out, medseg))
    if args.dataset == "isbi":
        print(isbi_membrane_scores(source, run))
    return 0


def isbi_membrane_scores(source: Path, run: Path) -> str:
    """ISBI's foreground class is the cell interior (255); the literature scores the membrane (0): its Dice and
    the pixel error on the held-out sections, from the run's held-out predictions."""
    import numpy as np

    from medseg.evaluation.metrics import dice
    from medseg.io.images import read_label

    scores, errors = [], []
    for predicted_path in sorted((run / "validation").glob("*.png")):
        predicted = read_label(predicted_path)[0] == 0
        reference = read_label(source / "labels" / predicted_path.name)[0] == 0
        scores.append(dice(predicted, reference))
        errors.append(float(np.mean(predicted != reference)))
    return (
        f"ISBI held-out sections ({len(scores)}): membrane Dice {np.mean(scores):.4f} ± {np.std(scores):.4f}, "
        f"pixel error {np.mean(errors):.4f}"
    )


def prepare(dataset: str, source: Path, out: Path, medseg: list[str]) -> Path:
    """The folder to train on: the shared dataset itself, or a converted / re-linked copy of it in ``out``."""
    convert = {"jsrt": ["--resize-images-to-masks"], "kvasir": ["--mask-threshold", "128"]}
    if dataset in convert:
        data = out / f"{dataset}-nnunet"
        if not data.exists():
            subprocess.run([*medseg, "convert", str(source), str(data), *convert[dataset]], check=True)
        return data
    if dataset == "drive":  # images/NN.tif + masks/NN.gif, linked to the official training files
        data = out / "drive-train"
        for image in sorted((source / "training" / "images").glob("*_training.tif")):
            number = image.name.split("_")[0]
            _link(data / "images" / f"{number}.tif", image)
            _link(data / "masks" / f"{number}.gif", source / "training" / "1st_manual" / f"{number}_manual1.gif")
        return data
    return source


def _link(link: Path, target: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.exists():
        link.symlink_to(target.resolve())


def drive_test_f1(source: Path, run: Path, out: Path, medseg: list[str]) -> str:
    """Predict the 20 official DRIVE test images and score vessels inside the field of view (1st observer)."""
    import numpy as np

    from medseg.evaluation.metrics import dice
    from medseg.io.images import read_label

    predictions = out / "drive-test-predictions"
    started = time.perf_counter()
    subprocess.run([*medseg, "predict", str(run), str(source / "test" / "images"), str(predictions)], check=True)
    seconds = time.perf_counter() - started
    scores = []
    for image in sorted((source / "test" / "images").glob("*_test.tif")):
        number = image.name.split("_")[0]
        predicted = read_label(predictions / image.name)[0] > 0
        reference = read_label(source / "test" / "1st_manual" / f"{number}_manual1.gif")[0] > 0
        fov = read_label(source / "test" / "mask" / f"{number}_test_mask.gif")[0] > 0
        scores.append(dice(predicted[fov], reference[fov]))
    return (
        f"DRIVE official test set ({len(scores)} images, 1st observer, inside the FOV): vessel F1 "
        f"{np.mean(scores):.4f} ± {np.std(scores):.4f} (median {np.median(scores):.4f}); predicted in {seconds:.0f} s"
    )


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
        f"| class | Dice mean ± std | median | HD95 {metrics.get('spacing_unit', 'mm')} | NSD |",
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
            "| candidate | patch | spacing | batch | width | coverage | s/step | steps in budget | chosen |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for i, c in enumerate(budget["configurations"]):
            spacing = "×".join(f"{v:.3g}" for v in c["target_spacing"])
            lines.append(
                f"| {c['name']} | {c['patch_size']} | {spacing} | {c['batch_size']} | ×{c.get('width_factor', 1):g} | "
                f"{c['coverage']:.2f} | "
                f"{c['step_seconds']:.3f} | {c['steps']} | {'yes' if i == budget['chosen'] else ''} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
