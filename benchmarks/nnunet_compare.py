"""medseg's bundle runtime against nnU-Net's own predictor (`nnUNetv2_predict`) on the same held-out hippocampus
cases, each with a model trained on the same 160 cases, nnU-Net for at least the CPU time medseg's took. Not a
test: figures go into docs/benchmarks.md by hand, with the command that made them.

    # nnU-Net in a throw-away environment (never a dependency of medseg):
    python3 -m venv /tmp/nnunet-venv && /tmp/nnunet-venv/bin/pip install torch==2.13.0 nnunetv2
    /tmp/nnunet-venv/bin/pip uninstall -y torchvision          # does not load beside this torch wheel
    python benchmarks/fewer_labels.py prepare --out /tmp/fewer                  # full160 + test40
    python benchmarks/fewer_labels.py run full160 --out /tmp/fewer --steps 200   # medseg's model
    medseg export /tmp/fewer/runs/full160 --out /tmp/hippocampus.medseg
    python benchmarks/nnunet_compare.py --nnunet-venv /tmp/nnunet-venv --data /tmp/fewer \\
        --bundle /tmp/hippocampus.medseg --budget-cpu-s 600 --out /tmp/nnunet-compare

nnU-Net is used as its users would: `nnUNetv2_plan_and_preprocess -c 3d_fullres` (its own plans: network,
patch, batch), trained on fold "all" (every one of the 160 cases, no validation split: it then only saves
the final checkpoint) by a trainer that stops once ``--budget-cpu-s`` CPU seconds are spent (nnU-Net's own
trainer, with epochs of 50 iterations and the epoch count cut when the time is spent; CPU time, not wall
time, so the neighbours' load on a shared machine does not shorten it; written into the
throw-away environment's nnunetv2 package, where nnU-Net looks for trainers; torchvision uninstalled
there: PyPI's build does not load beside this torch wheel, and nnU-Net's plain U-Net does not need it),
then `nnUNetv2_predict`
with its defaults (mirroring TTA on, step 0.5) on the 40 test scans, on the CPU. medseg: `medseg-runtime
predict BUNDLE` (ONNX, as exported) on the same 40 scans. Both are timed as whole commands (process start,
reading, writing included) and per case; Dice from `medseg evaluate` against the same labels.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

TRAINER = '''
import time

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


class nnUNetTrainer_medsegBudget(nnUNetTrainer):
    """nnU-Net's trainer, 50 iterations an epoch, stopped when BUDGET_S CPU seconds of training are spent
    (time.process_time: every thread of this process; augmentation runs in it with nnUNet_n_proc_DA=0)."""

    BUDGET_S = {budget_s}

    def __init__(self, plans, configuration, fold, dataset_json, device=torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_iterations_per_epoch = 50
        self.num_val_iterations_per_epoch = 5
        self.num_epochs = 1000
        self._started = None

    def on_epoch_start(self):
        if self._started is None:
            self._started = time.process_time()
        super().on_epoch_start()

    def on_epoch_end(self):
        super().on_epoch_end()
        if time.process_time() - self._started >= self.BUDGET_S:
            self.num_epochs = self.current_epoch  # run_training's loop checks it each epoch (see below)

    def perform_actual_validation(self, *args, **kwargs):
        """Skipped: fold "all" validates on the training cases (160 predictions, no information here)."""
'''


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def _run(command: list[str], env: dict[str, str] | None = None) -> float:
    print("$", " ".join(command), flush=True)
    start = time.perf_counter()
    subprocess.run(command, check=True, env=env)
    return time.perf_counter() - start


def _install_trainer(venv: Path, budget_s: float) -> None:
    site = next((venv / "lib").glob("python3*/site-packages"))
    # beside nnUNetTrainer.py: nnU-Net finds a trainer by importing the package's modules before its sub-packages,
    # and the primus sub-package imports timm, which needs a torchvision this torch build cannot load
    folder = site / "nnunetv2" / "training" / "nnUNetTrainer"
    (folder / "nnUNetTrainer_medsegBudget.py").write_text(TRAINER.format(budget_s=budget_s))
    # nnU-Net's run_training iterates `for epoch in range(self.current_epoch, self.num_epochs)`: a range fixed at
    # the start. Make the loop re-read num_epochs so the budget can end it (the only change to nnU-Net's code,
    # and only in this throw-away environment).
    trainer = site / "nnunetv2" / "training" / "nnUNetTrainer" / "nnUNetTrainer.py"
    text = trainer.read_text()
    old = "for epoch in range(self.current_epoch, self.num_epochs):"
    if old in text:
        trainer.write_text(
            text.replace(
                old, "epoch = self.current_epoch\n        while epoch < self.num_epochs:  # medseg benchmark patch"
            ).replace(
                "            self.on_epoch_end()\n", "            self.on_epoch_end()\n            epoch += 1\n", 1
            )
        )


def _nnunet_dataset(data: Path, raw: Path, medseg: str) -> Path:
    target = raw / "Dataset004_Hippocampus"
    if not target.exists():
        _run([medseg, "convert", str(data / "full160"), str(target), "--layout", "nnunet", "--name", "Hippocampus"])
    return target


def _dice(metrics: Path) -> dict[str, float]:
    data = json.loads((metrics / "metrics.json").read_text())
    summary = data.get("summary") or data.get("mean") or {}
    return {
        name: float(v["dice"]["mean"] if isinstance(v["dice"], dict) else v["dice"])
        for name, v in summary.items()
        if isinstance(v, dict) and "dice" in v
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nnunet-venv", type=Path, required=True)
    parser.add_argument("--data", type=Path, required=True, help="fewer_labels.py prepare's folder (full160, test40)")
    parser.add_argument("--bundle", type=Path, required=True)
    parser.add_argument(
        "--budget-cpu-s", type=float, required=True, help="CPU seconds nnU-Net may train (all its threads together)"
    )
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--skip-training", action="store_true", help="nnU-Net's model is already trained in --out")
    parser.add_argument("--train-only", action="store_true", help="train nnU-Net, predict later (on an idle CPU)")
    args = parser.parse_args()
    venv_bin = args.nnunet_venv / "bin"
    medseg = str(Path(sys.executable).with_name("medseg"))
    out = args.out.resolve()
    env = {
        **os.environ,
        "nnUNet_raw": str(out / "raw"),
        "nnUNet_preprocessed": str(out / "preprocessed"),
        "nnUNet_results": str(out / "results"),
        "nnUNet_n_proc_DA": "1",
        "PATH": f"{venv_bin}:{os.environ['PATH']}",
    }
    times: dict[str, float] = {}
    if not args.skip_training:
        _nnunet_dataset(args.data, out / "raw", medseg)
        _install_trainer(args.nnunet_venv, args.budget_cpu_s)
        plan = ["nnUNetv2_plan_and_preprocess", "-d", "4", "-c", "3d_fullres", "-np", "2", "--verify_dataset_integrity"]
        if not (out / "preprocessed" / "Dataset004_Hippocampus" / "nnUNetPlans.json").exists():
            times["nnunet_plan_s"] = _run(plan, env)
        train = ["nnUNetv2_train", "4", "3d_fullres", "all", "-tr", "nnUNetTrainer_medsegBudget", "-device", "cpu"]
        # augmentation in the training process, so that its CPU time counts toward the budget
        times["nnunet_train_s"] = _run(train, {**env, "nnUNet_n_proc_DA": "0"})
        (out / "train.json").write_text(json.dumps(times, indent=1))
        if args.train_only:
            return 0
    elif (out / "train.json").exists():
        times = json.loads((out / "train.json").read_text())
    test_images, test_labels = args.data / "test40" / "imagesTr", args.data / "test40" / "labelsTr"
    nn_in = out / "test-nnunet-in"  # nnU-Net wants CASE_0000.nii.gz
    if not nn_in.exists():
        nn_in.mkdir(parents=True)
        for scan in sorted(test_images.glob("*.nii.gz")):
            shutil.copyfile(scan, nn_in / scan.name.replace(".nii.gz", "_0000.nii.gz"))
    results = {}
    for name, command in {
        "nnunet": [
            "nnUNetv2_predict", "-i", str(nn_in), "-o", str(out / "pred-nnunet"), "-d", "4", "-c", "3d_fullres",
            "-f", "all", "-tr", "nnUNetTrainer_medsegBudget", "-chk", "checkpoint_final.pth", "-device", "cpu",
            "-npp", "1", "-nps", "1",
        ],
        "medseg": [
            str(Path(sys.executable).with_name("medseg-runtime")), "predict", str(args.bundle), str(test_images),
            str(out / "pred-medseg"),
        ],
    }.items():  # fmt: skip
        predictions = out / f"pred-{name}"
        if predictions.exists():
            shutil.rmtree(predictions)
        seconds = _run(command, env)
        metrics = out / f"metrics-{name}"
        _run([medseg, "evaluate", str(predictions), str(test_labels), "--out", str(metrics)])
        results[name] = {"seconds": round(seconds, 1), "s_per_case": round(seconds / 40, 3), "dice": _dice(metrics)}
    results["speed_up"] = round(results["nnunet"]["seconds"] / results["medseg"]["seconds"], 2)
    report = {"cpu": cpu_model(), "cores": os.cpu_count(), "budget_cpu_s": args.budget_cpu_s, **times, **results}
    (out / "compare.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
