"""Answers to `/experiment` in Block Kit: help, lists, one experiment's status, logs, stop confirmation."""
from __future__ import annotations

import shlex
from datetime import datetime

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ContextBlock,
    HeaderBlock,
    MarkdownTextObject,
    SectionBlock,
)

from bot.slack.mrkdwn import ELLIPSIS, SECTION_LIMIT, date_token, escape, from_core, truncate
from bot.slack.pieces import (
    EVENT_EMOJI,
    FENCE,
    Message,
    actions,
    attempts_text,
    code,
    experiment_line,
    fallback,
    more,
    plural,
    reason_text,
    section,
    state_word,
    stop_button,
    summary,
)
from core import events as ev
from core.messages import describe
from core.model import Attempt, Experiment, State

LIST_ITEMS = 45
TIMELINE_LINES = 15
STATUS_ATTEMPTS = 20
SUBCOMMANDS = (
    ("launch NAME [options] -- COMMAND", "start an experiment (`launch` alone opens a form)"),
    ("list [--all] [--project P]", "your running and queued experiments (`--all`: everyone's, ended ones too)"),
    ("status NAME", "details, attempts and timeline of one experiment"),
    ("stop NAME", "stop an experiment (it is not restarted)"),
    ("logs NAME", "the latest log lines of an experiment"),
    ("cost [--days N] [--project P]", "spend by project and by user"),
    ("budget [set project|user NAME AMOUNT]", "this month's budgets (admins may set them)"),
    ("help", "this message"),
)


def help_blocks(usage: str, unknown: str | None = None, suggestion: str | None = None) -> Message:
    """Help for /experiment: subcommands and launch usage, after 'Unknown subcommand' if given."""
    blocks: list[Block] = []
    if unknown is not None:
        shown = truncate(escape(unknown.replace("`", "'")), 60)
        text = f"Unknown subcommand `{shown}`."
        if suggestion:
            text += f" Did you mean `{escape(suggestion)}`?"
        blocks.append(section(text))
    lines = [f"• `/experiment {escape(cmd)}`: {what}" for cmd, what in SUBCOMMANDS]
    blocks.append(section("*`/experiment` commands*\n" + "\n".join(lines)))
    blocks.append(section("*Launch*\n" + code(escape(usage), SECTION_LIMIT - 10)))
    text = blocks[0].text.text if unknown is not None else "/experiment help"
    return text, blocks


NO_EXPERIMENTS = "No experiments yet. Start one with `/experiment launch`."


def experiment_list(experiments: list[Experiment], now: datetime, title: str, empty: str = NO_EXPERIMENTS) -> Message:
    """The /experiment list message: one section per experiment, within 50 blocks; `empty` when none."""
    blocks: list[Block] = [HeaderBlock(text=truncate(title, 150))]
    if not experiments:
        return empty, blocks + [section(empty)]
    for exp in experiments[:LIST_ITEMS]:
        reason = reason_text(exp)
        line = experiment_line(exp, now)
        blocks.append(section(line + (f"\n_{truncate(from_core(reason), 500)}_" if reason else "")))
    if len(experiments) > LIST_ITEMS:
        blocks.append(more(len(experiments) - LIST_ITEMS))
    text = f"{escape(title)}: {plural(len(experiments), 'experiment')}"
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
    blocks = summary(exp, now, currency)
    blocks.append(section("*Command*\n" + code(escape(shlex.join(exp.spec.command)))))
    if exp.attempts:
        shown = min(len(exp.attempts), STATUS_ATTEMPTS)
        head = f"*Attempts* (last {shown} of {len(exp.attempts)})" if shown < len(exp.attempts) \
            else "*Attempts*"
        blocks.append(section(f"{head}\n" + code(escape(attempts_table(exp.attempts)))))
    if timeline:
        lines = [
            truncate(f"{date_token(e.occurred_at)} {EVENT_EMOJI.get(type(e), '•')} "
                     f"{from_core(describe(e))}", 400)
            for e in timeline[-TIMELINE_LINES:]
        ]
        text = "*Timeline*\n" + "\n".join(lines)
        while len(text) > SECTION_LIMIT and len(lines) > 1:
            lines.pop(0)
            text = "*Timeline*\n" + "\n".join(lines)
        blocks.append(section(text))
    return fallback(exp), blocks + actions(exp)


def stop_confirmation(exp: Experiment) -> Message:
    """Ephemeral 'Stop *name*? It is running attempt n' with a confirmed danger Stop button."""
    name = escape(exp.name)
    if exp.is_terminal:
        text = f"*{name}* has already ended ({state_word(exp.state).lower()}); there is nothing to stop."
        return text, [section(text)]
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
    return text, [section(text), ActionsBlock(elements=[stop_button(exp.name)])]


def logs_blocks(name: str, attempt: int, text: str, limit: int = 2900) -> Message | None:
    """The log text in a code block, or None when it does not fit `limit` (upload a file)."""
    body = escape(text.rstrip("\n")).replace(FENCE, "``\u200b`") or "(no output yet)"
    code = f"{FENCE}\n{body}\n{FENCE}"
    if len(code) > min(limit, SECTION_LIMIT):
        return None
    title = f"Logs of *{escape(name)}*, attempt {attempt}"
    blocks: list[Block] = [
        ContextBlock(elements=[MarkdownTextObject(text=truncate(title, SECTION_LIMIT))]),
        SectionBlock(text=MarkdownTextObject(text=code)),
    ]
    return truncate(f"Logs of {escape(name)}, attempt {attempt}", SECTION_LIMIT), blocks
