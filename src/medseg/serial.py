"""Frozen dataclasses <-> JSON-able dicts, driven by the type hints (no registry, no magic names).

Unknown keys and missing required keys are errors: a plans.json written by a newer or hand-edited version
fails loudly instead of being half-understood. Tuples come back as tuples and ``dict[int, str]`` keys as
ints (JSON has only string keys).

Tagged unions: a field typed as a union of dataclasses (``Plans.model``) is written as the chosen class's
fields, one of which is ``name``; reading picks the class whose ``NAMES`` class variable holds that name.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, TypeVar

from medseg.errors import ConfigError

__all__ = ["from_dict", "to_dict"]

T = TypeVar("T")


def to_dict(obj: Any) -> Any:
    """A JSON-able copy of a dataclass (recursively); dict keys become strings."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (tuple, list)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_dict(v) for k, v in obj.items()}
    return obj


def from_dict(cls: type[T], data: Any, where: str = "") -> T:
    """Build dataclass ``cls`` from ``data``; ``where`` names the position for error messages."""
    return typing.cast(T, _convert(cls, data, where or cls.__name__))


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if dataclasses.is_dataclass(tp):
        return _dataclass(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        if len(non_none) > 1 and all(dataclasses.is_dataclass(a) for a in non_none):
            return _dataclass(_tagged(non_none, value, where), value, where)
        return _convert(non_none[0], value, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(_convert(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True)))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected an object, got {value!r}")
        key_t, val_t = args
        return {_key(key_t, k, where): _convert(val_t, v, f"{where}.{k}") for k, v in value.items()}
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if tp is Any:
        return value
    return _scalar(tp, value, where)


def _tagged(classes: list[Any], value: Any, where: str) -> Any:
    """The dataclass of a tagged union that serves ``value["name"]``."""
    by_name = {name: cls for cls in classes for name in getattr(cls, "NAMES", ())}
    if not isinstance(value, dict) or "name" not in value:
        raise ConfigError(f"{where}: missing key 'name' (one of {sorted(by_name)})")
    if value["name"] not in by_name:
        raise ConfigError(f"{where}.name: {value['name']!r} is not one of {sorted(by_name)}")
    return by_name[value["name"]]


def _key(tp: Any, value: Any, where: str) -> Any:
    """JSON object keys are strings; ``dict[int, ...]`` keys are converted back."""
    if tp is int and isinstance(value, str):
        try:
            return int(value)
        except ValueError as exc:
            raise ConfigError(f"{where}: key {value!r} is not an integer") from exc
    return _scalar(tp, value, where)


def _scalar(tp: Any, value: Any, where: str) -> Any:
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp in (int, str, bool) and not (isinstance(value, tp) and not (tp is int and isinstance(value, bool))):
        raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


def _dataclass(cls: Any, value: Any, where: str) -> Any:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected an object, got {value!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(value) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(fields)}")
    kwargs = {}
    for name, f in fields.items():
        if name in value:
            kwargs[name] = _convert(hints[name], value[name], f"{where}.{name}")
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}: missing key '{name}'")
    return cls(**kwargs)
