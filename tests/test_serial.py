"""medseg.serial: dataclasses to JSON and back, including tagged unions chosen by ``name``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Union

import pytest

from medseg.errors import ConfigError
from medseg.serial import from_dict, to_dict


@dataclass(frozen=True)
class _Small:
    size: int
    name: str = "small"
    NAMES: ClassVar[tuple[str, ...]] = ("small",)


@dataclass(frozen=True)
class _Big:
    depth: tuple[int, ...]
    name: str = "big"
    NAMES: ClassVar[tuple[str, ...]] = ("big", "huge")


@dataclass(frozen=True)
class _Holder:
    model: Union[_Small, _Big]  # noqa: UP007 (the union form plans use)


@pytest.mark.parametrize("model", [_Small(3), _Big((1, 2)), _Big((4,), name="huge")])
def test_tagged_union_round_trip_picks_the_class_by_name(model: object) -> None:
    data = to_dict(_Holder(model))  # type: ignore[arg-type]
    assert data["model"]["name"] == model.name  # type: ignore[attr-defined]
    assert from_dict(_Holder, data) == _Holder(model)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ({"size": 3}, r"_Holder.model: missing key 'name' \(one of \['big', 'huge', 'small'\]\)"),
        ({"size": 3, "name": "tiny"}, r"_Holder.model.name: 'tiny' is not one of \['big', 'huge', 'small'\]"),
        ({"size": 3, "name": "big"}, r"_Holder.model: unknown key\(s\) \['size'\]"),
    ],
)
def test_tagged_union_errors_name_the_key(model: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        from_dict(_Holder, {"model": model})
