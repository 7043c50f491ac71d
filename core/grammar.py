"""The launch grammar shared by Slack and the CLI: `[launch] NAME [options] -- COMMAND ARGS...`."""
from __future__ import annotations

import shlex

from core import grammar_values as values
from core.errors import SpecError
from core.grammar_specs import ParsedLine, build
from core.grammar_values import bare, did_you_mean, show
from core.spec import LaunchConfig, LaunchRequest

USAGE = """\
launch NAME [options] -- COMMAND [ARGS...]
  NAME                      lowercase letters, digits and '-' (e.g. train-bert)
  --image IMAGE             container image
  --gpus N                  number of GPUs (per node)
  --nodes N                 nodes of one distributed run, each with --gpus GPUs
  --gpu-type TYPE           GPU model from the catalog (e.g. a100)
  --cpu CPU                 CPU cores, e.g. 4, 2.5 or 500m
  --memory SIZE             memory, e.g. 16Gi or 512Mi
  --hours H                 maximum runtime in hours, e.g. 12 or 1.5
  --max-runtime DURATION    maximum runtime, e.g. 90m, 12h, 1h30m
  --max-restarts N          restarts allowed after the code fails
  --max-preemptions N       restarts allowed after the cluster fails
  --retry-on-exit-codes L   exit codes that restart without counting, e.g. 42,75
  --env KEY=VALUE           environment variable (repeatable)
  --project PROJECT         project billed for the run
  --checkpoint-glob GLOB    checkpoint files to resume from, e.g. 'ckpt/*.pt'
  --stall-timeout DURATION  restart when no checkpoint appears for this long
  --give-up-on TEXT         stop at once when the log shows TEXT (repeatable)
  --sweep KEY=V1,V2,...     run one experiment per combination (repeatable);
                            {KEY} in the command is replaced by each value
Options may also be written --option=value. Everything after '--' is the command.
Example: launch train-bert --gpus 2 --hours 12 -- python train.py --lr 3e-4"""

_SHORT_USAGE = "launch NAME [options] -- COMMAND"

# Option name -> whether it may be given more than once.
_OPTIONS: dict[str, bool] = {
    "--image": False,
    "--gpus": False,
    "--nodes": False,
    "--gpu-type": False,
    "--cpu": False,
    "--memory": False,
    "--hours": False,
    "--max-runtime": False,
    "--max-restarts": False,
    "--max-preemptions": False,
    "--retry-on-exit-codes": False,
    "--env": True,
    "--project": False,
    "--checkpoint-glob": False,
    "--stall-timeout": False,
    "--give-up-on": True,
    "--sweep": True,
}
# Typographic dashes that chat clients' autocorrect puts where the user typed '--'.
_LONG_DASHES = ("\u2014", "\u2013", "\u2012", "\u2212")


def parse_launch(text: str, config: LaunchConfig) -> LaunchRequest:
    """Parse one launch line into a LaunchRequest, or raise SpecError saying what is wrong."""
    parsed = _split(_tokenize(text))
    return build(parsed, config)


def _tokenize(text: str) -> list[str]:
    """Split the line like a POSIX shell would (quotes group words, backslashes escape)."""
    if not isinstance(text, str):
        raise SpecError("the launch text must be a string")
    # No process can receive a NUL in its arguments or environment; refuse it up front.
    if "\x00" in text:
        raise SpecError("the launch text contains a NUL character; remove it")
    try:
        return shlex.split(text)
    except ValueError:
        raise SpecError(_quote_problem(text)) from None


def _quote_problem(text: str) -> str:
    """Explain why shlex gave up: which quote is left open, or a trailing backslash."""
    quote: str | None = None
    start = 0
    index = 0
    while index < len(text):
        char = text[index]
        if quote is None:
            if char == "\\":
                index += 1  # the next character is escaped
            elif char in "'\"":
                quote, start = char, index
        elif char == quote:
            quote = None
        elif quote == '"' and char == "\\":
            index += 1  # inside double quotes a backslash escapes the next character
        index += 1
    if quote is not None:
        kind = "single" if quote == "'" else "double"
        return (
            f"unbalanced {kind} quote ({quote}) starting at {show(text[start:start + 20])}: "
            f"close it, or escape it as \\{quote}"
        )
    return "the launch text ends with a lone backslash (\\); remove it or escape it as \\\\"


def _split(tokens: list[str]) -> ParsedLine:
    """Separate name, options and command, checking the shape of the line (not the values)."""
    # Callers pass what follows the subcommand (the slash command's and the CLI's `launch` is
    # already gone), so a first word "launch" is the experiment's name, never a keyword.
    if not tokens:
        raise SpecError(f"missing the experiment name: write {_SHORT_USAGE}", option="name")
    if "--" in tokens:
        cut = tokens.index("--")
        head, command = tokens[:cut], tuple(tokens[cut + 1 :])
        has_separator = True
    else:
        head, command, has_separator = tokens, (), False
    if not head:
        raise SpecError(
            f"missing the experiment name before '--': write {_SHORT_USAGE}", option="name"
        )
    name = head[0]
    if name in ("-h", "--help"):
        _check_known(name)
    if name.startswith("-") or name.startswith(_LONG_DASHES):
        raise SpecError(
            f"missing the experiment name: it comes first, before options like {bare(name)} "
            f"({_SHORT_USAGE})",
            option="name",
        )
    parsed = ParsedLine(name=values.check_name(name), command=command)
    _scan_options(head[1:], parsed, has_separator)
    if not has_separator:
        raise SpecError(
            f"missing '--' and the command after it: write {_SHORT_USAGE}", option="--"
        )
    if not command or not command[0].strip():
        raise SpecError(
            f"the command after '--' is empty: write {_SHORT_USAGE}", option="command"
        )
    return parsed


def _scan_options(tokens: list[str], parsed: ParsedLine, has_separator: bool) -> None:
    """Collect `--opt value` / `--opt=value` pairs into `parsed`, refusing anything else."""
    index = 0
    while index < len(tokens):
        token = tokens[index]
        index += 1
        if token.startswith(_LONG_DASHES):
            raise SpecError(
                f"{bare(token)} starts with a long dash (often autocorrect): type two "
                f"hyphens, as in {bare('--' + token.lstrip(''.join(_LONG_DASHES)))}",
                option=bare(token),
            )
        if not token.startswith("-"):
            if has_separator:
                raise SpecError(
                    f"unexpected {show(token)} before '--': options start with '--' and "
                    f"the command goes after '--'",
                    option="--",
                )
            raise SpecError(
                f"missing '--' before the command (at {show(token)}): write {_SHORT_USAGE}",
                option="--",
            )
        option, has_value, value = token.partition("=")
        _check_known(option)
        if not has_value:
            # A following option (or nothing) means this one's value was forgotten.
            if index >= len(tokens) or tokens[index].startswith("--"):
                raise SpecError(
                    f"{option} needs a value (e.g. {option} {_EXAMPLES[option]})", option=option
                )
            value = tokens[index]
            index += 1
        elif not value:
            raise SpecError(
                f"{option} needs a value (e.g. {option}={_EXAMPLES[option]})", option=option
            )
        _store(option, value, parsed)


def _check_known(option: str) -> None:
    """Refuse options the grammar does not have, suggesting the closest real one."""
    if option in _OPTIONS:
        return
    if option in ("-h", "--help"):
        raise SpecError(
            f"{option} is not a launch option; usage: {_SHORT_USAGE} (see help for the options)",
            option=option,
        )
    raise SpecError(
        f"unknown option {bare(option)}{did_you_mean(option, list(_OPTIONS))}",
        option=bare(option),
    )


def _store(option: str, value: str, parsed: ParsedLine) -> None:
    """Remember one option's value, refusing a second value for a non-repeatable option."""
    if _OPTIONS[option]:
        parsed.repeated.setdefault(option, []).append(value)
        return
    if option in parsed.single:
        raise SpecError(
            f"{option} was given twice ({show(parsed.single[option])} and {show(value)}); "
            f"give it once",
            option=option,
        )
    parsed.single[option] = value


# A sample value per option, used in "needs a value" messages.
_EXAMPLES: dict[str, str] = {
    "--image": "python:3.11-slim",
    "--gpus": "1",
    "--nodes": "2",
    "--gpu-type": "a100",
    "--cpu": "4",
    "--memory": "16Gi",
    "--hours": "12",
    "--max-runtime": "1h30m",
    "--max-restarts": "3",
    "--max-preemptions": "10",
    "--retry-on-exit-codes": "42,75",
    "--env": "KEY=VALUE",
    "--project": "research",
    "--checkpoint-glob": "'ckpt/*.pt'",
    "--stall-timeout": "30m",
    "--give-up-on": "'CUDA out of memory'",
    "--sweep": "lr=0.1,0.01",
}
