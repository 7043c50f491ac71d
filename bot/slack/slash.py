"""`/experiment` subcommands after the ack: launch, list, status, stop, logs, help."""
from __future__ import annotations

import re
import shlex
from typing import Any

from slack_sdk import WebClient

from bot.container import Expbot
from bot.reports_text import (
    BUDGET_USAGE,
    COST_USAGE,
    budget_text,
    cost_text,
    parse_cost_args,
)
from bot.slack import replies
from bot.slack.auth import Admins
from bot.slack.mrkdwn import SLACK_USER_ID, escape, is_slack_user
from core import commands
from core.errors import ExpbotError
from core.grammar import USAGE as LAUNCH_USAGE
from core.lookup import find_experiment
from core.messages import owner_or_admin
from core.spec import LaunchRequest
from core.model import ACTIVE, Experiment, State
from core.reports import budget_report, cost_report
from core.suggest import closest

SUBCOMMANDS = tuple(usage.split()[0] for usage, _ in replies.SUBCOMMANDS)  # one list: the help's
USAGE = "/experiment " + LAUNCH_USAGE
LOG_LINES_INLINE = 40
LOG_LINES_FILE = 5000
_MENTION = re.compile(rf"<@({SLACK_USER_ID.pattern})(?:\|[^>]*)?>")  # "<@U123|bob>" as Slack escapes it


def split_subcommand(text: str) -> tuple[str, str]:
    """('launch', 'train --gpus 2 -- python t.py') from the slash command's text."""
    parts = text.strip().split(maxsplit=1)
    if not parts:
        return "help", ""
    return parts[0].lower(), parts[1] if len(parts) > 1 else ""


def closest_subcommand(word: str) -> str | None:
    """The subcommand a typo most likely meant, if any is close."""
    return closest(word, SUBCOMMANDS)


def _words(text: str, usage: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError as e:
        raise ExpbotError(f"could not read `{text}` ({e}); usage: {usage}") from e


class SlashCommands:
    """The slow half of `/experiment`: runs after Slack got its ack, answers via response_url."""

    def __init__(self, bot: Expbot, admins: Admins) -> None:
        self.bot = bot
        self.admins = admins

    def run(self, respond, body: dict[str, Any], client: WebClient, request: LaunchRequest | None = None) -> None:
        """Dispatch one `/experiment ...` invocation (a launch the ack parsed comes as `request`)."""
        sub, rest = split_subcommand(body.get("text", ""))
        user, channel = body["user_id"], body.get("channel_id")
        if sub == "launch" and rest:
            self.launch(respond, rest, user, channel, body["trigger_id"], request)
        elif sub == "list":
            self.list(respond, rest, user)
        elif sub == "status":
            self.status(respond, self._one_name(rest, "status NAME"))
        elif sub == "stop":
            self.confirm_stop(respond, self._one_name(rest, "stop NAME"), user)
        elif sub == "logs":
            name, attempt = self._logs_args(rest)
            self.send_logs(respond, client, user, name, attempt)
        elif sub == "cost":
            self.cost(respond, rest)
        elif sub == "budget":
            self.budget(respond, rest, user)
        elif sub == "help":
            text, help_blocks = replies.help_blocks(USAGE)
            respond(text=text, blocks=help_blocks, response_type="ephemeral")

    def launch(self, respond, text: str, user: str, channel: str | None, trigger_id: str,
               request: LaunchRequest | None = None) -> None:
        """Launch; the same delivery seen again (same trigger id) launches nothing new."""
        result = self.bot.bus.handle(commands.LaunchExperiment(
            text=text, owner=user, idempotency_key=f"slash:{trigger_id}", channel=channel, request=request,
        ))
        if result.duplicate:
            return
        respond(text=launched_text(result.experiments), response_type="ephemeral")

    def list(self, respond, rest: str, user: str) -> None:
        """`list [--all] [--project P]`: mine by default."""
        words = _words(rest, "list [--all] [--project P]")
        everyone, project = False, None
        while words:
            word = words.pop(0)
            if word == "--all":
                everyone = True
            elif word == "--project" and words and not words[0].startswith("--"):
                project = words.pop(0)
            elif word == "--project":
                raise ExpbotError("--project needs a project name, e.g. `list --project nlp`")
            else:
                raise ExpbotError(f"unknown argument {word!r}; usage: list [--all] [--project P]")
        with self.bot.uow_factory() as uow:
            found = uow.experiments.list(
                states=None if everyone else ACTIVE, owner=None if everyone or project else user,
                project=project, limit=200,
            )
        title = "All experiments" if everyone else (f"Project {project}" if project else "Your running and queued experiments")
        text, list_blocks = replies.experiment_list(found, self.bot.clock.now(), title, _empty_list(everyone, project))
        respond(text=text, blocks=list_blocks, response_type="ephemeral")

    def status(self, respond, name: str) -> None:
        """One experiment in detail."""
        exp, timeline = self._find(name)
        text, status_blocks = replies.experiment_status(exp, timeline, self.bot.clock.now(), self.bot.prices.currency)
        respond(text=text, blocks=status_blocks, response_type="ephemeral")

    def confirm_stop(self, respond, name: str, user: str) -> None:
        """Ask before stopping; refuse at once whoever may not stop it."""
        exp, _ = self._find(name)
        if exp.owner != user and not self.admins.is_admin(user):
            raise ExpbotError(owner_or_admin(exp.owner, f"stop {exp.name}"))
        if exp.is_terminal:
            raise ExpbotError(f"{exp.name} has already ended ({exp.state})")
        text, confirm_blocks = replies.stop_confirmation(exp)
        respond(text=text, blocks=confirm_blocks, response_type="ephemeral")

    def send_logs(self, respond, client: WebClient, user: str, name: str, attempt: int | None) -> None:
        """The last lines inline; when they do not fit a message, the log as a file in a DM."""
        exp, _ = self._find(name)
        if not exp.attempts:
            raise ExpbotError(f"{exp.name} has no attempts yet ({exp.state})")
        number = attempt or exp.attempts[-1].number
        if not 1 <= number <= len(exp.attempts):
            raise ExpbotError(f"{exp.name} has attempts 1..{len(exp.attempts)}; there is no attempt {number}")
        tail = self.bot.backend.logs(exp.id, number, LOG_LINES_INLINE)
        inline = replies.logs_blocks(exp.name, number, tail)
        if inline is not None:
            text, log_blocks = inline
            respond(text=text, blocks=log_blocks, response_type="ephemeral", replace_original=False)
            return
        content = self.bot.backend.logs(exp.id, number, LOG_LINES_FILE)
        dm = client.conversations_open(users=user)["channel"]["id"]
        client.files_upload_v2(
            channel=dm, content=content, filename=f"{exp.name}-attempt-{number}.log",
            title=f"{exp.name} attempt {number}", initial_comment=f"Last {LOG_LINES_FILE} lines of {exp.name} attempt {number}",
        )
        respond(text=f":page_facing_up: The log of {escape(exp.name)} attempt {number} is too long "
                     "for a message; I sent it to you as a file.", response_type="ephemeral", replace_original=False)

    def cost(self, respond, rest: str) -> None:
        """`cost [--days N] [--project P]`: spend by project and by user."""
        days, project = parse_cost_args(_words(rest, COST_USAGE))
        with self.bot.uow_factory() as uow:
            report = cost_report(uow, self.bot.clock.now(), days, project)
        respond(text=cost_text(report, self.bot.prices, days), response_type="ephemeral")

    def budget(self, respond, rest: str, user: str) -> None:
        """`budget` shows this month's budgets; `budget set project|user NAME AMOUNT` (admins) changes one."""
        words = _words(rest, BUDGET_USAGE)
        if words[:1] == ["set"]:
            if len(words) != 4 or words[1] not in ("project", "user"):
                raise ExpbotError(f"usage: /experiment {BUDGET_USAGE}")
            try:
                amount = float(words[3].replace(",", "").lstrip("$"))
            except ValueError:
                raise ExpbotError(f"budget amount must be a number like 5000, got {words[3]!r}") from None
            name = words[2] if words[1] == "project" else _member_id(words[2])
            self.bot.bus.handle(commands.SetBudget(scope=words[1], name=name, monthly_limit=amount, by=user,
                                                   as_admin=self.admins.is_admin(user)))
        elif words:
            raise ExpbotError(f"usage: /experiment {BUDGET_USAGE}")
        with self.bot.uow_factory() as uow:
            statuses = budget_report(uow, self.bot.budgets, self.bot.prices, self.bot.clock.now())
        respond(text=budget_text(statuses, self.bot.prices), response_type="ephemeral")

    def _find(self, name: str) -> tuple[Experiment, list]:
        with self.bot.uow_factory() as uow:
            exp = find_experiment(uow.experiments, name, " (try `/experiment list --all`)")
            return exp, uow.outbox.for_experiment(exp.id)

    @staticmethod
    def _one_name(rest: str, usage: str) -> str:
        words = _words(rest, usage)
        if len(words) != 1:
            raise ExpbotError(f"usage: /experiment {usage}")
        return words[0]

    def _logs_args(self, rest: str) -> tuple[str, int | None]:
        usage = "logs NAME [--attempt N]"
        words = _words(rest, usage)
        attempt = None
        if "--attempt" in words:
            index = words.index("--attempt")
            value = words[index + 1] if index + 1 < len(words) else ""
            if not value.isdigit() or int(value) < 1:
                raise ExpbotError(f"--attempt expects an attempt number like 2, got {value!r}")
            attempt = int(value)
            del words[index : index + 2]
        if len(words) != 1:
            raise ExpbotError(f"usage: /experiment {usage}")
        return words[0], attempt


def launched_text(experiments: list[Experiment]) -> str:
    """What the user who launched (slash command or form) is told: launched, or waiting for approval."""
    names = ", ".join(escape(e.name) for e in experiments[:10])
    more = f" and {len(experiments) - 10} more" if len(experiments) > 10 else ""
    if any(e.state == State.PENDING_APPROVAL for e in experiments):
        return (f":hourglass_flowing_sand: {names}{more} would go over budget, so it waits for an approver; "
                "updates follow in its thread.")
    return f":rocket: Launched {names}{more}; updates follow in its thread."


def stop_text(exp: Experiment) -> str:
    """What whoever pressed Stop is told: stopped already, or being stopped by expbot."""
    if exp.state == State.STOPPING:
        return (f":double_vertical_bar: Stopping *{escape(exp.name)}*: expbot ends attempt {len(exp.attempts)} "
                "(SIGTERM, then SIGKILL after the grace period); its thread says when it has stopped.")
    return f":octagonal_sign: Stopped *{escape(exp.name)}*."


def _member_id(word: str) -> str:
    """A Slack member id from a mention or the id itself: budgets of Slack users are keyed by id."""
    if (found := _MENTION.fullmatch(word)) is not None:
        return found.group(1)
    if is_slack_user(word):
        return word
    # The manifest keeps should_escape off (launch commands may hold URLs), so "@bob" arrives as
    # plain text that names nobody: refuse it rather than store a budget that never applies.
    raise ExpbotError(
        f"{word!r} does not say which Slack user: give their member ID (their profile, ⋯, "
        "Copy member ID), e.g. `budget set user U012AB3CD 500`; a command-line user's budget is set "
        "with `expbot budget user NAME AMOUNT`"
    )


def _empty_list(everyone: bool, project: str | None) -> str:
    """What an empty /experiment list says: without --all, ended experiments were left out, not absent."""
    if everyone and not project:
        return replies.NO_EXPERIMENTS
    if everyone:
        return f"No experiments in project {escape(project or '')}."
    where = f" in project {escape(project)}" if project else ""
    also = f" --project {escape(project)}" if project else ""
    return f"Nothing running or queued{where}. `/experiment list --all{also}` shows ended ones too."
