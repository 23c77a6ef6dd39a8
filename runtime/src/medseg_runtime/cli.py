"""``medseg-runtime predict MODEL.medseg INPUT OUTPUT``: the torch-free command line.

A problem with the bundle or an input is one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from medseg_runtime.errors import BundleError
from medseg_runtime.predictor import BundlePredictor

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="medseg-runtime", description="Predict with a medseg bundle (no torch).")
    commands = parser.add_subparsers(dest="command", required=True)
    predict = commands.add_parser("predict", help="Segment scans; masks keep each input's format and geometry.")
    predict.add_argument("model", type=Path, help="A bundle written by `medseg export` (MODEL.medseg).")
    predict.add_argument("inputs", type=Path, help="A scan (file or DICOM folder) or a folder of scans.")
    predict.add_argument("output", type=Path, help="Folder for the masks (named like the inputs).")
    predict.add_argument(
        "--dicom-seg", action="store_true", help="A DICOM series input gives a DICOM-SEG (needs highdicom)."
    )
    predict.add_argument("--provider", action="append", help="onnxruntime execution provider (default: best present).")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        predictor = BundlePredictor.load(args.model, providers=args.provider)
        written = predictor.predict_files(args.inputs, args.output, dicom_seg=args.dicom_seg)
    except BundleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    print(f"{len(written)} mask(s) written to {args.output}")


if __name__ == "__main__":
    main()
