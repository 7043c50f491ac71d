"""Plain command-line values taken without pydantic are exactly what typer's own coercion gives."""
from __future__ import annotations

import pytest
from typer._coercion import build_runtime_param, resolve_type_descriptor
from typer.models import OptionInfo

from bot.cli_params import _TYPERS, PlainRuntimeParam, plain_value

INFOS = [OptionInfo(), OptionInfo(min=1, max=10_000), OptionInfo(min=1), OptionInfo(max=5)]
VALUES = ["", "x", "ab\udcff", " 7", "0", "1", "50", "007", "10000", "10001", "999999999", "1e3", "-1", "+5", "1_0", "٣",
          0, 1, 50, 10_001, -3, True, False, None, 2.0]


@pytest.mark.parametrize("annotation", [str, int, bool])
def test_plain_values_are_typers_values(annotation):
    taken = 0
    for info in INFOS:
        typers = build_runtime_param(resolve_type_descriptor(annotation, info))
        for value in VALUES:
            plain = plain_value(annotation, info, value)
            if plain is _TYPERS:
                continue
            taken += 1
            expected = typers._coerce_value(value, param=None, ctx=None)
            assert (plain, type(plain)) == (expected, type(expected)), (annotation, info.min, info.max, value)
    assert taken >= 8  # the fast path is used, not only declined


def test_anything_else_gets_typers_coercion_and_its_errors():
    info = OptionInfo(min=1, max=10)
    param = PlainRuntimeParam(parameter_info=info, annotation=int,
                              descriptor=resolve_type_descriptor(int, info))
    assert param._coerce_value(" 7", param=None, ctx=None) == 7  # typer's: pydantic strips the spaces
    with pytest.raises(Exception, match="less than or equal to 10"):
        param._coerce_value("11", param=None, ctx=None)
