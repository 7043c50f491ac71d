"""The launch grammar, property-tested: any text gives a request or a clear error."""
from __future__ import annotations

import shlex
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import SpecError
from core.grammar import parse_launch
from core.spec import LaunchConfig, LaunchRequest
from tests.unit.grammar_helpers import ALL_OPTIONS, CONFIG, one

# ---------------------------------------------------------------- properties

_VALUES = [
    "1", "0", "-1", "64", "65", "four", "1.5", "12h", "90m", "0m", "h100", "A100", "v100", "500m",
    "16Gi", "16GB", "42,75", "0", "A=1", "EXPBOT_X=1", "lr=0.1,0.01", "lr=", "k=1,1", "../x",
    "/abs", "*.pt", "python:3.11", "", "=", "{lr}", "'", '"', "\\", "--", "-", "—", "=x",
    "a" * 50, "9" * 30, "launch", "Train_BERT", "\x00", "é", "\n",
]  # fmt: skip
_WORDS = st.one_of(
    st.sampled_from(ALL_OPTIONS + ["--help", "-h", "--gpu", "--hour", "launch", "--"]),
    st.sampled_from(ALL_OPTIONS).flatmap(lambda o: st.sampled_from(_VALUES).map(lambda v: f"{o}={v}")),
    st.sampled_from(_VALUES),
    st.text(max_size=12),
)


def _parse_or_spec_error(text: str, config: LaunchConfig = CONFIG) -> LaunchRequest | None:
    """Parse, accepting only a LaunchRequest or a well-formed SpecError."""
    try:
        result = parse_launch(text, config)
    except SpecError as err:
        message = str(err)
        assert message and "\n" not in message
        assert err.option is None or isinstance(err.option, str)
        return None
    assert isinstance(result, LaunchRequest)
    assert result.specs
    return result


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.text())
def test_any_text_gives_a_request_or_a_spec_error(text):
    _parse_or_spec_error(text)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(
    prefix=st.sampled_from(["", "launch ", "launch x ", "x ", "my-exp "]),  # "launch" is a name like any
    words=st.lists(_WORDS, max_size=12),
    tail=st.sampled_from(["", " -- python train.py", " -- run {lr} {k}", " --"]),
)
def test_any_mix_of_options_values_and_junk_gives_a_request_or_a_spec_error(prefix, words, tail):
    result = _parse_or_spec_error(prefix + " ".join(words) + tail)
    if result is not None:
        for spec in result.specs:
            assert spec.command and spec.command[0].strip()
            assert 0 <= spec.gpus <= CONFIG.max_gpus
            assert timedelta(0) < spec.max_runtime <= CONFIG.max_runtime_limit
            assert not any(key.startswith("EXPBOT_") for key in spec.env)


_NAMES = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", fullmatch=True)
_ENV_KEYS = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True).filter(
    lambda key: not key.startswith("EXPBOT_")
)
_ARG = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=15)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=_NAMES,
    gpus=st.integers(0, 64),
    gpu_type=st.one_of(st.none(), st.sampled_from(list(CONFIG.gpu_catalog))),
    tenths_of_hours=st.integers(1, 1680),
    env=st.dictionaries(_ENV_KEYS, _ARG, max_size=4),
    command=st.lists(_ARG, min_size=1, max_size=6).filter(lambda args: args[0].strip()),
    equals=st.booleans(),
    data=st.data(),
)
def test_valid_inputs_round_trip(name, gpus, gpu_type, tenths_of_hours, env, command, equals, data):
    hours = f"{tenths_of_hours // 10}.{tenths_of_hours % 10}"
    pairs = [("--gpus", str(gpus)), ("--hours", hours)]
    pairs += [("--env", f"{key}={value}") for key, value in env.items()]
    if gpu_type:
        pairs.append(("--gpu-type", gpu_type))
    pairs = data.draw(st.permutations(pairs))
    words = [f"{opt}={shlex.quote(val)}" if equals else f"{opt} {shlex.quote(val)}" for opt, val in pairs]
    text = " ".join([name, *words, "--", *map(shlex.quote, command)])

    spec = one(text)

    assert spec.name == name
    assert spec.gpus == gpus
    expected_type = gpu_type or ("h100" if gpus else None)
    assert spec.gpu_type == expected_type
    assert spec.max_runtime == timedelta(minutes=6 * tenths_of_hours)
    assert spec.env == env
    assert spec.command == tuple(command)


@settings(max_examples=200)
@given(
    name=st.from_regex(r"[a-z]{1,10}", fullmatch=True),
    sweeps=st.dictionaries(
        st.from_regex(r"[a-z][a-z0-9_]{0,5}", fullmatch=True).filter(lambda k: not k.startswith("expbot_")),
        st.lists(st.from_regex(r"[A-Za-z0-9.]{1,6}", fullmatch=True), min_size=1, max_size=3, unique=True),
        min_size=1,
        max_size=3,
    ),
)
def test_sweep_makes_every_combination_once(name, sweeps):
    options = " ".join(f"--sweep {key}={','.join(vals)}" for key, vals in sweeps.items())
    args = " ".join(f"{{{key}}}" for key in sweeps)
    request = parse_launch(f"{name} {options} -- run {args}", CONFIG)

    expected_size = 1
    for vals in sweeps.values():
        expected_size *= len(vals)
    assert request.group == name
    assert len(request.specs) == expected_size
    assert [spec.name for spec in request.specs] == [f"{name}-{i}" for i in range(1, expected_size + 1)]
    combos = {tuple(spec.sweep_values[key] for key in sweeps) for spec in request.specs}
    assert len(combos) == expected_size
    for spec in request.specs:
        assert spec.group == name
        assert spec.command == ("run", *(spec.sweep_values[key] for key in sweeps))
        assert spec.env == {key.upper(): value for key, value in spec.sweep_values.items()}
