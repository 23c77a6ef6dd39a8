"""The public API: ``medseg.__all__`` lists it, importing it is light, and the README's example runs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np

import medseg

README = Path(__file__).resolve().parents[1] / "README.md"


def test_all_names_resolve_and_nothing_else_is_exported() -> None:
    for name in medseg.__all__:
        assert getattr(medseg, name) is not None, name
    assert {"Predictor", "train", "plan", "evaluate", "load_dataset", "check_dataset", "Callbacks"} <= set(
        medseg.__all__
    )


def test_importing_medseg_loads_no_heavy_library() -> None:
    code = "import sys, medseg; print(sorted(m for m in ('torch', 'numpy', 'SimpleITK', 'scipy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, encoding="utf-8", check=True).stdout
    assert out.strip() == "[]"


def _readme_example() -> str:
    """The fenced ``python`` block under the README's 'Library' heading."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## Library") :]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "README has no python example under '## Library'"
    return match.group(1)


def test_readme_example_runs(tmp_path: Path) -> None:
    """Runs the README example as written, on a tiny synthetic dataset; its names are bound here."""
    code = _readme_example()
    assert len(code.strip().splitlines()) <= 12, "the README promises a short example"
    medseg.write_dataset(tmp_path / "data", medseg.SyntheticSpec(ndim=2, shape=(64, 64)), n_cases=5, seed=0)
    namespace = {"dataset": tmp_path / "data", "run": tmp_path / "run"}
    exec(compile(code, str(README), "exec"), namespace)
    assert namespace["report"].ok
    assert (tmp_path / "run" / "checkpoint_best.pt").is_file()
    labels = namespace["labels"]
    assert labels.shape == (64, 64) and set(np.unique(labels)) <= {0, 1, 2, 3}
    summary = namespace["metrics"]["summary"]
    assert set(summary) == {"1", "2", "3"} and all(0 <= s["dice"]["mean"] <= 1 for s in summary.values())
