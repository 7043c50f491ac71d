"""Command-line values without pydantic where a plain value needs no checking: `ls` and `status` in a blink.

typer (0.29) coerces every parameter through a pydantic TypeAdapter, even a plain string or a flag left
unset: loading pydantic for that is about 100 ms of CPU on every read command. A parameter here takes
the obvious value itself (a string as typed, a whole number written plainly inside its bounds) and
hands anything else to typer's own coercion, so that every error message and edge case is typer's.
tests/unit/test_cli_params.py compares the two on many values.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from typer import core as typer_core
from typer._coercion import RuntimeParam, TypeDescriptor, build_runtime_param

_PLAIN_INT = re.compile(r"0|[1-9][0-9]{0,8}")
_TYPERS = object()  # "typer must decide"


def plain_value(annotation: Any, info: Any, value: Any) -> Any:
    """The value typer's coercion gives for a plain one (a str, a bool, an int in range), else _TYPERS."""
    if annotation is str and type(value) is str:
        return value
    if annotation is bool and type(value) is bool:
        return value
    if annotation is int and not info.clamp and info.parser is None:
        number = value if type(value) is int else int(value) if type(value) is str and _PLAIN_INT.fullmatch(value) \
            else None
        if number is not None and (info.min is None or number >= info.min) and (info.max is None or number <= info.max):
            return number
    return _TYPERS


@dataclass(frozen=True)
class PlainRuntimeParam(RuntimeParam):
    """Plain values taken as they are; typer's own coercion (built only then) for everything else."""

    descriptor: TypeDescriptor | None = None

    def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
        plain = plain_value(self.annotation, self.parameter_info, value)
        if plain is not _TYPERS:
            return plain
        return build_runtime_param(self.descriptor)._coerce_value(value, param=param, ctx=ctx)


def _runtime_param(self: Any) -> RuntimeParam:
    if self._runtime_param is None:
        descriptor = self.type_descriptor
        if descriptor.file_annotation is None and descriptor.annotation in (str, bool, int):
            self._runtime_param = PlainRuntimeParam(parameter_info=descriptor.parameter_info,
                                                    annotation=descriptor.annotation, descriptor=descriptor)
        else:
            self._runtime_param = build_runtime_param(descriptor)
    return self._runtime_param


typer_core._TyperParameter.get_runtime_param = _runtime_param  # type: ignore[method-assign]
