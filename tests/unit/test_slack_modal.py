"""The launch modal: its values become one launch line, its errors land on the right field."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from bot.slack.ids import ELEMENT, BlockId
from bot.slack.modals import (
    ERROR_LIMIT,
    launch_modal,
    launch_text_from_modal,
    loading_modal,
    modal_errors,
)
from core.errors import CapacityError, NameInUse, SpecError
from core.grammar import parse_launch
from core.spec import LaunchConfig

GOLDEN = Path(__file__).parent / "golden"
T0 = datetime(2026, 11, 22, 9, 0, tzinfo=timezone.utc)
NOW = T0 + timedelta(hours=3)
OWNER = "U012ABCDEF"
CONFIG = LaunchConfig()


# ------------------------------------------------------------------------------- modal


def state_values(**fields: str | None) -> dict[str, Any]:
    """view.state.values as Slack sends it; GPU_TYPE and PROJECT given as selects."""
    values: dict[str, Any] = {}
    for key, value in fields.items():
        block = BlockId[key.upper()].value
        if key in ("gpu_type", "project"):
            option = None if value is None else {"text": {"type": "plain_text", "text": value},
                                                 "value": value}
            values[block] = {ELEMENT: {"type": "static_select", "selected_option": option}}
        else:
            values[block] = {ELEMENT: {"type": "plain_text_input", "value": value}}
    return values


def test_modal_values_round_trip_through_the_launch_grammar():
    values = state_values(
        name="lr-sweep", image="pytorch:2.3", gpus="2", gpu_type="a100", nodes="3", max_runtime="12h",
        max_restarts="5", project="research",
        env="WANDB_MODE=offline\n\nMSG=hello world & more\n",
        sweep="lr=0.1,0.01\nseed=1,2",
        command="python train.py --msg \"it's {lr}\" --tag 'a b' \\\n  --seed {seed}",
    )
    line = launch_text_from_modal(values)
    request = parse_launch(line, LaunchConfig())
    typed = parse_launch(
        "lr-sweep --image pytorch:2.3 --gpus 2 --nodes 3 --gpu-type a100 --max-runtime 12h "
        "--max-restarts 5 --project research --env WANDB_MODE=offline "
        "--env 'MSG=hello world & more' --sweep lr=0.1,0.01 --sweep seed=1,2 "
        "-- python train.py --msg \"it's {lr}\" --tag 'a b' --seed {seed}", LaunchConfig())
    assert request == typed
    assert request.group == "lr-sweep" and len(request.specs) == 4
    first = request.specs[0]
    assert first.command == ("python", "train.py", "--msg", "it's 0.1", "--tag", "a b",
                             "--seed", "1")
    assert first.env == {"WANDB_MODE": "offline", "MSG": "hello world & more", "LR": "0.1",
                         "SEED": "1"}
    assert (first.gpus, first.nodes, first.gpu_type, first.project) == (2, 3, "a100", "research")
    assert first.max_runtime == timedelta(hours=12) and first.max_restarts == 5


def test_modal_with_only_required_fields_uses_the_defaults():
    values = state_values(name="tiny", command="python -c 'print(1)'", image=None, gpus="0",
                          gpu_type="h100", env=None, sweep=None, project=None)
    line = launch_text_from_modal(values)
    assert line == "tiny --gpus 0 -- python -c 'print(1)'"
    spec = parse_launch(line, CONFIG).specs[0]
    assert spec.gpus == 0 and spec.gpu_type is None and spec.project == "default"
    assert spec.command == ("python", "-c", "print(1)")


def test_modal_experiment_named_launch_keeps_its_name():
    line = launch_text_from_modal(state_values(name="launch", command="true"))
    assert parse_launch(line, CONFIG).specs[0].name == "launch"


def test_modal_value_starting_with_a_dash_reaches_the_value_check():
    line = launch_text_from_modal(state_values(name="x", gpus="-1", command="true"))
    with pytest.raises(SpecError) as caught:
        parse_launch(line, CONFIG)
    assert modal_errors(caught.value) == {BlockId.GPUS.value: str(caught.value)}
    assert "needs a value" not in str(caught.value)


@pytest.mark.parametrize(
    ("fields", "block"),
    [
        (dict(name="", command="true"), BlockId.NAME),
        (dict(name="Bad_Name", command="true"), BlockId.NAME),
        (dict(name="x", command=""), BlockId.COMMAND),
        (dict(name="x", command="echo 'unclosed"), BlockId.COMMAND),
        (dict(name="x", gpus="lots", command="true"), BlockId.GPUS),
        (dict(name="x", nodes="0", command="true"), BlockId.NODES),
        (dict(name="x", gpu_type="tpu", command="true"), BlockId.GPU_TYPE),
        (dict(name="x", max_runtime="forever", command="true"), BlockId.MAX_RUNTIME),
        (dict(name="x", max_restarts="-3", command="true"), BlockId.MAX_RESTARTS),
        (dict(name="x", env="NOEQUALS", command="true"), BlockId.ENV),
        (dict(name="x", sweep="lr", command="true"), BlockId.SWEEP),
        (dict(name="x", image="bad image!", command="true"), BlockId.IMAGE),
    ],
)
def test_modal_errors_land_on_the_field_that_caused_them(fields, block):
    with pytest.raises(SpecError) as caught:
        parse_launch(launch_text_from_modal(state_values(**fields)), CONFIG)
    errors = modal_errors(caught.value)
    assert list(errors) == [block.value]
    assert errors[block.value] == str(caught.value)  # whole: its end says what to do instead


@pytest.mark.parametrize(
    ("option", "block"),
    [("name", BlockId.NAME), ("--image", BlockId.IMAGE), ("--", BlockId.COMMAND),
     ("command", BlockId.COMMAND), (None, BlockId.COMMAND), ("--gpus", BlockId.GPUS),
     ("--gpu-type", BlockId.GPU_TYPE), ("--hours", BlockId.MAX_RUNTIME),
     ("--max-runtime", BlockId.MAX_RUNTIME), ("--max-restarts", BlockId.MAX_RESTARTS),
     ("--project", BlockId.PROJECT), ("--env", BlockId.ENV), ("--sweep", BlockId.SWEEP),
     ("--cpu", BlockId.COMMAND), ("--bogus", BlockId.COMMAND)],
)
def test_modal_errors_map_each_option(option, block):
    errors = modal_errors(SpecError("bad &amp; " * 400, option=option))
    assert list(errors) == [block.value]
    assert len(errors[block.value]) <= ERROR_LIMIT and errors[block.value].endswith("…")


def test_modal_errors_keep_a_long_message_whole_with_its_advice_at_the_end():
    with pytest.raises(SpecError) as caught:
        parse_launch(launch_text_from_modal(state_values(name="n" * 40, sweep="lr=1,2", command="true")), CONFIG)
    [message] = modal_errors(caught.value).values()
    assert len(message) > 150 and message == str(caught.value) and message.endswith("a name of at most 38")


def test_name_in_use_and_capacity_errors_land_on_name_and_gpus():
    assert list(modal_errors(NameInUse("an experiment named 'x' is already RUNNING"))) == [BlockId.NAME.value]
    assert list(modal_errors(CapacityError("x: needs 8 GPUs but this machine has 2"))) == [BlockId.GPUS.value]


def test_launch_modal_without_catalog_or_projects_uses_text_inputs():
    view = launch_modal([], [], LaunchConfig(), "")
    data = view.to_dict()
    by_id = {b["block_id"]: b for b in data["blocks"]}
    assert by_id[BlockId.PROJECT]["element"]["type"] == "plain_text_input"
    assert by_id[BlockId.PROJECT]["element"]["initial_value"] == "default"
    assert by_id[BlockId.GPU_TYPE]["element"]["type"] == "plain_text_input"
    assert "private_metadata" not in data
    assert len(data["title"]["text"]) <= 24


def test_launch_modal_caps_the_gpu_catalog_at_100_options():
    types = [f"gpu{i}" for i in range(150)]
    data = launch_modal(types, [], LaunchConfig(), "").to_dict()
    assert len(data["blocks"][4]["element"]["options"]) == 100


def test_loading_modal():
    data = loading_modal().to_dict()
    assert data["type"] == "modal" and data["blocks"][0]["text"]["text"] == "Loading…"
    assert "submit" not in data
