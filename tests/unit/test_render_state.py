"""`expbot status NAME`'s state line: the reason beside the state only when it says something more."""
from __future__ import annotations

from rich.console import Console

from bot.render import status_tables
from tests.unit.test_slack_blocks import NOW, failed, queued, succeeded


def _state_line(exp) -> str:
    console = Console(width=200, record=True)
    console.print(status_tables(exp, [], NOW)[0])
    return next(line for line in console.export_text().splitlines() if "│ state" in line)


def test_a_reason_that_repeats_the_state_is_not_shown_twice():
    line = _state_line(succeeded("done"))
    assert "SUCCEEDED" in line and "succeeded" not in line


def test_a_reason_that_explains_the_state_stays():
    assert "waiting" in _state_line(queued("waits")).lower().split("queued", 1)[1]
    line = _state_line(failed("broke"))
    assert "FAILED - " in line, line
