"""Checkpoints: untrusted pickles are refused without running them, damaged files are named, writes are atomic."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from medseg.errors import DataError
from medseg.run import load_checkpoint, save_checkpoint


def _state(value: float = 1.0) -> dict:
    return {"model": {"w": torch.full((3, 2), value), "b": torch.zeros(2)}, "epoch": 4, "best_dice": 0.5}


class _WritesMarker:
    """Unpickling this calls ``function(*args)``: what a malicious checkpoint does."""

    def __init__(self, function: object, args: tuple) -> None:
        self.function, self.args = function, args

    def __reduce__(self) -> tuple:
        return (self.function, self.args)


def _payloads(marker: Path) -> dict[str, object]:
    return {
        "os.system": _WritesMarker(os.system, (f"echo pwned > '{marker}'",)),
        "builtins.open": _WritesMarker(open, (str(marker), "w")),
    }


@pytest.mark.parametrize("payload", ["os.system", "builtins.open"])
@pytest.mark.parametrize("container", ["torch.save", "plain pickle"])
def test_code_in_a_checkpoint_is_refused_not_run(tmp_path: Path, payload: str, container: str) -> None:
    marker, path = tmp_path / "marker.txt", tmp_path / "evil.pt"
    state = {"model": {"w": torch.ones(2)}, "extra": _payloads(marker)[payload]}
    if container == "torch.save":
        torch.save(state, path)
    else:
        path.write_bytes(pickle.dumps(state, protocol=4))
    with pytest.raises(DataError, match="refused") as info:
        load_checkpoint(path)
    assert info.value.path == path
    assert not marker.exists()


@pytest.mark.parametrize("payload", ["os.system", "builtins.open"])
def test_the_payload_is_live(tmp_path: Path, payload: str) -> None:
    """The refused files above really would run code when loaded unsafely (so refusing them is what matters)."""
    marker, path = tmp_path / "marker.txt", tmp_path / "evil.pt"
    torch.save({"model": {}, "extra": _payloads(marker)[payload]}, path)
    loaded = torch.load(path, weights_only=False)
    if hasattr(loaded["extra"], "close"):
        loaded["extra"].close()  # the file object that builtins.open returned
    assert marker.exists()


def _damage(kind: str, path: Path) -> None:
    if kind == "truncated":
        save_checkpoint(_state(), path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("epoch: 3\nthis is a note, not a checkpoint\n")
    elif kind == "random bytes":
        path.write_bytes(bytes(range(256)) * 8)
    elif kind == "no model entry":
        torch.save({"epoch": 3, "optimizer": {}}, path)
    elif kind == "not a dict":
        torch.save([torch.ones(2)], path)


@pytest.mark.parametrize("kind", ["truncated", "empty", "text", "random bytes", "no model entry", "not a dict"])
def test_damaged_checkpoint_is_a_data_error_naming_the_file(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "checkpoint_last.pt"
    _damage(kind, path)
    with pytest.raises(DataError) as info:
        load_checkpoint(path)
    assert info.value.path == path and str(path) in str(info.value)


def test_missing_checkpoint_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        load_checkpoint(tmp_path / "checkpoint_best.pt")


def test_round_trip_keeps_tensors_and_numbers(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint_last.pt"
    save_checkpoint(_state(2.5), path)
    loaded = load_checkpoint(path)
    assert torch.equal(loaded["model"]["w"], torch.full((3, 2), 2.5)) and loaded["epoch"] == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_last.pt"]


@pytest.mark.parametrize("error", [OSError("disk full"), KeyboardInterrupt()])
def test_failed_save_leaves_the_old_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "checkpoint_last.pt"
    save_checkpoint(_state(1.0), path)
    before = path.read_bytes()
    real_save = torch.save

    def save_half_then_fail(obj: object, handle, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        real_save(obj, handle, *args, **kwargs)
        handle.truncate(handle.tell() // 2)  # some bytes reached the (temporary) file
        raise error

    monkeypatch.setattr(torch, "save", save_half_then_fail)
    with pytest.raises(type(error)):
        save_checkpoint(_state(9.0), path)
    assert path.read_bytes() == before
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.full((3, 2), 1.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_last.pt"]  # the temporary file is gone
