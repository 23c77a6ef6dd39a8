"""Synthetic chest-CT-like data for tests, the demo and trying medseg without data of one's own.

:mod:`medseg.synthetic.phantom` draws cases in memory (deterministic by seed);
:mod:`medseg.synthetic.datasets` writes them as a dataset in any layout. Nothing in the library's stages
imports this package (an import-linter contract); the demo and the tests do.
"""

from medseg.synthetic.datasets import overlapping_masks, write_dataset
from medseg.synthetic.phantom import LABEL_NAMES, OVERLAP_NAMES, SyntheticCase, SyntheticSpec, make_case, make_cases

__all__ = [
    "LABEL_NAMES",
    "OVERLAP_NAMES",
    "SyntheticCase",
    "SyntheticSpec",
    "make_case",
    "make_cases",
    "overlapping_masks",
    "write_dataset",
]
