"""From a launch line's pieces to experiment specs: values checked, defaults filled, sweeps expanded."""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from datetime import timedelta

from core import grammar_values as values
from core.errors import SpecError
from core.spec import ExperimentSpec, LaunchConfig, LaunchRequest


@dataclass
class ParsedLine:
    """The raw pieces of a launch line, before any value is checked."""

    name: str
    command: tuple[str, ...]
    single: dict[str, str] = field(default_factory=dict)
    repeated: dict[str, list[str]] = field(default_factory=dict)


def build(parsed: ParsedLine, config: LaunchConfig) -> LaunchRequest:
    """Check every value, fill in the defaults and expand a sweep into its member specs."""
    name = parsed.name
    single = parsed.single
    gpus = config.default_gpus
    if "--gpus" in single:
        gpus = values.parse_whole(single["--gpus"], "--gpus", 0, config.max_gpus)
    nodes = values.parse_whole(single["--nodes"], "--nodes", 1, config.max_nodes) if "--nodes" in single else 1
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
        "nodes": nodes,
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
        return values.check_duration(value, "--hours", config.max_runtime_limit, text, config.min_runtime)
    if "--max-runtime" in single:
        text = single["--max-runtime"]
        value = values.parse_duration_option(text, "--max-runtime")
        return values.check_duration(value, "--max-runtime", config.max_runtime_limit, text, config.min_runtime)
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
