"""``medseg gui`` where PySide6 cannot be imported: one line saying how to install it, exit 2."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from medseg.apps.cli.app import main


def test_gui_command_without_pyside6_says_how_to_install(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    for name in ("PySide6", "PySide6.QtWidgets", "medseg.apps.gui.app", "medseg.apps.gui.window"):
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setattr("sys.argv", ["medseg", "gui"])
    with pytest.raises(SystemExit) as exit_info:
        main()
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "pip install 'medseg[gui]'" in err and len(err.strip().splitlines()) == 1
