"""The launch grammar shared by Slack and the CLI: `[launch] NAME [options] -- COMMAND ARGS...`."""
from __future__ import annotations

import itertools
import re
import shlex
from dataclasses import dataclass, field
from datetime import timedelta

from core import grammar_values as values
from core.errors import SpecError
from core.grammar_values import bare, did_you_mean, show
from core.spec import ExperimentSpec, LaunchConfig, LaunchRequest

USAGE = """\
launch NAME [options] -- COMMAND [ARGS...]
  NAME                      lowercase letters, digits and '-' (e.g. train-bert)
  --image IMAGE             container image
  --gpus N                  number of GPUs
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


@dataclass
class _Parsed:
    """The raw pieces of a launch line, before any value is checked."""

    name: str
    command: tuple[str, ...]
    single: dict[str, str] = field(default_factory=dict)
    repeated: dict[str, list[str]] = field(default_factory=dict)


def parse_launch(text: str, config: LaunchConfig) -> LaunchRequest:
    """Parse one launch line into a LaunchRequest, or raise SpecError saying what is wrong."""
    parsed = _split(_tokenize(text))
    return _build(parsed, config)


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


def _split(tokens: list[str]) -> _Parsed:
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
    parsed = _Parsed(name=values.check_name(name), command=command)
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


def _scan_options(tokens: list[str], parsed: _Parsed, has_separator: bool) -> None:
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


def _store(option: str, value: str, parsed: _Parsed) -> None:
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


def _build(parsed: _Parsed, config: LaunchConfig) -> LaunchRequest:
    """Check every value, fill in the defaults and expand a sweep into its member specs."""
    name = parsed.name
    single = parsed.single
    gpus = config.default_gpus
    if "--gpus" in single:
        gpus = values.parse_whole(single["--gpus"], "--gpus", 0, config.max_gpus)
    gpu_type: str | None = None
    if "--gpu-type" in single:
        gpu_type = values.parse_gpu_type(single["--gpu-type"], config.gpu_catalog)
    elif gpus > 0:
        gpu_type = config.resolved_default_gpu_type()
    env = _env(parsed.repeated.get("--env", []))
    sweeps = _sweeps(parsed.repeated.get("--sweep", []), env)
    fields = {
        "image": values.parse_image(single["--image"])
        if "--image" in single
        else config.default_image,
        "gpus": gpus,
        "gpu_type": gpu_type,
        "cpu": values.parse_cpu(single["--cpu"]) if "--cpu" in single else None,
        "memory": values.parse_memory(single["--memory"]) if "--memory" in single else None,
        "max_runtime": _max_runtime(single, config),
        "max_restarts": _count(single, "--max-restarts", config.default_max_restarts),
        "max_preemptions": _count(single, "--max-preemptions", config.default_max_preemptions),
        "retry_on_exit_codes": values.parse_exit_codes(single["--retry-on-exit-codes"])
        if "--retry-on-exit-codes" in single
        else frozenset(),
        "project": values.parse_project(single["--project"], config.projects)
        if "--project" in single
        else config.default_project,
        "checkpoint_glob": values.parse_checkpoint_glob(single["--checkpoint-glob"])
        if "--checkpoint-glob" in single
        else config.default_checkpoint_glob,
        "stall_timeout": _stall_timeout(single, config),
        "give_up_patterns": config.give_up_patterns
        + tuple(values.parse_pattern(text) for text in parsed.repeated.get("--give-up-on", [])),
    }
    if not sweeps:
        spec = ExperimentSpec(name=name, command=parsed.command, env=env, **fields)
        return LaunchRequest(group=None, specs=(spec,))
    size = values.check_sweep_size(sweeps, config.max_sweep_size)
    values.check_member_names(name, size)
    specs = tuple(
        ExperimentSpec(
            name=f"{name}-{index}",
            command=_substitute(parsed.command, member),
            env={**env, **{key.upper(): value for key, value in member.items()}},
            group=name,
            sweep_values=member,
            **fields,
        )
        for index, member in enumerate(_members(sweeps), start=1)
    )
    return LaunchRequest(group=name, specs=specs)


def _count(single: dict[str, str], option: str, default: int) -> int:
    """A non-negative count option, or its default."""
    if option not in single:
        return default
    return values.parse_whole(single[option], option, 0, values.MAX_COUNT)


def _max_runtime(single: dict[str, str], config: LaunchConfig) -> timedelta:
    """--hours or --max-runtime (never both), checked against the configured limit."""
    if "--hours" in single and "--max-runtime" in single:
        raise SpecError(
            "give either --hours or --max-runtime, not both (they both set the maximum runtime)",
            option="--max-runtime",
        )
    if "--hours" in single:
        text, value = single["--hours"], values.parse_hours(single["--hours"], "--hours")
        return values.check_duration(value, "--hours", config.max_runtime_limit, text)
    if "--max-runtime" in single:
        text = single["--max-runtime"]
        value = values.parse_duration_option(text, "--max-runtime")
        return values.check_duration(value, "--max-runtime", config.max_runtime_limit, text)
    return config.default_max_runtime


def _stall_timeout(single: dict[str, str], config: LaunchConfig) -> timedelta | None:
    """--stall-timeout, bounded by the runtime limit (a longer one could never fire)."""
    if "--stall-timeout" not in single:
        return config.default_stall_timeout
    text = single["--stall-timeout"]
    value = values.parse_duration_option(text, "--stall-timeout")
    return values.check_duration(value, "--stall-timeout", config.max_runtime_limit, text)


def _env(pairs: list[str]) -> dict[str, str]:
    """The --env variables, refusing the same name twice."""
    env: dict[str, str] = {}
    for text in pairs:
        key, value = values.parse_env(text)
        if key in env:
            raise SpecError(
                f"--env {key} was given twice; give each variable once", option="--env"
            )
        env[key] = value
    return env


def _sweeps(texts: list[str], env: dict[str, str]) -> dict[str, tuple[str, ...]]:
    """The --sweep keys and values in the order given, refusing clashes between names."""
    sweeps: dict[str, tuple[str, ...]] = {}
    # Each sweep key also becomes an environment variable KEY (uppercased): names must not clash.
    env_names = {key.upper(): key for key in env}
    for text in texts:
        key, options = values.parse_sweep(text)
        if key in sweeps:
            raise SpecError(
                f"--sweep {key} was given twice; list all its values once ({key}=v1,v2)",
                option="--sweep",
            )
        clash = next((other for other in sweeps if other.upper() == key.upper()), None)
        if clash is not None:
            raise SpecError(
                f"--sweep keys {clash} and {key} would both set the variable {key.upper()}; "
                f"rename one",
                option="--sweep",
            )
        if key.upper() in env_names:
            raise SpecError(
                f"--sweep {key} sets the variable {key.upper()}, which --env "
                f"{env_names[key.upper()]} also sets; drop one of them",
                option="--sweep",
            )
        sweeps[key] = options
    return sweeps


def _members(sweeps: dict[str, tuple[str, ...]]) -> list[dict[str, str]]:
    """Every combination of sweep values, the first key varying slowest."""
    keys = list(sweeps)
    return [dict(zip(keys, combo)) for combo in itertools.product(*sweeps.values())]


def _substitute(command: tuple[str, ...], member: dict[str, str]) -> tuple[str, ...]:
    """Replace each literal `{key}` of a sweep key by the member's value; other braces stay."""
    # One regex pass, so a value that itself contains `{other}` is not substituted again.
    pattern = re.compile(r"\{(" + "|".join(re.escape(key) for key in member) + r")\}")
    return tuple(pattern.sub(lambda match: member[match.group(1)], arg) for arg in command)
