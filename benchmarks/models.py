"""Every registered network side by side: size, cost and held-out Dice after the same CPU budget.

Not a test: figures go into docs/models.md by hand, with the command that made them.

    python benchmarks/models.py cost                       # params, FLOPs, CPU time, peak memory
    python benchmarks/models.py dice isbi --budget 90s     # 2D: ISBI 2012 EM membranes, 30 slices
    python benchmarks/models.py dice hippocampus --budget 90s
    python benchmarks/models.py fusion --budget 3m         # early / intermediate / late on lgg-flair-mri

``cost``: for each network planned for a CPU on a 256² slice (1 channel in, 2 classes out) and a 96³
patch (1 mm isotropic), the parameters, the multiply-accumulate count of one eval forward pass
(``torch.utils.flop_counter``, FLOPs = 2 x MACs, convolutions and matmuls), the median eval time of a forward
pass on this CPU (ratio to the planned ``unet`` measured in the same run) and the resident memory the forward
pass adds (``ru_maxrss`` after minus before, each network in a fresh process). ``dice``: ``medseg train
--model NAME --time-budget B`` on fold 0 of 5, then the held-out mean Dice over classes and cases.
``fusion``: the same with ``--fusion MODE`` on the 3-sequence brain MRI set.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
DATASETS = {"isbi": "isbi2012-em", "hippocampus": "msd-hippocampus", "lgg": "lgg-flair-mri"}
SHAPES = {2: (256, 256), 3: (96, 96, 96)}


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def measure_one(name: str, ndim: int, repeats: int) -> dict[str, float]:
    """Plan, build and time network ``name`` in this process (called in a fresh subprocess per network)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from medseg.models.configs import ModelInputs
    from medseg.models.registry import MODELS, build_model

    shape = SHAPES[ndim]
    config = MODELS[name].plan(ModelInputs(ndim, 1, 2, shape, (1.0,) * ndim, gpu=False))
    net = build_model(config, generator=torch.Generator().manual_seed(0)).eval()
    x = torch.randn(1, 1, *shape)
    params = sum(p.numel() for p in net.parameters())
    with torch.no_grad():
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        net(x)  # the first pass sets the high-water mark (and warms up)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        counter = FlopCounterMode(display=False)
        with counter:
            net(x)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            net(x)
            times.append(time.perf_counter() - start)
    return {
        "params": params,
        "gflops": counter.get_total_flops() / 1e9,
        "seconds": statistics.median(times),
        "forward_mib": max(after - before, 0) / 1024,
    }


def cost(repeats: int) -> str:
    from medseg.models.registry import MODELS

    rows = {}
    for ndim in (2, 3):
        for name in sorted(MODELS):
            if ndim not in MODELS[name].ndims:
                continue
            code = f"import json, benchmarks.models as b; print(json.dumps(b.measure_one({name!r}, {ndim}, {repeats})))"
            out = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parents[1]
            )
            if out.returncode != 0:
                rows[(name, ndim)] = {"error": out.stderr.strip().splitlines()[-1]}
            else:
                rows[(name, ndim)] = json.loads(out.stdout.strip().splitlines()[-1])
            print(name, ndim, rows[(name, ndim)], file=sys.stderr, flush=True)
    lines = [
        f"CPU: {cpu_model()}, {len(__import__('os').sched_getaffinity(0))} cores; eval forward, batch 1, median of "
        f"{repeats}",
        "",
        "| network | params (M) | GFLOPs 256² | CPU s 256² | × unet | MiB 256² "
        "| GFLOPs 96³ | CPU s 96³ | × unet | MiB 96³ |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    base = {ndim: rows.get(("unet", ndim), {}).get("seconds") for ndim in (2, 3)}
    for name in sorted(MODELS):
        cells, params = [], ""
        for ndim in (2, 3):
            r = rows.get((name, ndim))
            if r is None:
                cells += ["—"] * 4
            elif "error" in r:
                cells += [f"failed: {r['error'][:60]}", "", "", ""]
            else:
                params = params or f"{r['params'] / 1e6:.2f}"
                ratio = f"{r['seconds'] / base[ndim]:.2f}" if base[ndim] else "—"
                cells += [f"{r['gflops']:.1f}", f"{r['seconds']:.3f}", ratio, f"{r['forward_mib']:.0f}"]
        lines.append(f"| {name} | {params} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _train(data: Path, run: Path, budget: str, flags: list[str]) -> dict[str, float]:
    medseg = [sys.executable, "-m", "medseg.apps.cli.app"]
    started = time.perf_counter()
    # 10 iterations per epoch: the budget is checked after each epoch, so a slow network overshoots by < 10 steps
    # --no-budget-plan: every network on the device's default plan, so the rows compare networks, not plans
    argv = [*medseg, "train", str(data), "--out", str(run), "--time-budget", budget, "--iterations", "10"]
    argv += ["--no-budget-plan"]
    argv += ["--device", "cpu", *flags]
    done = subprocess.run(argv, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    metrics = json.loads((run / "metrics.json").read_text())
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines() if line.strip()]
    plans = json.loads((run / "plans.json").read_text())
    per_class = {metrics["classes"][k]: metrics["summary"][k]["dice"]["mean"] for k in metrics["classes"]}
    return {
        "dice": statistics.mean(per_class.values()),
        "per_class": per_class,
        "iterations": len(log) * plans["train"]["iterations_per_epoch"],
        "cases": len(metrics["cases"]),
        "wall": wall,
    }


def dice(dataset: str, budget: str, out: Path, names: list[str]) -> str:
    from medseg.models.registry import MODELS

    data = SHARED / DATASETS[dataset]
    ndim = 3 if dataset == "hippocampus" else 2
    lines = [
        f"CPU: {cpu_model()}; `medseg train {DATASETS[dataset]} --model NAME --time-budget {budget} "
        "--iterations 10`, fold 0 of 5",
        "",
        "| network | held-out mean Dice | per class | iterations | cases | wall s |",
        "|---|---|---|---|---|---|",
    ]
    for name in names or sorted(MODELS):
        if ndim not in MODELS[name].ndims:
            continue
        r = _train(data, out / f"{dataset}-{name}", budget, ["--model", name])
        print(name, r, file=sys.stderr, flush=True)
        if "error" in r:
            lines.append(f"| {name} | failed: {r['error']} | | | | |")
            continue
        classes = ", ".join(f"{k} {v:.3f}" for k, v in r["per_class"].items())
        lines.append(f"| {name} | {r['dice']:.4f} | {classes} | {r['iterations']} | {r['cases']} | {r['wall']:.0f} |")
    return "\n".join(lines)


def fusion(budget: str, out: Path, model: str) -> str:
    data = SHARED / DATASETS["lgg"]
    lines = [
        f"CPU: {cpu_model()}; `medseg train lgg-flair-mri --model {model} --fusion MODE --time-budget {budget} "
        "--iterations 10`, "
        "fold 0 of 5 (per-patient 3D Dice)",
        "",
        "| fusion | held-out mean Dice (per patient) | iterations | patients | wall s |",
        "|---|---|---|---|---|",
    ]
    for mode in ("early", "intermediate", "late"):
        r = _train(data, out / f"lgg-{mode}", budget, ["--model", model, "--fusion", mode])
        print(mode, r, file=sys.stderr, flush=True)
        if "error" in r:
            lines.append(f"| {mode} | failed: {r['error']} | | | |")
        else:
            lines.append(f"| {mode} | {r['dice']:.4f} | {r['iterations']} | {r['cases']} | {r['wall']:.0f} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["cost", "dice", "fusion"])
    parser.add_argument("dataset", nargs="?", choices=["isbi", "hippocampus"], help="for dice")
    parser.add_argument("--budget", default="90s", help="training time budget per network (dice, fusion)")
    parser.add_argument("--repeats", type=int, default=5, help="timed forward passes per network (cost)")
    parser.add_argument("--models", default="", help="comma-separated subset of networks (dice)")
    parser.add_argument("--fusion-model", default="unet", help="network for the fusion comparison")
    parser.add_argument("--out", type=Path, default=Path("/tmp/medseg-bench-models"), help="folder for the runs")
    args = parser.parse_args()
    if args.what == "cost":
        print(cost(args.repeats))
        return 0
    if args.what == "dice" and args.dataset is None:
        parser.error("dice needs a dataset: isbi or hippocampus")
    needed = SHARED / DATASETS[args.dataset if args.what == "dice" else "lgg"]
    if not needed.is_dir():
        print(f"{needed} not found: this benchmark needs ../shared/data", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    if args.what == "dice":
        print(dice(args.dataset, args.budget, args.out, [n for n in args.models.split(",") if n]))
    else:
        print(fusion(args.budget, args.out, args.fusion_model))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
