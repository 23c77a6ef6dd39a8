"""`medseg federated`: a simulated federation from the command line; mistakes are one line and exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medseg.apps.cli.app import main
from medseg.federated.options import SiteConfig


def _medseg(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    monkeypatch.setattr("sys.argv", ["medseg", *argv])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return int(exit_info.value.code or 0)


def test_simulate_from_the_command_line(
    tmp_path: Path, sites: list[SiteConfig], tiny_plans: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "fed"
    argv = ["federated", "simulate", str(sites[0].dataset), str(sites[1].dataset), "--out", str(out)]
    code = _medseg([*argv, "--rounds", "1", "--plans", str(tiny_plans), "--device", "cpu"], monkeypatch)
    assert code == 0, capsys.readouterr().err
    assert "round 1: 2 site(s), global Dice" in capsys.readouterr().out
    assert json.loads((out / "federated.json").read_text())["sites"] == ["data0", "data1"]
    assert (out / "sites" / "data0" / "checkpoint_last.pt").is_file()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["simulate", "{d0}", "--out", "{out}"], "error: a federation needs at least 2 site folders, got 1"),
        (
            ["simulate", "{d0}", "{d1}", "--out", "{out}", "--min-sites", "3"],
            "error: --min-sites 3 exceeds the 2 site folders given",
        ),
        (["simulate", "{d0}", "{missing}", "--out", "{out}"], "error: {missing}: "),
        (
            ["server", "--out", "{out}", "--sites", "2"],
            "error: pass --ca-cert, --server-cert and --server-key for TLS, or --insecure on a private network",
        ),
        (
            ["server", "--out", "{out}", "--sites", "2", "--ca-cert", "{d0}"],
            "error: TLS needs all of --ca-cert, --server-cert and --server-key",
        ),
        (
            ["server", "--out", "{out}", "--sites", "2", "--min-sites", "3", "--insecure"],
            "error: --min-sites 3 must be between 1 and the number of sites (2)",
        ),
        (
            ["site", "{d0}", "--server", "127.0.0.1:9", "--name", "a", "--work", "{out}"],
            "error: pass --ca-cert (the CA that signed the server's certificate), or --insecure on a private network",
        ),
        (
            ["site", "{d0}", "--server", "127.0.0.1:9", "--name", "a b", "--work", "{out}", "--insecure"],
            "error: site name 'a b' must be letters, digits, '-' or '_'",
        ),
    ],
)
def test_mistakes_are_one_line_and_exit_2(
    argv: list[str], message: str, sites: list[SiteConfig], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:  # type: ignore[no-untyped-def]
    names = {"d0": sites[0].dataset, "d1": sites[1].dataset, "out": tmp_path / "out", "missing": tmp_path / "missing"}
    assert _medseg(["federated", *(a.format(**names) for a in argv)], monkeypatch) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(message.format(**names)) and "\n" not in err
    assert not (tmp_path / "out").exists()
