"""Block Kit pieces every Slack message shares: state labels, text fields, sections, Stop and Logs."""
from __future__ import annotations

from datetime import datetime

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    MarkdownTextObject,
    SectionBlock,
)

from bot.slack.ids import ActionId
from bot.slack.mrkdwn import SECTION_LIMIT, escape, from_core, limit_text, mention, truncate
from core import events as ev
from core.durations import format_duration
from core.messages import gpus_label, money
from core.model import Experiment, State

Message = tuple[str, list[Block]]

FENCE = "```"

_STATES: dict[State, tuple[str, str]] = {
    State.PENDING_APPROVAL: (":lock:", "Pending approval"),
    State.QUEUED: (":hourglass_flowing_sand:", "Queued"),
    State.STARTING: (":rocket:", "Starting"),
    State.RUNNING: (":arrow_forward:", "Running"),
    State.RESTARTING: (":arrows_counterclockwise:", "Restarting"),
    State.STOPPING: (":double_vertical_bar:", "Stopping"),
    State.SUCCEEDED: (":white_check_mark:", "Succeeded"),
    State.FAILED: (":x:", "Failed"),
    State.STOPPED: (":octagonal_sign:", "Stopped"),
    State.REJECTED: (":no_entry_sign:", "Rejected"),
}
EVENT_EMOJI: dict[type[ev.Event], str] = {
    ev.ExperimentLaunched: ":rocket:",
    ev.ExperimentQueued: ":hourglass_flowing_sand:",
    ev.AttemptStarted: ":gear:",
    ev.AttemptRunning: ":arrow_forward:",
    ev.AttemptEnded: ":stop_button:",
    ev.RestartScheduled: ":arrows_counterclockwise:",
    ev.ExperimentSucceeded: ":white_check_mark:",
    ev.ExperimentFailed: ":x:",
    ev.ExperimentStopped: ":octagonal_sign:",
    ev.StopRequested: ":double_vertical_bar:",
    ev.NodeUnhealthy: ":rotating_light:",
    ev.IdleWarning: ":zzz:",
    ev.IdleKept: ":zzz:",
    ev.ApprovalRequested: ":lock:",
    ev.LaunchApproved: ":white_check_mark:",
    ev.LaunchDenied: ":no_entry_sign:",
}


def state_label(state: State) -> str:
    """Emoji and word for a state, e.g. ':arrow_forward: Running'."""
    emoji, word = _STATES[State(state)]
    return f"{emoji} {word}"


def state_word(state: State) -> str:
    """The word for a state, e.g. 'Running'."""
    return _STATES[State(state)][1]


def code(text: str, limit: int = SECTION_LIMIT) -> str:
    """`text` in a ``` block of at most `limit` chars, dropping its oldest lines when too long."""
    lines = text.replace(FENCE, "``\u200b`").splitlines() or [" "]
    room = limit - 2 * len(FENCE) - 2
    while len(lines) > 1 and len("\n".join(lines)) > room:
        lines.pop(0)
    return f"{FENCE}\n{truncate(chr(10).join(lines), room)}\n{FENCE}"


def pack(lines: list[str], limit: int = SECTION_LIMIT) -> list[str]:
    """Join lines into as few chunks of at most `limit` characters as possible."""
    chunks: list[str] = []
    current = ""
    for line in (truncate(line, limit) for line in lines):
        if current and len(current) + 1 + len(line) > limit:
            chunks.append(current)
            current = line
        else:
            current = f"{current}\n{line}" if current else line
    return chunks + [current] if current else chunks


def section(text: str) -> SectionBlock:
    """A mrkdwn section, cut to Slack's section limit."""
    return SectionBlock(text=MarkdownTextObject(text=truncate(text, SECTION_LIMIT)))


def more(count: int) -> ContextBlock:
    """'…and N more' under a cut list."""
    return ContextBlock(elements=[MarkdownTextObject(text=f"…and {count} more")])


def gpus_text(exp: Experiment) -> str:
    """'4x a100', '4 nodes x 8 a100', or 'CPU only'."""
    return gpus_label(exp.spec.gpus, exp.spec.gpu_type, exp.spec.nodes)


def runtime_text(exp: Experiment, now: datetime) -> str:
    """'1h30m / 24h': runtime so far against the maximum."""
    return f"{format_duration(exp.runtime(now))} / {limit_text(exp.spec.max_runtime)}"


def reason_text(exp: Experiment) -> str:
    """The state reason, unless it only repeats the state's word."""
    reason = exp.state_reason.strip()
    return "" if reason.lower() == state_word(exp.state).lower() else reason


def plural(count: int, noun: str) -> str:
    """"1 experiment", "2 experiments"."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


def attempts_text(count: int) -> str:
    """"1 attempt", "3 attempts"."""
    return plural(count, "attempt")


def stop_button(name: str) -> ButtonElement:
    """A danger Stop button for experiment `name`, behind a confirm dialog."""
    return ButtonElement(
        text="Stop", action_id=ActionId.STOP.value, value=name, style="danger",
        confirm=ConfirmObject(
            title=truncate(f"Stop {name}?", 100),
            text=truncate(f"Stop *{escape(name)}*? Its current attempt is killed and it is "
                          "not restarted.", 300),
            confirm="Stop", deny="Cancel", style="danger",
        ),
    )


def actions(exp: Experiment) -> list[Block]:
    """Stop (while active) and Logs (once it has attempts) buttons, or nothing."""
    buttons = [] if exp.is_terminal else [stop_button(exp.name)]
    if exp.attempts:
        buttons.append(ButtonElement(text="Logs", action_id=ActionId.LOGS.value, value=exp.name))
    return [ActionsBlock(elements=buttons)] if buttons else []


def _title(exp: Experiment) -> str:
    reason = reason_text(exp)
    text = f"*{escape(exp.name)}*  {state_label(exp.state)}"
    return text + (f"\n{truncate(from_core(reason), 1000)}" if reason else "")


def summary(exp: Experiment, now: datetime, currency: str = "USD") -> list[Block]:
    """Title (name, state, reason) and the fields every experiment view shows."""
    restarts = (f"{exp.user_restarts}/{exp.spec.max_restarts} user, "
                f"{exp.infra_restarts}/{exp.spec.max_preemptions} infra")
    if exp.free_restarts:
        restarts += f", {exp.free_restarts} uncounted"
    fields = [
        f"*Owner*\n{mention(exp.owner)}", f"*Project*\n{escape(exp.spec.project)}",
        f"*GPUs*\n{escape(gpus_text(exp))}", f"*Attempts*\n{len(exp.attempts)}",
        f"*Restarts*\n{restarts}", f"*Runtime*\n{runtime_text(exp, now)}",
        f"*Cost so far*\n{money(exp.cost(now), currency)}",
    ]
    return [section(_title(exp)), SectionBlock(fields=[truncate(f, 2000) for f in fields])]


def fallback(exp: Experiment) -> str:
    """The plain-text fallback of an experiment's message: name, state and reason."""
    reason = reason_text(exp)
    return truncate(from_core(f"{exp.name}: {state_word(exp.state)}" + (f" ({reason})" if reason else "")),
                    SECTION_LIMIT)


def experiment_line(exp: Experiment, now: datetime) -> str:
    """One mrkdwn line: name, state, GPUs, attempts, runtime, project, owner."""
    return (f"*{escape(exp.name)}*  {state_label(exp.state)} · {escape(gpus_text(exp))} · "
            f"{attempts_text(len(exp.attempts))} · {runtime_text(exp, now)} · "
            f"{escape(exp.spec.project)} · {mention(exp.owner)}")


def error_text(message: str, error_id: str | None = None) -> str:
    """':warning: message', with the error id to quote when reporting it."""
    suffix = f" (error id {escape(error_id)})" if error_id else ""
    return truncate(f":warning: {from_core(message)}", SECTION_LIMIT - len(suffix)) + suffix


