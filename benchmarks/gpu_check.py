"""CUDA check of the training loop: AMP modes (off / bf16 / fp16 with GradScaler) on a synthetic 3D dataset.

    python benchmarks/gpu_check.py --out /tmp/gpu-check

For each AMP mode: trains the same plan for a few epochs, then reports iterations/s of the training steps,
the validation Dice on the held-out fold and whether the loss stayed finite. Needs a CUDA device; the test
suite never runs it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--iterations", type=int, default=50)
    args = parser.parse_args()

    import torch

    from medseg.synthetic import SyntheticSpec, write_dataset
    from medseg.workflow import TrainOptions, train_run

    if not torch.cuda.is_available():
        print("no CUDA device", file=sys.stderr)
        return 2
    data = write_dataset(args.out / "data", SyntheticSpec(ndim=3, shape=(32, 96, 96)), n_cases=20, seed=0)
    rows = []
    for amp in ("off", "bf16", "fp16"):
        run = args.out / f"run-{amp}"
        started = time.perf_counter()
        options = TrainOptions(
            epochs=args.epochs,
            iterations_per_epoch=args.iterations,
            val_every=args.epochs,
            device="cuda",
            amp=amp,
            folds=5,
        )
        train_run(data, run, options)
        log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
        step_s = sum(r["step_seconds"] for r in log[1:])  # first epoch includes cuDNN autotuning / warm-up
        iters = args.iterations * (len(log) - 1)
        metrics = json.loads((run / "metrics.json").read_text())
        dice = {metrics["classes"][k]: round(v["dice"]["mean"], 4) for k, v in metrics["summary"].items()}
        plans = json.loads((run / "plans.json").read_text())
        rows.append(
            {
                "amp": amp,
                "it_per_s": round(iters / step_s, 2),
                "final_loss": round(log[-1]["train_loss"], 4),
                "val_dice": dice,
                "patch": plans["train"]["patch_size"],
                "batch": plans["train"]["batch_size"],
                "wall_s": round(time.perf_counter() - started, 1),
                "max_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2),
            }
        )
        torch.cuda.reset_peak_memory_stats()
        print(json.dumps(rows[-1]), flush=True)
    print(torch.cuda.get_device_name(), "torch", torch.__version__)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
