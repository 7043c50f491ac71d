"""Shared helpers for the grammar tests."""
from __future__ import annotations

import pytest

from core.errors import SpecError
from core.grammar import parse_launch
from core.spec import ExperimentSpec, LaunchConfig

CONFIG = LaunchConfig()
ALL_OPTIONS = [
    "--image", "--gpus", "--nodes", "--gpu-type", "--cpu", "--memory", "--hours", "--max-runtime",
    "--max-restarts", "--max-preemptions", "--retry-on-exit-codes", "--env", "--project",
    "--checkpoint-glob", "--stall-timeout", "--give-up-on", "--sweep",
]  # fmt: skip


def one(text: str, config: LaunchConfig = CONFIG) -> ExperimentSpec:
    """Parse a non-sweep launch and return its only spec."""
    request = parse_launch(text, config)
    assert request.group is None
    assert len(request.specs) == 1
    return request.specs[0]


def error(text: str, config: LaunchConfig = CONFIG) -> SpecError:
    """Parse a launch that must fail and return the SpecError."""
    with pytest.raises(SpecError) as caught:
        parse_launch(text, config)
    return caught.value
