"""How well medseg's failure flag ranks held-out cases, and what temperature scaling does to calibration.

Runs ``medseg trust`` (:func:`medseg.assess_trust`) on a trained run and prints, with the CPU model:

- Spearman / Pearson correlation between the predicted Dice (leave-one-out: each case predicted by a model
  fitted on the other held-out cases) and the true Dice, and the catch rate of the worst 10 % of cases;
- the same correlation for each raw uncertainty score alone (negated: higher uncertainty, lower Dice), so the
  fitted model can be compared with its simplest alternative;
- ECE of the voxel probabilities before and after temperature scaling, and the wall time.

Usage (a run trained beforehand, e.g. by benchmarks/real_data.py)::

    python benchmarks/trust.py /tmp/bench-hippocampus/run --label hippocampus
    python benchmarks/trust.py --prepare-kvasir /tmp/kvasir192        # Kvasir-SEG, longer side 192 px, masks 0/1
    medseg train /tmp/kvasir192 --out /tmp/kvasir192-run --time-budget 8m
    python benchmarks/trust.py /tmp/kvasir192-run --label "kvasir (192 px)"

Kvasir's photographs (up to 1920×1072) are reduced so that a 2D run, its 176 held-out images and 8 sliding-window
passes per image fit a CPU budget; the masks are thresholded at 128 (they are JPEG) and resized nearest-neighbour.
"""

from __future__ import annotations

import argparse
import logging
import platform
import subprocess
import time
from pathlib import Path

import numpy as np
from scipy import stats

import medseg
from medseg.evaluation import failure as medseg_failure


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, subprocess.CalledProcessError, StopIteration):
        return platform.processor() or "unknown CPU"


SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def prepare_kvasir(out: Path, longer_side: int = 192) -> Path:
    """images/ + masks/ (PNG) of ../shared/data/kvasir-seg, the longer side reduced to ``longer_side``."""
    from PIL import Image

    source = SHARED / "kvasir-seg"
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    for image_path in sorted((source / "images").glob("*.jpg")):
        image = Image.open(image_path).convert("RGB")
        scale = longer_side / max(image.size)
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image.resize(size, Image.Resampling.BILINEAR).save(out / "images" / f"{image_path.stem}.png")
        mask = np.asarray(Image.open(source / "masks" / image_path.name).convert("L")) >= 128
        small = Image.fromarray(mask.astype(np.uint8)).resize(size, Image.Resampling.NEAREST)
        small.save(out / "masks" / f"{image_path.stem}.png")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, nargs="?", help="a trained run or cross-validation folder")
    parser.add_argument("--prepare-kvasir", type=Path, help="write the reduced Kvasir-SEG folder here and stop")
    parser.add_argument("--label", default="", help="name of the dataset in the printed table")
    parser.add_argument("--no-tta", action="store_true", help="one sample per network (no mirroring)")
    args = parser.parse_args()
    if args.prepare_kvasir:
        print(f"wrote {prepare_kvasir(args.prepare_kvasir)}")
        return 0
    if args.run is None:
        parser.error("give a run folder (or --prepare-kvasir OUT)")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    options = medseg.TrustOptions(medseg.UncertaintyOptions(tta=not args.no_tta))
    started = time.perf_counter()
    record = medseg.assess_trust(args.run, options)
    wall = time.perf_counter() - started
    rows = record["cases"]
    true = np.array([r["dice"] for r in rows])
    quality, calibration = record["quality"], record["calibration"]
    print(f"CPU: {cpu_model()}; {len(rows)} held-out cases; {wall:.0f} s for `medseg trust` (two passes)")
    print(f"held-out Dice: mean {true.mean():.3f}, min {true.min():.3f}, max {true.max():.3f}")
    print("| data | cases | Spearman | Pearson | worst 10 % caught | flagged | ECE before | ECE after | T |")
    print("|---|---|---|---|---|---|---|---|---|")
    flagged = sum(bool(r["flagged"]) for r in rows)
    print(
        f"| {args.label or args.run.name} | {len(rows)} | {quality['spearman']:.3f} | {quality['pearson']:.3f} | "
        f"{quality['catch_rate'] * quality['n_worst']:.0f} of {quality['n_worst']:.0f} | {flagged} | "
        f"{calibration['before']['ece']:.4f} | {calibration['after']['ece']:.4f} | {record['temperature']:.2f} |"
    )
    scores = [r["scores"] for r in rows]
    alone = [
        medseg_failure.fit_failure_model(
            scores[:i] + scores[i + 1 :], list(true[:i]) + list(true[i + 1 :]), features=("entropy",)
        ).predict(scores[i])
        for i in range(len(rows))
    ]
    q = medseg_failure.ranking_quality(alone, true)
    print(
        f"the same model on entropy alone, leave-one-out: Spearman {q['spearman']:.3f}, Pearson {q['pearson']:.3f}, "
        f"worst caught {q['catch_rate'] * q['n_worst']:.0f} of {q['n_worst']:.0f}"
    )
    print("single scores (negated) vs true Dice, Spearman:")
    for name in ("entropy", "mutual_information", "disagreement_ratio", "uncertain_fraction", "low_confidence"):
        values = -np.array([r["scores"][name] for r in rows])
        rho = stats.spearmanr(values, true).statistic if np.ptp(values) > 0 else float("nan")
        print(f"  {name}: {rho:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
