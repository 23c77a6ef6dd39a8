"""Help screens: flags show no value placeholder; options that take a value still show their type."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from medseg.apps.cli.app import app

COMMANDS = [
    "check",
    "convert",
    "generate",
    "train",
    "models",
    "plan",
    "preprocess",
    "pretrain",
    "predict",
    "find-best",
    "evaluate",
    "demo",
]


@pytest.mark.parametrize("command", [[], *([c] for c in COMMANDS)])
def test_flags_show_no_placeholder(command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output
    if command in (["train"], ["check"]):
        assert "<path>" in result.output  # a value-taking argument keeps its type
