"""Checkpoints: untrusted pickles are refused without running them, damaged files are named, writes are atomic."""

from __future__ import annotations

import logging
import os
import pickle
import struct
import zipfile
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


# ------------------------------------------------------------------------------------------- checksum


def _big_state() -> dict:
    """A checkpoint whose middle is tensor data: a 1 MB weight between two small ones, plus what an optimiser
    keeps (a 0-d step tensor, int keys, a bfloat16 buffer that numpy cannot represent)."""
    weights = torch.arange(262_144, dtype=torch.float32).reshape(512, 512) / 1000
    return {
        "model": {"a": torch.ones(3), "w": weights, "z": torch.zeros(2, dtype=torch.bfloat16)},
        "optimizer": {"state": {0: {"step": torch.tensor(7.0)}}, "param_groups": [{"lr": 0.01, "betas": (0.9, 0.99)}]},
        "epoch": 3,
        "best_dice": 0.25,
    }


def _tensor_data(path: Path) -> tuple[int, int]:
    """(offset, size) in the file of the largest tensor's raw bytes (torch stores zip entries uncompressed)."""
    with zipfile.ZipFile(path) as archive:
        info = max((i for i in archive.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    with open(path, "rb") as handle:
        handle.seek(info.header_offset)
        header = handle.read(30)  # the local file header; its name and extra field follow
    name_length, extra_length = struct.unpack("<HH", header[26:30])
    return info.header_offset + 30 + name_length + extra_length, info.file_size


def _zero_middle_4k(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle - 2048 : middle + 2048] = bytes(4096)
    path.write_bytes(bytes(data))


def _flip_one_byte(path: Path) -> None:
    offset, size = _tensor_data(path)
    data = bytearray(path.read_bytes())
    data[offset + size // 3] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [_zero_middle_4k, _flip_one_byte], ids=["4 KiB zeroed mid-file", "one bit flipped"])
def test_damaged_weights_are_refused_by_the_checksum(tmp_path: Path, damage) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "checkpoint_best.pt"
    save_checkpoint(_big_state(), path)
    offset, size = _tensor_data(path)
    assert offset < path.stat().st_size // 2 - 2048 and path.stat().st_size // 2 + 2048 < offset + size
    damage(path)
    torch.load(path, weights_only=True)  # torch itself notices nothing: its zip entries carry no checksum
    with pytest.raises(DataError, match="checksum mismatch: the file is damaged") as info:
        load_checkpoint(path)
    assert info.value.path == path and str(info.value).startswith(f"{path}: ")


def test_an_intact_checkpoint_passes_the_checksum(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint_last.pt"
    state = _big_state()
    save_checkpoint(state, path)
    assert "sha256" not in state  # the caller's dict is not changed
    loaded = load_checkpoint(path)
    assert "sha256" not in loaded  # verified and removed: the content exactly as saved
    assert sorted(loaded) == sorted(state)
    assert torch.equal(loaded["model"]["w"], state["model"]["w"]) and loaded["model"]["z"].dtype == torch.bfloat16
    assert loaded["optimizer"]["param_groups"][0]["betas"] == (0.9, 0.99)
    save_checkpoint(loaded, tmp_path / "again.pt")  # a loaded checkpoint saved again verifies again
    assert torch.equal(load_checkpoint(tmp_path / "again.pt")["model"]["w"], state["model"]["w"])


def test_the_checksum_is_deterministic_and_covers_every_entry(tmp_path: Path) -> None:
    """The same content gives the same checksum (bit-identical runs stay bit-identical); any change of a
    value, a dtype, a shape or a key gives another."""
    first, second = tmp_path / "a.pt", tmp_path / "b.pt"
    save_checkpoint(_big_state(), first)
    save_checkpoint(_big_state(), second)
    digest = torch.load(first, weights_only=True)["sha256"]
    assert digest == torch.load(second, weights_only=True)["sha256"] and len(digest) == 64
    changes = {
        "value": lambda s: s["model"]["w"].__setitem__((0, 1), 5.0),
        "dtype": lambda s: s["model"].__setitem__("a", torch.ones(3, dtype=torch.float64)),
        "shape": lambda s: s["model"].__setitem__("a", torch.ones(1, 3)),
        "key": lambda s: s["model"].__setitem__("b", s["model"].pop("a")),
        "number": lambda s: s.__setitem__("epoch", 4),
        "step": lambda s: s["optimizer"]["state"][0]["step"].add_(1),
    }
    for name, change in changes.items():
        state = _big_state()
        change(state)
        save_checkpoint(state, second)
        assert torch.load(second, weights_only=True)["sha256"] != digest, name


def test_a_checkpoint_without_checksum_loads_with_a_warning(tmp_path: Path, caplog) -> None:  # type: ignore[no-untyped-def]
    """Checkpoints of medseg 0.1.0 have no checksum: they still load, and the log says they are unverified."""
    path = tmp_path / "checkpoint_best.pt"
    torch.save(_state(2.0), path)
    with caplog.at_level(logging.WARNING, logger="medseg.run"):
        loaded = load_checkpoint(path)
    assert torch.equal(loaded["model"]["w"], torch.full((3, 2), 2.0))
    assert any("no checksum" in r.getMessage() and str(path) in r.getMessage() for r in caplog.records)


def test_a_checksum_that_is_not_a_digest_is_a_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint_best.pt"
    torch.save({**_state(), "sha256": torch.zeros(2)}, path)
    with pytest.raises(DataError, match="checksum mismatch"):
        load_checkpoint(path)


def test_a_checkpoint_that_is_a_symlink_loop_is_named(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint_best.pt"
    path.symlink_to(path.name)
    with pytest.raises(DataError, match="is a symbolic link loop") as info:
        load_checkpoint(path)
    assert info.value.path == path


def test_partial_checkpoints_of_a_killed_run_are_removed_and_nothing_else(tmp_path: Path) -> None:
    from medseg.run import RunDir

    run = RunDir(tmp_path)
    save_checkpoint({"model": {"w": torch.zeros(1)}}, run.checkpoint("last"))
    partial = tmp_path / ".checkpoint_last.tmp-0d2c054a.pt"  # what a SIGKILL during save_checkpoint leaves
    partial.write_bytes(b"half a zip")
    other = tmp_path / ".report.tmp-12345678.html"  # not ours to judge
    other.write_text("x")
    assert run.remove_partial_checkpoints() == [partial]
    assert not partial.exists() and other.exists() and run.checkpoint("last").is_file()
