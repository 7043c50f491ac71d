"""Block Kit builders: golden payloads, escaping, Slack's limits, and the launch modal round trip.

Regenerate the golden files with `UPDATE_GOLDEN=1 pytest tests/unit/test_slack_blocks.py`,
then read the diff before committing it.
"""
from __future__ import annotations

import json
import os
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from bot.slack import blocks as thread_kit
from bot.slack import pieces, replies
from bot.slack.home import app_home
from bot.slack.ids import ELEMENT, ActionId, BlockId, CallbackId
from bot.slack.modals import launch_modal
from core import events as ev
from core.grammar import USAGE
from core.model import Experiment, FailureClass, State
from core.spec import ExperimentSpec, LaunchConfig

GOLDEN = Path(__file__).parent / "golden"
T0 = datetime(2026, 11, 22, 9, 0, tzinfo=timezone.utc)
NOW = T0 + timedelta(hours=3)
OWNER = "U012ABCDEF"
CONFIG = LaunchConfig()


# ------------------------------------------------------------------------------ fixtures


def spec(name: str, **fields: Any) -> ExperimentSpec:
    base: dict[str, Any] = dict(
        command=("python", "train.py", "--lr", "3e-4"), image="pytorch:2.3", gpus=4,
        gpu_type="a100", project="research", max_runtime=timedelta(hours=24),
    )
    return ExperimentSpec(name=name, **{**base, **fields})


def new(name: str = "train-bert", owner: str = OWNER, **fields: Any) -> Experiment:
    return Experiment(id=f"id-{name}", spec=spec(name, **fields), owner=owner, created_at=T0)


def running(name: str = "train-bert", **fields: Any) -> Experiment:
    """Attempt 1 preempted after 1h, attempt 2 resumed from a checkpoint and running."""
    exp = new(name, **fields)
    exp.start_attempt(None, T0, hourly_rate=10.0)  # 1 h at 10/h before the preemption
    exp.mark_running(T0 + timedelta(minutes=1))
    exp.end_attempt(137, "pod preempted (DisruptionTarget)", FailureClass.INFRA,
                    T0 + timedelta(hours=1, minutes=1))
    exp.schedule_restart(T0 + timedelta(hours=1, minutes=2), "infra", "pod preempted",
                         "/ckpt/step-1000.pt", T0 + timedelta(hours=1, minutes=1))
    exp.start_attempt("/ckpt/step-1000.pt", T0 + timedelta(hours=1, minutes=2), hourly_rate=10.0)
    exp.mark_running(T0 + timedelta(hours=1, minutes=3))
    return exp


def succeeded(name: str = "train-bert", **fields: Any) -> Experiment:
    exp = running(name, **fields)
    exp.end_attempt(0, "exited 0", FailureClass.NONE, T0 + timedelta(hours=2))
    exp.succeed(T0 + timedelta(hours=2))
    return exp


def failed(name: str = "train-bert", **fields: Any) -> Experiment:
    exp = new(name, **fields)
    exp.start_attempt(None, T0)
    exp.mark_running(T0 + timedelta(minutes=1))
    exp.end_attempt(1, "exit code 1: loss <nan> & diverged", FailureClass.USER,
                    T0 + timedelta(minutes=31))
    exp.fail("gave up: user restarts exhausted (loss <nan> & diverged)",
             T0 + timedelta(minutes=31), exit_code=1)
    return exp


def queued(name: str = "train-bert", **fields: Any) -> Experiment:
    exp = new(name, **fields)
    exp.queue("waiting for 4 a100 GPUs", T0)
    return exp


def sweep(size: int, group: str = "lr-sweep") -> list[Experiment]:
    makers = [running, queued, succeeded, failed]
    members = []
    for index in range(1, size + 1):
        exp = makers[index % 4](f"{group}-{index}", group=group, gpus=1)
        members.append(exp)
    return members


def dicts(blocks: list) -> list[dict[str, Any]]:
    return [b.to_dict() for b in blocks]


def check_golden(name: str, data: Any) -> None:
    """Compare `data` with tests/unit/golden/NAME.json (rewritten when UPDATE_GOLDEN=1)."""
    path = GOLDEN / f"{name}.json"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(json.dumps(data, indent=2, ensure_ascii=False, sort_keys=True) + "\n")
    assert path.exists(), f"missing {path}: run with UPDATE_GOLDEN=1 and review it"
    assert json.loads(json.dumps(data)) == json.loads(path.read_text())


def message(name: str, built: tuple[str, list]) -> dict[str, Any]:
    text, blocks = built
    data = {"text": text, "blocks": dicts(blocks)}
    check_golden(name, data)
    assert_within_limits(data["blocks"], max_blocks=50)
    return data


# ----------------------------------------------------------------------- limit checking


def walk(node: Any, pointer: str = ""):
    """Every (pointer, dict) in a payload."""
    if isinstance(node, dict):
        yield pointer, node
        for key, value in node.items():
            yield from walk(value, f"{pointer}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, f"{pointer}/{index}")


def assert_within_limits(blocks: list[dict[str, Any]], max_blocks: int) -> None:
    assert 0 < len(blocks) <= max_blocks
    for pointer, node in walk(blocks):
        if node.get("type") == "section":
            assert len((node.get("text") or {}).get("text", "")) <= 3000, pointer
            assert len(node.get("fields", [])) <= 10, pointer
            assert all(len(f["text"]) <= 2000 for f in node.get("fields", [])), pointer
        if node.get("type") == "header":
            assert len(node["text"]["text"]) <= 150, pointer
        if node.get("type") == "button":
            assert len(node["text"]["text"]) <= 75 and len(node.get("value", "")) <= 2000
        if "options" in node:
            assert len(node["options"]) <= 100, pointer
            for option in node["options"]:
                assert len(option["text"]["text"]) <= 75 and len(option["value"]) <= 150
        if node.get("type") == "actions":
            assert len(node["elements"]) <= 25
        for key in ("action_id", "block_id"):
            assert len(node.get(key, "")) <= 255, pointer


def buttons(blocks: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {n["action_id"]: n for _, n in walk(blocks) if n.get("type") == "button"}


def all_text(blocks: list[dict[str, Any]], mrkdwn_only: bool = False) -> str:
    return "\n".join(
        n["text"] for _, n in walk(blocks)
        if isinstance(n.get("text"), str) and not (mrkdwn_only and n.get("type") == "plain_text")
    )


# --------------------------------------------------------------------------------- golden


def test_golden_parent_running():
    data = message("parent_running", thread_kit.experiment_parent([running()], NOW))
    stop = buttons(data["blocks"])[ActionId.STOP]
    assert stop["style"] == "danger" and stop["value"] == "train-bert"
    assert stop["confirm"]["title"]["text"] == "Stop train-bert?"
    assert buttons(data["blocks"])[ActionId.LOGS]["value"] == "train-bert"


def test_golden_parent_queued_cpu_only():
    data = message("parent_queued", thread_kit.experiment_parent([queued(gpus=0, gpu_type=None)], NOW))
    assert "CPU only" in all_text(data["blocks"])
    assert ActionId.LOGS not in buttons(data["blocks"])  # no attempts, no logs


def test_golden_parent_failed():
    message("parent_failed", thread_kit.experiment_parent([failed()], NOW))


def test_golden_parent_sweep_group():
    data = message("parent_sweep", thread_kit.experiment_parent(sweep(5), NOW))
    select = next(n for _, n in walk(data["blocks"]) if n.get("type") == "static_select")
    assert select["action_id"] == ActionId.STOP_MEMBER
    assert [o["value"] for o in select["options"]] == ["lr-sweep-1", "lr-sweep-4", "lr-sweep-5"]


def test_golden_thread_replies():
    exp = failed()
    replies = [dicts(thread_kit.thread_reply(event, OWNER)[1]) for event in exp.events]
    check_golden("thread_replies", replies)


def test_golden_help_and_unknown_subcommand():
    message("help", replies.help_blocks(USAGE))
    text, blocks = replies.help_blocks(USAGE, unknown="lst", suggestion="list")
    assert text == "Unknown subcommand `lst`. Did you mean `list`?"
    assert blocks[0].to_dict()["text"]["text"] == text


def test_golden_list():
    experiments = [running(), queued("eval-bert"), failed("train-gpt"), succeeded("tiny")]
    message("list", replies.experiment_list(experiments, NOW, "Your experiments"))


def test_golden_status():
    exp = running()
    message("status", replies.experiment_status(exp, list(exp.events), NOW))


def test_golden_stop_confirmation_and_logs():
    message("stop_confirmation", replies.stop_confirmation(running()))
    logs = replies.logs_blocks("train-bert", 2, "step 1 loss 2.31\nstep 2 loss 2.10\n")
    assert logs is not None
    message("logs", logs)


def test_golden_launch_modal():
    config = LaunchConfig(default_gpus=1, projects=("research", "prod"), default_project="research")
    view = launch_modal(list(config.gpu_catalog), list(config.projects), config, "C123|1700.1")
    data = view.to_dict()
    check_golden("launch_modal", data)
    assert data["callback_id"] == CallbackId.LAUNCH_MODAL
    assert [b["block_id"] for b in data["blocks"]] == [b.value for b in BlockId]
    assert all(b["element"]["action_id"] == ELEMENT for b in data["blocks"])
    gpu_type = data["blocks"][4]["element"]
    assert gpu_type["initial_option"]["value"] == "h100"
    assert data["blocks"][3]["element"]["initial_value"] == "1"
    assert data["blocks"][5]["element"]["initial_value"] == "1"  # one node unless asked
    assert data["blocks"][6]["element"]["initial_value"] == "24h"


def test_golden_app_home():
    view = app_home([running(), queued("eval-bert")], [failed("train-gpt"), succeeded("tiny")],
                    NOW, spend_text="$1,234.50 of $5,000 (24%)")
    data = view.to_dict()
    check_golden("app_home", data)
    assert data["type"] == "home"
    assert_within_limits(data["blocks"], max_blocks=100)


# ------------------------------------------------------------------------------ escaping


def test_mrkdwn_escaping_of_names_reasons_commands_and_logs():
    exp = failed("a<b>&c", command=("echo", "<script>&", "x>y"))
    built_all = (
        thread_kit.experiment_parent([exp], NOW), replies.experiment_status(exp, exp.events, NOW),
        replies.experiment_list([exp], NOW, "A & B"), replies.stop_confirmation(running("a<b>&c")),
    )
    for built in built_all:
        text = all_text(dicts(built[1]), mrkdwn_only=True) + built[0]
        assert "a&lt;b&gt;&amp;c" in text
        plain = re.sub(r"<(@U[A-Z0-9]+|!date\^[^>]*)>", "", text)  # our own control sequences
        assert "<" not in plain and ">" not in plain
        assert not re.search(r"&(?!amp;|lt;|gt;)", plain)
    status = all_text(dicts(replies.experiment_status(exp, [], NOW)[1]))
    assert "&lt;script&gt;&amp;" in status and "x&gt;y" in status
    logs = replies.logs_blocks("n", 1, "a < b && c > d\n```\n")
    assert logs is not None
    code = logs[1][1].to_dict()["text"]["text"]
    assert "a &lt; b &amp;&amp; c &gt; d" in code and code.count("```") == 2


def test_state_labels_cover_every_state():
    assert pieces.state_label(State.RUNNING) == ":arrow_forward: Running"
    assert pieces.state_label(State.PENDING_APPROVAL) == ":lock: Pending approval"
    assert all(pieces.state_label(s) for s in State)


# -------------------------------------------------------------------------------- limits


def test_sweep_of_120_members_stays_within_message_limits():
    members = sweep(120)
    text, blocks = thread_kit.experiment_parent(members, NOW)
    data = dicts(blocks)
    assert_within_limits(data, max_blocks=50)
    assert "…and 80 more" in all_text(data)
    select = next(n for _, n in walk(data) if n.get("type") == "static_select")
    assert len(select["options"]) == 60  # the active half of the members


def test_sweep_with_long_names_packs_sections_under_3000_chars():
    members = [running(f"{'x' * 38}-{i}", group="g" * 40) for i in range(150)]
    data = dicts(thread_kit.experiment_parent(members, NOW)[1])
    assert_within_limits(data, max_blocks=50)
    assert len([b for b in data if b["type"] == "section"]) >= 3
    select = next(n for _, n in walk(data) if n.get("type") == "static_select")
    assert len(select["options"]) == 100


def test_list_of_500_experiments_stays_within_50_blocks():
    experiments = [running(f"exp-{i}") for i in range(500)]
    text, blocks = replies.experiment_list(experiments, NOW, "All experiments")
    data = dicts(blocks)
    assert_within_limits(data, max_blocks=50)
    assert "…and 455 more" in all_text(data)


def test_empty_list_says_so():
    text, blocks = replies.experiment_list([], NOW, "Your experiments")
    assert "No experiments" in text and len(blocks) == 2


def test_app_home_with_200_experiments_stays_within_100_blocks():
    active = [running(f"run-{i}") for i in range(200)]
    recent = [succeeded(f"done-{i}") for i in range(200)]
    data = app_home(active, recent, NOW, spend_text="$10").to_dict()
    assert_within_limits(data["blocks"], max_blocks=100)
    assert "…and 150 more" in all_text(data["blocks"])
    assert "…and 165 more" in all_text(data["blocks"])


def test_status_with_many_attempts_and_long_reasons_fits():
    exp = new()
    for number in range(60):
        exp.start_attempt(f"/ckpt/{'deep/' * 20}step-{number}.pt", T0)
        exp.mark_running(T0)
        exp.end_attempt(1, "<boom> & " * 100, FailureClass.RETRYABLE_EXIT, T0)
        exp.schedule_restart(T0, "none", "retry <x> " * 50, None, T0)
    data = dicts(replies.experiment_status(exp, exp.events, NOW)[1])
    assert_within_limits(data, max_blocks=50)
    assert "(last 20 of 60)" in all_text(data)


def test_logs_that_do_not_fit_return_none():
    assert replies.logs_blocks("n", 1, "x" * 3000) is None
    assert replies.logs_blocks("n", 1, "&" * 600) is None  # 3000 characters once escaped
    assert replies.logs_blocks("n", 1, "line\n" * 100) is not None
    assert replies.logs_blocks("n", 1, "") is not None


# ------------------------------------------------------------------------ buttons/mentions


@pytest.mark.parametrize("make", [succeeded, failed])
def test_stop_button_hidden_for_terminal_experiments(make):
    exp = make()
    for built in (thread_kit.experiment_parent([exp], NOW), replies.experiment_status(exp, [], NOW)):
        found = buttons(dicts(built[1]))
        assert ActionId.STOP not in found and ActionId.LOGS in found
    text, blocks = replies.stop_confirmation(exp)
    assert "already ended" in text and ActionId.STOP not in buttons(dicts(blocks))
    stopped = running()
    stopped.stop(OWNER, "stopped from Slack", NOW)
    assert ActionId.STOP not in buttons(dicts(thread_kit.experiment_parent([stopped], NOW)[1]))


def test_stop_button_shown_for_active_experiments():
    for exp in (running(), queued()):
        assert ActionId.STOP in buttons(dicts(thread_kit.experiment_parent([exp], NOW)[1]))
    data = app_home([running()], [], NOW).to_dict()
    assert data["blocks"][2]["accessory"]["action_id"] == ActionId.STOP
    text, blocks = replies.stop_confirmation(running())
    assert text.startswith("Stop *train-bert*? It is running attempt 2.")
    assert buttons(dicts(blocks))[ActionId.STOP]["style"] == "danger"


def test_owner_is_mentioned_only_on_terminal_thread_replies():
    exp = running()
    exp.stop("U999", "stopped from Slack", NOW)
    done = succeeded("b")
    for event in exp.events + done.events + failed("c").events:
        text, _ = thread_kit.thread_reply(event, OWNER)
        terminal = isinstance(event, (ev.ExperimentSucceeded, ev.ExperimentFailed,
                                      ev.ExperimentStopped))
        assert (f"<@{OWNER}>" in text) == terminal, event.kind


def test_error_text():
    assert pieces.error_text("no such experiment <x>") == ":warning: no such experiment &lt;x&gt;"
    assert pieces.error_text("boom", "abc123") == ":warning: boom (error id abc123)"
    assert len(pieces.error_text("x" * 5000, "abc123")) <= 3000
