"""The CLI's help and usage errors: plain help with readable placeholders, and every mistake in one line."""
from __future__ import annotations

import re
import sys
from typing import Any

import typer

# click's usage-error base, wherever this typer takes click from: newer typers vendor their own
# copy (typer._click), whose errors are not the `click` package's.
USAGE_ERRORS = tuple(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")

# A word longer than this in a message is user text pasted whole (paths and URLs stay shorter): cut it.
_LONG_WORD = 200
_KEEP = 60


def cut_long_words(message: str) -> str:
    """The message with every very long word shortened: a 100 KB name must not be echoed whole."""
    return re.sub(r"\S{%d,}" % (_LONG_WORD + 1),
                  lambda m: f"{m[0][:_KEEP]}...({len(m[0])} characters)", message)


def name_arguments(command: Any) -> Any:
    """Give every positional argument an upper-case placeholder (NAME), in this command and below it.

    Newer typers show an argument without one as a literal `{name}` in usage lines and errors.
    """
    for param in getattr(command, "params", ()):
        if param.param_type_name == "argument" and param.metavar is None:
            param.metavar = param.name.upper()
    for sub in getattr(command, "commands", {}).values():
        name_arguments(sub)
    return command


def report_usage_error(error: Any) -> int:
    """Print a usage error as one line on stderr and return its exit code (`expbot` alone: the help)."""
    if type(error).__name__ == "NoArgsIsHelpError":  # `expbot` or `expbot db` with nothing after it
        print(error.format_message())
        return 0
    print(f"error: {usage_error_line(error)}", file=sys.stderr)
    return error.exit_code


def usage_error_line(error: Any) -> str:
    """click's usage error as one line naming the problem and where help is, without the usage block."""
    ctx = getattr(error, "ctx", None)
    param = getattr(error, "param", None)
    # Some errors come without a context (an option missing its value): the command is then argv's.
    path = ctx.command_path if ctx is not None else " ".join(["expbot", *sys.argv[1:2]])
    if type(error).__name__ == "MissingParameter" and param is not None:
        kind = "argument" if param.param_type_name == "argument" else "option"
        shown = param.metavar or param.name.upper() if kind == "argument" else "/".join(param.opts)
        problem = f"missing {kind} {shown}"
    else:
        problem = " ".join(error.format_message().split()).rstrip(".")  # one line, whatever click wrote
        problem = problem[:1].lower() + problem[1:]
    return cut_long_words(f"{path}: {problem} (see `{path} --help`)")


def _launch_defaults(config: Any) -> dict[str, str]:
    """What each launch option is when left out, under this configuration."""
    from core.durations import format_duration

    stall = config.default_stall_timeout
    return {
        "--image": config.default_image,
        "--gpus": str(config.default_gpus),
        "--nodes": "1",
        "--gpu-type": config.resolved_default_gpu_type() or "none",
        "--max-runtime": format_duration(config.default_max_runtime),
        "--max-restarts": str(config.default_max_restarts),
        "--max-preemptions": str(config.default_max_preemptions),
        "--project": config.default_project,
        "--checkpoint-glob": config.default_checkpoint_glob,
        "--stall-timeout": format_duration(stall) if stall else "off",
        "--give-up-on": ", ".join(repr(p) for p in config.give_up_patterns) or "none",
    }


def launch_help(usage: str, config: Any, note: str = "") -> str:
    """`expbot launch --help`: the launch grammar's usage with each option's default appended."""
    defaults = _launch_defaults(config)
    lines = []
    for line in usage.splitlines():
        words = line.split()
        option = words[0] if words and words[0].startswith("--") else ""
        lines.append(f"{line}  [default: {defaults[option]}]" if option in defaults else line)
    return "expbot " + "\n".join(lines) + (f"\n{note}" if note else "")
