"""The thread of a launch in Block Kit: its parent message (one experiment or a sweep) and the replies."""
from __future__ import annotations

from collections import Counter
from datetime import datetime

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ConfirmObject,
    HeaderBlock,
    Option,
    StaticSelectElement,
)

from bot.slack.ids import ActionId
from bot.slack.mrkdwn import SECTION_LIMIT, escape, from_core, mention, truncate
from bot.slack.pieces import (
    EVENT_EMOJI,
    Message,
    actions,
    attempts_text,
    fallback,
    gpus_text,
    more,
    pack,
    plural,
    section,
    state_label,
    state_word,
    summary,
)
from core import events as ev
from core.durations import format_duration
from core.messages import describe
from core.model import Experiment, State

GROUP_MEMBER_LINES = 40
_TERMINAL_EVENTS = (ev.ExperimentSucceeded, ev.ExperimentFailed, ev.ExperimentStopped)


def experiment_parent(experiments: list[Experiment], now: datetime, currency: str = "USD") -> Message:
    """The channel message of one experiment, or of a sweep group sharing spec.group."""
    if not experiments:
        raise ValueError("experiment_parent needs at least one experiment")
    first = experiments[0]
    if len(experiments) == 1 and first.spec.group is None:
        return fallback(first), summary(first, now, currency) + actions(first)
    return _group_parent(first.spec.group or first.name, experiments, now)


def _group_parent(group: str, members: list[Experiment], now: datetime) -> Message:
    counts = Counter(m.state for m in members)
    summary = " · ".join(f"{state_label(s)} {counts[s]}" for s in State if counts[s])
    owners = sorted({m.owner for m in members})
    owner = mention(owners[0]) if len(owners) == 1 else f"{len(owners)} owners"
    first = members[0]
    about = (f"{plural(len(members), 'experiment')} · owner {owner} · project "
             f"{escape(first.spec.project)} · {escape(gpus_text(first))} each\n{summary}")
    lines = [
        f"`{escape(m.name)}`  {state_label(m.state)} · {attempts_text(len(m.attempts))} · "
        f"{format_duration(m.runtime(now))}"
        for m in members[:GROUP_MEMBER_LINES]
    ]
    blocks: list[Block] = [HeaderBlock(text=truncate(f"Sweep {group}", 150)), section(about)]
    blocks += [section(chunk) for chunk in pack(lines)]
    if len(members) > GROUP_MEMBER_LINES:
        blocks.append(more(len(members) - GROUP_MEMBER_LINES))
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
    words = ", ".join(f"{counts[s]} {state_word(s).lower()}" for s in State if counts[s])
    text = escape(f"Sweep {group}: {plural(len(members), 'experiment')} ({words})")
    return truncate(text, SECTION_LIMIT), blocks


def thread_reply(event: ev.Event, owner: str) -> Message:
    """A thread reply for one event; terminal events mention the owner."""
    emoji = EVENT_EMOJI.get(type(event), ":information_source:")
    who = f"{mention(owner)} " if isinstance(event, _TERMINAL_EVENTS) else ""
    text = truncate(f"{emoji} {who}*{escape(event.experiment_name)}* {from_core(describe(event))}",
                    SECTION_LIMIT)
    return text, [section(text)]
