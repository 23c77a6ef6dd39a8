"""Help screens without a value placeholder on flags.

typer (0.2x) prints a type column for every option, so a flag such as ``--verbose`` or ``--help`` appears as
``--verbose -v <bool>`` and looks as if it took an argument. These command classes blank the type column of
every flag (its metavar), leaving the options that take a value as typer shows them. Used by every command
of ``medseg`` (``app.command(cls=FlagCommand)``) and by the command group itself.
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperCommand, TyperGroup

__all__ = ["FlagCommand", "FlagGroup"]


def _blank_flags(params: list[Any]) -> list[Any]:
    for param in params:
        if getattr(param, "is_flag", False) and getattr(param, "metavar", "") is None:
            param.metavar = ""
    return params


class FlagCommand(TyperCommand):
    def get_params(self, ctx: Any) -> list[Any]:
        return _blank_flags(super().get_params(ctx))


class FlagGroup(TyperGroup):
    def get_params(self, ctx: Any) -> list[Any]:
        return _blank_flags(super().get_params(ctx))
