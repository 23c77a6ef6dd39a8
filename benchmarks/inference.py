"""Inference speed, agreement and memory: eager torch vs the bundle runtime (ONNX float32, ONNX INT8), one run.

    nice -n 10 .venv/bin/python benchmarks/inference.py --hippo-run /tmp/hippo-export2 --out /tmp/bench-inference

1. Hippocampus (3D MRI, a run trained on ../shared/data/msd-hippocampus): per held-out case, seconds of
   eager ``Predictor.predict_array`` and of the runtime's ``predict_array`` with the float32 and the INT8
   bundle (reading excluded, all as planned: TTA, post-processing); Dice against the reference labels and
   against the eager labels.
2. A 512² 2D slice (synthetic, a short 2D run trained here): seconds per slice, the same three, with the
   planned TTA and without it; then half- and quarter-width U-Nets (8→128, 4→64 features) with one 512²
   window (``--slices-only``: just these).
3. Peak RSS of ``medseg-runtime predict`` on a synthetic 512×512×300 int16 CT (a tiny 3D run's bundle, TTA
   off: the memory is the volume's, not the network's), from ``getrusage(RUSAGE_CHILDREN)``.

Prints a Markdown section (with the CPU model) to append to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from medseg.datasets.dataset import load_dataset
from medseg.export.bundle import ExportOptions, export_bundle
from medseg.export.runtime import load_bundle_predictor
from medseg.inference.ensemble import load_predictor
from medseg.inference.predictor import PredictOptions
from medseg.io.geometry import Geometry
from medseg.io.images import read_channels, read_label, write_image
from medseg.run import RunDir
from medseg.synthetic import SyntheticSpec, write_dataset
from medseg.workflow import TrainOptions, plan_run, train_run


def cpu_model() -> str:
    out = subprocess.run(["lscpu"], capture_output=True, encoding="utf-8", check=False).stdout
    return next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "?")


def dice(a: np.ndarray, b: np.ndarray, classes: list[int]) -> float:
    """Mean Dice over ``classes`` (a class absent from both counts as 1)."""
    scores = []
    for k in classes:
        total = int((a == k).sum() + (b == k).sum())
        scores.append(1.0 if total == 0 else 2 * int(((a == k) & (b == k)).sum()) / total)
    return float(np.mean(scores))


def timed(fn: object, *args: object, repeats: int = 3) -> tuple[float, np.ndarray]:
    """The fastest of ``repeats`` calls (the CPU is shared: the minimum is the least disturbed) and the result."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        out = fn(*args)  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return min(times), out


def compare(
    run: Path, cases: list[tuple[np.ndarray, Geometry, np.ndarray | None]], out: Path, tta: bool | None
) -> dict:
    """Seconds per case and Dice (vs reference, vs eager) of eager, ONNX float32 and ONNX INT8."""
    suffix = "" if tta is None else ("-tta" if tta else "-notta")
    f32, i8 = out / f"{run.name}{suffix}-f32.medseg", out / f"{run.name}{suffix}-int8.medseg"
    export_bundle(run, f32, ExportOptions(tta=tta, parity_cases=1))
    export_bundle(run, i8, ExportOptions(precision="int8", tta=tta, parity_cases=1, min_label_agreement=0.0))
    eager = load_predictor(run, "cpu", PredictOptions(tta=tta))
    methods = {"eager": eager.predict_array, "onnx-f32": None, "onnx-int8": None}
    runtimes = {"onnx-f32": load_bundle_predictor(f32), "onnx-int8": load_bundle_predictor(i8)}
    classes = eager.plans.data.labels.foreground
    rows: dict[str, dict[str, list[float]]] = {m: {"s": [], "ref": [], "eager": []} for m in methods}
    for image, geometry, reference in cases:
        eager.predict_array(image, geometry)  # warm-up (first call allocates)
        t, want = timed(eager.predict_array, image, geometry)
        rows["eager"]["s"].append(t)
        for name, predictor in runtimes.items():
            predictor.predict_array(image, geometry.spacing)
            t, got = timed(predictor.predict_array, image, geometry.spacing)
            rows[name]["s"].append(t)
            rows[name]["eager"].append(dice(got, want, classes))
            if reference is not None:
                rows[name]["ref"].append(dice(got, reference, classes))
        if reference is not None:
            rows["eager"]["ref"].append(dice(want, reference, classes))
        rows["eager"]["eager"].append(1.0)
    return {m: {k: (statistics.mean(v) if v else float("nan")) for k, v in r.items()} for m, r in rows.items()}


NARROWER = {"half": (8, 16, 32, 64, 128, 128, 128, 128), "quarter": (4, 8, 16, 32, 64, 64, 64, 64)}


def hippocampus_cases(run: Path, count: int) -> list[tuple[np.ndarray, Geometry, np.ndarray | None]]:
    record = RunDir(run).load_record()
    spec = load_dataset(record.root).labels
    cases = [c for c in load_dataset(record.root).cases if c.case_id in set(record.validation)][:count]
    out = []
    for case in cases:
        image, geometry = read_channels(list(case.channels))
        label, _ = read_label(case.label[0])
        out.append((image, geometry, spec.to_indices(label, case.label[0])))
    return out


def short_run(
    root: Path,
    spec: SyntheticSpec,
    options: TrainOptions,
    features: tuple[int, ...] | None,
    patch: tuple[int, ...] | None = None,
    name: str = "run",
) -> Path:
    """A synthetic dataset and a short run on it (optionally narrowed to ``features``, with another ``patch``)."""
    data = root / "data"
    if not data.exists():
        write_dataset(data, spec, n_cases=6, seed=0, layout="msd", n_test=0)
    if features is not None or patch is not None:
        from medseg.config.plans import save_plans

        plans = plan_run(data, root / name, options)
        if features is not None:
            plans = replace(plans, model=replace(plans.model, features=features[: len(plans.model.features)]))
        if patch is not None:
            plans = replace(plans, patch_size=patch)
        save_plans(plans, root / name / "plans.json")
    return train_run(data, root / name, options)


def peak_rss_ct(out: Path, shape: tuple[int, ...]) -> tuple[float, float, str]:
    """Peak RSS (GB) and seconds of ``medseg-runtime predict`` on a synthetic CT of ``shape`` (int16)."""
    options = TrainOptions(epochs=1, iterations_per_epoch=2, val_every=1, device="cpu", folds=3)
    run = short_run(out / "ct", SyntheticSpec(ndim=3, shape=(32, 96, 96)), options, (4, 8, 16, 32, 32, 32))
    bundle = out / "ct.medseg"
    export_bundle(run, bundle, ExportOptions(tta=False, parity_cases=1))
    spacing = load_bundle_predictor(bundle).bundle.manifest.configurations[0].target_spacing
    rng = np.random.default_rng(0)
    volume = rng.integers(-1000, 1500, size=(1, *shape), dtype=np.int16)
    scan = out / "ct512" / "ct.nii"  # uncompressed: writing 150 MB of gzip would dominate
    write_image(scan, volume, Geometry.identity(3, tuple(s * 0.6 for s in spacing)))  # finer than planned: resampled
    del volume
    # a fresh process whose only child is the runtime: this one's children (data loader workers) would count too
    cmd = [sys.executable, "-m", "medseg_runtime", "predict", str(bundle), str(scan), str(out / "ct-out")]
    probe = (
        "import resource, subprocess, sys, time; started = time.perf_counter(); "
        "subprocess.run(sys.argv[1:], check=True, capture_output=True); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, time.perf_counter() - started)"
    )
    result = subprocess.run([sys.executable, "-c", probe, *cmd], check=True, capture_output=True, encoding="utf-8")
    kilobytes, seconds = result.stdout.split()
    return int(kilobytes) / 1e6, float(seconds), str(tuple(round(s * 0.6, 4) for s in spacing))


def table(title: str, results: dict, unit: str = "s / case") -> str:
    lines = [f"| {title} | {unit} | speed-up vs eager | Dice vs reference | Dice vs eager |", "|---|---|---|---|---|"]
    base = results["eager"]["s"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['s']:.3f} | {base / r['s']:.2f}× | {r['ref']:.4f} | {r['eager']:.4f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hippo-run", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("/tmp/bench-inference"))
    parser.add_argument("--cases", type=int, default=10)
    parser.add_argument("--slices", type=int, default=4)
    parser.add_argument("--slice-size", type=int, default=512)
    parser.add_argument("--ct-shape", type=int, nargs=3, default=(300, 512, 512))
    parser.add_argument("--slices-only", action="store_true", help="only the narrower 512² networks (part 2)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"CPU: {cpu_model()}; torch threads {torch.get_num_threads()}", flush=True)
    if not args.slices_only:
        hippo = compare(args.hippo_run, hippocampus_cases(args.hippo_run, args.cases), args.out, None)
        print(table(f"hippocampus, {args.cases} held-out cases", hippo), flush=True)
    options = TrainOptions(epochs=2, iterations_per_epoch=4, val_every=2, device="cpu", folds=3)
    size = (args.slice_size, args.slice_size)
    run2d = short_run(args.out / "2d", SyntheticSpec(ndim=2, shape=size), options, None)
    slices = []
    for case in load_dataset(args.out / "2d" / "data").cases[: args.slices]:
        image, geometry = read_channels(list(case.channels))
        label, _ = read_label(case.label[0])
        slices.append((image, geometry, label.astype(np.uint8)))
    for tta in (None, False) if not args.slices_only else ():
        result = compare(run2d, slices, args.out, tta)
        title = f"{args.slice_size}² slice, TTA {'as planned' if tta is None else 'off'}"
        print(table(title, result, "s / slice"), flush=True)
    # the same data with half- and quarter-width U-Nets whose one window covers the whole slice
    whole = (args.slice_size, args.slice_size)
    for name, features in NARROWER.items():
        narrow = short_run(args.out / "2d", SyntheticSpec(ndim=2, shape=size), options, features, whole, name)
        result = compare(narrow, slices, args.out, False)
        title = f"{args.slice_size}² slice, U-Net {features[0]}→{features[-1]}, one {whole[0]}² window"
        print(table(title, result, "s / slice"), flush=True)
    if args.slices_only:
        return
    rss, seconds, spacing = peak_rss_ct(args.out, tuple(args.ct_shape))
    shape = tuple(args.ct_shape)
    floats = np.prod(shape) * 4 * 4 / 1e9
    print(f"peak RSS predicting a {shape} int16 CT (spacing {spacing}, resampled): {rss:.2f} GB in {seconds:.0f} s; "
          f"volume × 4 classes × float32 would be {floats:.2f} GB")  # fmt: skip


if __name__ == "__main__":
    main()
