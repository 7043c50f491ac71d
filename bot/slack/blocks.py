"""Block Kit messages: experiment parents, thread replies, lists, status, logs and help."""
from __future__ import annotations

import shlex
from collections import Counter
from datetime import datetime

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    HeaderBlock,
    MarkdownTextObject,
    Option,
    SectionBlock,
    StaticSelectElement,
)

from bot.slack.ids import ActionId
from bot.slack.mrkdwn import ELLIPSIS, date_token, escape, limit_text, mention, truncate
from core import events as ev
from core.durations import format_duration
from core.messages import describe, money
from core.model import Attempt, Experiment, State

Message = tuple[str, list[Block]]

MAX_MESSAGE_BLOCKS = 50
SECTION_LIMIT = 3000
GROUP_MEMBER_LINES = 40
LIST_ITEMS = 45
TIMELINE_LINES = 15
STATUS_ATTEMPTS = 20
_FENCE = "```"

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
_EVENT_EMOJI: dict[type[ev.Event], str] = {
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
_TERMINAL_EVENTS = (ev.ExperimentSucceeded, ev.ExperimentFailed, ev.ExperimentStopped)
SUBCOMMANDS = (
    ("launch NAME [options] -- COMMAND", "start an experiment (`launch` alone opens a form)"),
    ("list", "your running, queued and recent experiments"),
    ("status NAME", "details, attempts and timeline of one experiment"),
    ("stop NAME", "stop an experiment (it is not restarted)"),
    ("logs NAME", "the latest log lines of an experiment"),
    ("cost [--days N] [--project P]", "spend by project and by user"),
    ("budget [set project|user NAME AMOUNT]", "this month's budgets (admins may set them)"),
    ("help", "this message"),
)


# ------------------------------------------------------------------------------- text helpers


def state_label(state: State) -> str:
    """Emoji and word for a state, e.g. ':arrow_forward: Running'."""
    emoji, word = _STATES[State(state)]
    return f"{emoji} {word}"


def _word(state: State) -> str:
    return _STATES[State(state)][1]


def _code(text: str, limit: int = SECTION_LIMIT) -> str:
    """`text` in a ``` block of at most `limit` chars, dropping its oldest lines when too long."""
    lines = text.replace(_FENCE, "``\u200b`").splitlines() or [" "]
    room = limit - 2 * len(_FENCE) - 2
    while len(lines) > 1 and len("\n".join(lines)) > room:
        lines.pop(0)
    return f"{_FENCE}\n{truncate(chr(10).join(lines), room)}\n{_FENCE}"


def _pack(lines: list[str], limit: int = SECTION_LIMIT) -> list[str]:
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


def _section(text: str) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=truncate(text, SECTION_LIMIT)))


def _more(count: int) -> ContextBlock:
    return ContextBlock(elements=[MarkdownTextObject(text=f"…and {count} more")])


# -------------------------------------------------------------------------- shared pieces


def gpus_text(exp: Experiment) -> str:
    """'4x a100', or 'CPU only'."""
    return f"{exp.spec.gpus}x {exp.spec.gpu_type or 'gpu'}" if exp.spec.gpus else "CPU only"


def runtime_text(exp: Experiment, now: datetime) -> str:
    """'1h30m / 24h': runtime so far against the maximum."""
    return f"{format_duration(exp.runtime(now))} / {limit_text(exp.spec.max_runtime)}"


def reason_text(exp: Experiment) -> str:
    """The state reason, unless it only repeats the state's word."""
    reason = exp.state_reason.strip()
    return "" if reason.lower() == _word(exp.state).lower() else reason


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def attempts_text(count: int) -> str:
    """"1 attempt", "3 attempts"."""
    return _plural(count, "attempt")


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


def _actions(exp: Experiment) -> list[Block]:
    """Stop (while active) and Logs (once it has attempts) buttons, or nothing."""
    buttons = [] if exp.is_terminal else [stop_button(exp.name)]
    if exp.attempts:
        buttons.append(ButtonElement(text="Logs", action_id=ActionId.LOGS.value, value=exp.name))
    return [ActionsBlock(elements=buttons)] if buttons else []


def _title(exp: Experiment) -> str:
    reason = reason_text(exp)
    text = f"*{escape(exp.name)}*  {state_label(exp.state)}"
    return text + (f"\n{truncate(escape(reason), 1000)}" if reason else "")


def _summary(exp: Experiment, now: datetime, currency: str = "USD") -> list[Block]:
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
    return [_section(_title(exp)), SectionBlock(fields=[truncate(f, 2000) for f in fields])]


def _fallback(exp: Experiment) -> str:
    reason = reason_text(exp)
    return truncate(escape(f"{exp.name}: {_word(exp.state)}" + (f" ({reason})" if reason else "")),
                    SECTION_LIMIT)


def experiment_line(exp: Experiment, now: datetime) -> str:
    """One mrkdwn line: name, state, GPUs, attempts, runtime, project, owner."""
    return (f"*{escape(exp.name)}*  {state_label(exp.state)} · {escape(gpus_text(exp))} · "
            f"{attempts_text(len(exp.attempts))} · {runtime_text(exp, now)} · "
            f"{escape(exp.spec.project)} · {mention(exp.owner)}")


# -------------------------------------------------------------------------------- messages


def experiment_parent(experiments: list[Experiment], now: datetime, currency: str = "USD") -> Message:
    """The channel message of one experiment, or of a sweep group sharing spec.group."""
    if not experiments:
        raise ValueError("experiment_parent needs at least one experiment")
    first = experiments[0]
    if len(experiments) == 1 and first.spec.group is None:
        return _fallback(first), _summary(first, now, currency) + _actions(first)
    return _group_parent(first.spec.group or first.name, experiments, now)


def _group_parent(group: str, members: list[Experiment], now: datetime) -> Message:
    counts = Counter(m.state for m in members)
    summary = " · ".join(f"{state_label(s)} {counts[s]}" for s in State if counts[s])
    owners = sorted({m.owner for m in members})
    owner = mention(owners[0]) if len(owners) == 1 else f"{len(owners)} owners"
    first = members[0]
    about = (f"{_plural(len(members), 'experiment')} · owner {owner} · project "
             f"{escape(first.spec.project)} · {escape(gpus_text(first))} each\n{summary}")
    lines = [
        f"`{escape(m.name)}`  {state_label(m.state)} · {attempts_text(len(m.attempts))} · "
        f"{format_duration(m.runtime(now))}"
        for m in members[:GROUP_MEMBER_LINES]
    ]
    blocks: list[Block] = [HeaderBlock(text=truncate(f"Sweep {group}", 150)), _section(about)]
    blocks += [_section(chunk) for chunk in _pack(lines)]
    if len(members) > GROUP_MEMBER_LINES:
        blocks.append(_more(len(members) - GROUP_MEMBER_LINES))
    active = [m for m in members if not m.is_terminal][:100]
    if active:
        blocks.append(ActionsBlock(elements=[StaticSelectElement(
            placeholder="Stop a member…", action_id=ActionId.STOP_MEMBER.value,
            options=[Option(value=m.name, text=truncate(m.name, 75)) for m in active],
            confirm=ConfirmObject(
                title="Stop this experiment?",
                text="Its current attempt is killed and it is not restarted.",
                confirm="Stop", deny="Cancel", style="danger",
            ),
        )]))
    words = ", ".join(f"{counts[s]} {_word(s).lower()}" for s in State if counts[s])
    text = escape(f"Sweep {group}: {_plural(len(members), 'experiment')} ({words})")
    return truncate(text, SECTION_LIMIT), blocks


def thread_reply(event: ev.Event, owner: str) -> Message:
    """A thread reply for one event; terminal events mention the owner."""
    emoji = _EVENT_EMOJI.get(type(event), ":information_source:")
    who = f"{mention(owner)} " if isinstance(event, _TERMINAL_EVENTS) else ""
    text = truncate(f"{emoji} {who}*{escape(event.experiment_name)}* {escape(describe(event))}",
                    SECTION_LIMIT)
    return text, [_section(text)]


def help_blocks(usage: str, unknown: str | None = None, suggestion: str | None = None) -> Message:
    """Help for /experiment: subcommands and launch usage, after 'Unknown subcommand' if given."""
    blocks: list[Block] = []
    if unknown is not None:
        shown = truncate(escape(unknown.replace("`", "'")), 60)
        text = f"Unknown subcommand `{shown}`."
        if suggestion:
            text += f" Did you mean `{escape(suggestion)}`?"
        blocks.append(_section(text))
    lines = [f"• `/experiment {escape(cmd)}`: {what}" for cmd, what in SUBCOMMANDS]
    blocks.append(_section("*`/experiment` commands*\n" + "\n".join(lines)))
    blocks.append(_section("*Launch*\n" + _code(escape(usage), SECTION_LIMIT - 10)))
    fallback = blocks[0].text.text if unknown is not None else "/experiment help"
    return fallback, blocks


def error_text(message: str, error_id: str | None = None) -> str:
    """':warning: message', with the error id to quote when reporting it."""
    suffix = f" (error id {escape(error_id)})" if error_id else ""
    return truncate(f":warning: {escape(message)}", SECTION_LIMIT - len(suffix)) + suffix


def experiment_list(experiments: list[Experiment], now: datetime, title: str) -> Message:
    """The /experiment list message: one section per experiment, within 50 blocks."""
    blocks: list[Block] = [HeaderBlock(text=truncate(title, 150))]
    if not experiments:
        text = "No experiments yet. Start one with `/experiment launch`."
        return text, blocks + [_section(text)]
    for exp in experiments[:LIST_ITEMS]:
        reason = reason_text(exp)
        line = experiment_line(exp, now)
        blocks.append(_section(line + (f"\n_{truncate(escape(reason), 500)}_" if reason else "")))
    if len(experiments) > LIST_ITEMS:
        blocks.append(_more(len(experiments) - LIST_ITEMS))
    text = f"{escape(title)}: {_plural(len(experiments), 'experiment')}"
    return truncate(text, SECTION_LIMIT), blocks


def _attempt_row(a: Attempt) -> list[str]:
    resumed = a.resumed_from or "-"
    resumed = resumed if len(resumed) <= 40 else ELLIPSIS + resumed[-39:]
    return [str(a.number), str(a.state), "-" if a.exit_code is None else str(a.exit_code),
            str(a.failure_class or "-"), resumed, truncate(a.reason or "-", 60)]


def attempts_table(attempts: list[Attempt]) -> str:
    """The attempts as an aligned plain-text table (not escaped)."""
    rows = [["#", "STATE", "EXIT", "CLASS", "RESUMED FROM", "REASON"]]
    rows += [_attempt_row(a) for a in attempts[-STATUS_ATTEMPTS:]]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths)) + "  " + row[-1] for row in rows
    )


def experiment_status(exp: Experiment, timeline: list[ev.Event], now: datetime, currency: str = "USD") -> Message:
    """The /experiment status view: summary, command, attempts table, recent timeline, buttons."""
    blocks = _summary(exp, now, currency)
    blocks.append(_section("*Command*\n" + _code(escape(shlex.join(exp.spec.command)))))
    if exp.attempts:
        shown = min(len(exp.attempts), STATUS_ATTEMPTS)
        head = f"*Attempts* (last {shown} of {len(exp.attempts)})" if shown < len(exp.attempts) \
            else "*Attempts*"
        blocks.append(_section(f"{head}\n" + _code(escape(attempts_table(exp.attempts)))))
    if timeline:
        lines = [
            truncate(f"{date_token(e.occurred_at)} {_EVENT_EMOJI.get(type(e), '•')} "
                     f"{escape(describe(e))}", 400)
            for e in timeline[-TIMELINE_LINES:]
        ]
        text = "*Timeline*\n" + "\n".join(lines)
        while len(text) > SECTION_LIMIT and len(lines) > 1:
            lines.pop(0)
            text = "*Timeline*\n" + "\n".join(lines)
        blocks.append(_section(text))
    return _fallback(exp), blocks + _actions(exp)


def stop_confirmation(exp: Experiment) -> Message:
    """Ephemeral 'Stop *name*? It is running attempt n' with a confirmed danger Stop button."""
    name = escape(exp.name)
    if exp.is_terminal:
        text = f"*{name}* has already ended ({_word(exp.state).lower()}); there is nothing to stop."
        return text, [_section(text)]
    attempt = len(exp.attempts)
    doing = {
        State.STARTING: f"It is starting attempt {attempt}.",
        State.RUNNING: f"It is running attempt {attempt}.",
        State.RESTARTING: f"It is waiting to restart as attempt {attempt + 1}.",
        State.QUEUED: "It is queued" + (f" after {attempts_text(attempt)}." if attempt else "."),
        State.PENDING_APPROVAL: "It is waiting for approval.",
        State.STOPPING: f"It is being stopped already (attempt {attempt}).",
    }[exp.state]
    text = f"Stop *{name}*? {doing} Stopped experiments are not restarted."
    return text, [_section(text), ActionsBlock(elements=[stop_button(exp.name)])]


def logs_blocks(name: str, attempt: int, text: str, limit: int = 2900) -> Message | None:
    """The log text in a code block, or None when it does not fit `limit` (upload a file)."""
    body = escape(text.rstrip("\n")).replace(_FENCE, "``\u200b`") or "(no output yet)"
    code = f"{_FENCE}\n{body}\n{_FENCE}"
    if len(code) > min(limit, SECTION_LIMIT):
        return None
    title = f"Logs of *{escape(name)}*, attempt {attempt}"
    blocks: list[Block] = [
        ContextBlock(elements=[MarkdownTextObject(text=truncate(title, SECTION_LIMIT))]),
        SectionBlock(text=MarkdownTextObject(text=code)),
    ]
    return truncate(f"Logs of {escape(name)}, attempt {attempt}", SECTION_LIMIT), blocks
