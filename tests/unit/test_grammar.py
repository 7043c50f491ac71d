"""The launch grammar: every option, every error message, sweeps, quoting, and properties."""
from __future__ import annotations

import shlex
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.errors import SpecError
from core.grammar import USAGE, parse_launch
from core.spec import MAX_NAME_LENGTH, ExperimentSpec, GpuType, LaunchConfig, LaunchRequest

CONFIG = LaunchConfig()
ALL_OPTIONS = [
    "--image", "--gpus", "--gpu-type", "--cpu", "--memory", "--hours", "--max-runtime",
    "--max-restarts", "--max-preemptions", "--retry-on-exit-codes", "--env", "--project",
    "--checkpoint-glob", "--stall-timeout", "--give-up-on", "--sweep",
]  # fmt: skip


def one(text: str, config: LaunchConfig = CONFIG) -> ExperimentSpec:
    """Parse a non-sweep launch and return its only spec."""
    request = parse_launch(text, config)
    assert request.group is None
    assert len(request.specs) == 1
    return request.specs[0]


def error(text: str, config: LaunchConfig = CONFIG) -> SpecError:
    """Parse a launch that must fail and return the SpecError."""
    with pytest.raises(SpecError) as caught:
        parse_launch(text, config)
    return caught.value


# ---------------------------------------------------------------- defaults and shape


def test_defaults_come_from_the_config():
    spec = one("launch train-bert -- python train.py")
    assert spec.name == "train-bert"
    assert spec.command == ("python", "train.py")
    assert spec.image == "python:3.11-slim"
    assert spec.gpus == 0 and spec.gpu_type is None
    assert spec.cpu is None and spec.memory is None
    assert spec.max_runtime == timedelta(hours=24)
    assert spec.max_restarts == 3 and spec.max_preemptions == 10
    assert spec.retry_on_exit_codes == frozenset()
    assert spec.env == {}
    assert spec.project == "default"
    assert spec.checkpoint_glob == "*"
    assert spec.stall_timeout is None
    assert spec.give_up_patterns == ("CUDA out of memory",)
    assert spec.group is None and spec.sweep_values == {}


def test_custom_config_defaults_are_used():
    config = LaunchConfig(
        default_image="ghcr.io/lab/train:1",
        default_gpus=2,
        default_gpu_type="a100",
        default_max_runtime=timedelta(hours=3),
        default_max_restarts=1,
        default_max_preemptions=4,
        default_project="vision",
        default_checkpoint_glob="ckpt/*.pt",
        default_stall_timeout=timedelta(minutes=20),
        give_up_patterns=("Killed",),
    )
    spec = one("x -- run", config)
    assert spec.image == "ghcr.io/lab/train:1"
    assert (spec.gpus, spec.gpu_type) == (2, "a100")
    assert spec.max_runtime == timedelta(hours=3)
    assert (spec.max_restarts, spec.max_preemptions) == (1, 4)
    assert spec.project == "vision"
    assert spec.checkpoint_glob == "ckpt/*.pt"
    assert spec.stall_timeout == timedelta(minutes=20)
    assert spec.give_up_patterns == ("Killed",)


@pytest.mark.parametrize("prefix", ["launch ", "Launch ", "", "  launch\t"])
def test_leading_launch_word_is_optional(prefix):
    assert one(prefix + "exp-1 --gpus 1 -- echo hi").name == "exp-1"


def test_an_experiment_may_be_called_launch_after_the_launch_word():
    assert one("launch launch -- echo").name == "launch"


def test_everything_after_the_first_double_dash_is_the_command_verbatim():
    spec = one("x --gpus 1 -- torchrun --nproc 8 train.py -- --gpus 3 --env A=1")
    assert spec.command == ("torchrun", "--nproc", "8", "train.py", "--", "--gpus", "3", "--env", "A=1")
    assert spec.gpus == 1
    assert spec.env == {}


def test_shell_quoting_in_the_command():
    spec = one("""x -- python -c "print('a b')" 'single quoted' escaped\\ space""")
    assert spec.command == ("python", "-c", "print('a b')", "single quoted", "escaped space")


def test_quoted_option_values_keep_their_spaces():
    spec = one("""x --give-up-on "Killed process" --env 'MSG=hello world' -- run""")
    assert spec.give_up_patterns == ("CUDA out of memory", "Killed process")
    assert spec.env == {"MSG": "hello world"}


def test_hash_is_not_a_comment():
    assert one("x -- echo #1").command == ("echo", "#1")


# ---------------------------------------------------------------- each option


def test_equals_form_works_for_every_option():
    spec = one(
        "x --image=pytorch/pytorch:2.3 --gpus=2 --gpu-type=l4 --cpu=4 --memory=16Gi "
        "--max-runtime=90m --max-restarts=5 --max-preemptions=7 --retry-on-exit-codes=42,75 "
        "--env=A=1=2 --project=nlp --checkpoint-glob=ckpt/*.pt --stall-timeout=30m "
        "--give-up-on=NaN -- run"
    )
    assert spec.image == "pytorch/pytorch:2.3"
    assert (spec.gpus, spec.gpu_type) == (2, "l4")
    assert (spec.cpu, spec.memory) == ("4", "16Gi")
    assert spec.max_runtime == timedelta(minutes=90)
    assert (spec.max_restarts, spec.max_preemptions) == (5, 7)
    assert spec.retry_on_exit_codes == frozenset({42, 75})
    assert spec.env == {"A": "1=2"}
    assert spec.project == "nlp"
    assert spec.checkpoint_glob == "ckpt/*.pt"
    assert spec.stall_timeout == timedelta(minutes=30)
    assert spec.give_up_patterns[-1] == "NaN"


def test_hours_equals_form():
    assert one("x --hours=1.5 -- run").max_runtime == timedelta(minutes=90)


@pytest.mark.parametrize(
    "image", ["python:3.11-slim", "ghcr.io/org/img:tag", "localhost:5000/a/b", "img@sha256:abc123"]
)
def test_image(image):
    assert one(f"x --image {image} -- run").image == image


def test_gpus_default_type_is_the_first_catalog_entry():
    spec = one("x --gpus 4 -- run")
    assert (spec.gpus, spec.gpu_type) == (4, "h100")


def test_gpus_default_type_honours_configured_default():
    config = LaunchConfig(default_gpu_type="t4")
    assert one("x --gpus 1 -- run", config).gpu_type == "t4"


def test_gpus_up_to_the_maximum():
    assert one("x --gpus 64 -- run").gpus == 64
    assert one("x --gpus 8 -- run", LaunchConfig(max_gpus=8)).gpus == 8


def test_gpu_type_is_kept_with_zero_gpus():
    spec = one("x --gpus 0 --gpu-type a100 -- run")
    assert (spec.gpus, spec.gpu_type) == (0, "a100")


def test_gpu_type_matches_case_insensitively():
    assert one("x --gpus 1 --gpu-type A100 -- run").gpu_type == "a100"


def test_gpu_type_from_a_custom_catalog():
    config = LaunchConfig(gpu_catalog={"mi300x": GpuType(name="mi300x", price_per_hour=3.0)})
    assert one("x --gpus 1 -- run", config).gpu_type == "mi300x"
    assert error("x --gpus 1 --gpu-type h100 -- run", config).option == "--gpu-type"


@pytest.mark.parametrize("cpu", ["4", "2.5", "500m", "0.5", ".5", "64"])
def test_cpu_quantities(cpu):
    assert one(f"x --cpu {cpu} -- run").cpu == cpu


@pytest.mark.parametrize("memory", ["16Gi", "512Mi", "1G", "1024", "1.5Gi", "100k", "2Ti"])
def test_memory_quantities(memory):
    assert one(f"x --memory {memory} -- run").memory == memory


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("--hours 12", timedelta(hours=12)),
        ("--hours 1.5", timedelta(minutes=90)),
        ("--hours 168", timedelta(days=7)),
        ("--max-runtime 90m", timedelta(minutes=90)),
        ("--max-runtime 1h30m", timedelta(minutes=90)),
        ("--max-runtime 12h", timedelta(hours=12)),
        ("--max-runtime 2d", timedelta(days=2)),
        ("--max-runtime 3", timedelta(hours=3)),
        ("--max-runtime 7d", timedelta(days=7)),
    ],
)
def test_max_runtime(text, expected):
    assert one(f"x {text} -- run").max_runtime == expected


def test_counts():
    spec = one("x --max-restarts 0 --max-preemptions 0 -- run")
    assert (spec.max_restarts, spec.max_preemptions) == (0, 0)
    spec = one("x --max-restarts 12 --max-preemptions 30 -- run")
    assert (spec.max_restarts, spec.max_preemptions) == (12, 30)


@pytest.mark.parametrize(
    ("text", "codes"),
    [("42", {42}), ("42,75", {42, 75}), ("'42, 75'", {42, 75}), ("1,255", {1, 255}), ("3,3", {3})],
)
def test_retry_on_exit_codes(text, codes):
    assert one(f"x --retry-on-exit-codes {text} -- run").retry_on_exit_codes == frozenset(codes)


def test_env_is_repeatable_and_values_may_be_empty_or_contain_equals():
    spec = one("x --env A=1 --env _b2= --env URL=http://h/?q=1 -- run")
    assert spec.env == {"A": "1", "_b2": "", "URL": "http://h/?q=1"}


def test_project_from_the_configured_list():
    config = LaunchConfig(projects=("nlp", "vision"))
    assert one("x --project vision -- run", config).project == "vision"


def test_project_any_short_name_when_no_list_is_configured():
    assert one("x --project team-42 -- run").project == "team-42"


@pytest.mark.parametrize("glob", ["*.pt", "ckpt/*.pt", "**/step_*.safetensors", "a/...b/*"])
def test_checkpoint_glob(glob):
    assert one(f"x --checkpoint-glob '{glob}' -- run").checkpoint_glob == glob


def test_stall_timeout():
    assert one("x --stall-timeout 45m -- run").stall_timeout == timedelta(minutes=45)
    assert one("x --stall-timeout 2 -- run").stall_timeout == timedelta(hours=2)


def test_give_up_on_appends_to_the_configured_patterns_in_order():
    spec = one("x --give-up-on NaN --give-up-on 'loss diverged' -- run")
    assert spec.give_up_patterns == ("CUDA out of memory", "NaN", "loss diverged")


def test_usage_lists_every_option():
    for option in ALL_OPTIONS:
        assert option in USAGE
    assert "--" in USAGE and "NAME" in USAGE


# ---------------------------------------------------------------- sweeps


def test_sweep_product_naming_and_values():
    request = parse_launch(
        "launch tune --gpus 1 --env SEED=0 --sweep lr=0.1,0.01 --sweep bs=32,64,128 "
        "-- python train.py --lr={lr} --bs {bs} --tag {lr}-{bs} {other} {LR}",
        CONFIG,
    )
    assert request.group == "tune"
    assert [spec.name for spec in request.specs] == [f"tune-{i}" for i in range(1, 7)]
    combos = [(spec.sweep_values["lr"], spec.sweep_values["bs"]) for spec in request.specs]
    assert combos == [
        ("0.1", "32"), ("0.1", "64"), ("0.1", "128"),
        ("0.01", "32"), ("0.01", "64"), ("0.01", "128"),
    ]  # fmt: skip
    fifth = request.specs[4]
    assert fifth.group == "tune"
    assert fifth.sweep_values == {"lr": "0.01", "bs": "64"}
    assert fifth.env == {"SEED": "0", "LR": "0.01", "BS": "64"}
    # Only the literal {key} of sweep keys is replaced; other braces (and {LR}) stay as typed.
    assert fifth.command == (
        "python", "train.py", "--lr=0.01", "--bs", "64", "--tag", "0.01-64", "{other}", "{LR}",
    )  # fmt: skip
    assert all(spec.gpus == 1 and spec.gpu_type == "h100" for spec in request.specs)
    assert "EXPBOT_SWEEP_INDEX" not in fifth.env


def test_sweep_keys_sharing_a_prefix_are_not_confused():
    request = parse_launch("s --sweep lr=1 --sweep lr2=2 -- run {lr} {lr2} {lr}{lr2}", CONFIG)
    assert request.specs[0].command == ("run", "1", "2", "12")


def test_sweep_value_containing_another_key_is_not_substituted_twice():
    request = parse_launch("s --sweep a={b} --sweep b=2 -- run {a}:{b}", CONFIG)
    assert request.specs[0].command == ("run", "{b}:2")


def test_single_value_sweep_is_still_a_group():
    request = parse_launch("s --sweep seed=7 -- run", CONFIG)
    assert request.group == "s"
    assert [spec.name for spec in request.specs] == ["s-1"]
    assert request.specs[0].env == {"SEED": "7"}


def test_sweep_values_are_trimmed():
    request = parse_launch("s --sweep 'lr=0.1, 0.01' -- run {lr}", CONFIG)
    assert [spec.command[1] for spec in request.specs] == ["0.1", "0.01"]


def test_sweep_of_exactly_the_maximum_size_is_allowed():
    request = parse_launch("s --sweep a=1,2,3,4 --sweep b=1,2 -- run", LaunchConfig(max_sweep_size=8))
    assert len(request.specs) == 8


def test_sweep_member_names_fit_exactly():
    name = "a" * (MAX_NAME_LENGTH - 3)  # "-10" makes it exactly MAX_NAME_LENGTH
    request = parse_launch(f"{name} --sweep k=0,1,2,3,4,5,6,7,8,9 -- run", CONFIG)
    assert request.specs[-1].name == f"{name}-10"
    assert len(request.specs[-1].name) == MAX_NAME_LENGTH


# ---------------------------------------------------------------- errors

ERRORS = [
    # text, option, words the message must contain
    ("", "name", ["missing", "name"]),
    ("launch", "name", ["missing", "name"]),
    ("launch -- python", "name", ["missing", "name", "before '--'"]),
    ("launch --gpus 2 -- x", "name", ["missing", "name", "--gpus"]),
    (
        "launch Train_BERT -- x",
        "name",
        ["'Train_BERT'", "lowercase letters, digits and '-'", "starting and ending", "'train-bert'"],
    ),
    ("bad- -- x", "name", ["'bad-'", "not allowed", "'bad'"]),
    ("a.b -- x", "name", ["'a.b'", "not allowed", "'a-b'"]),
    ("a" * 41 + " -- x", "name", ["too long", "41", "40"]),
    ("x python train.py", "--", ["missing '--'", "'python'"]),
    ("x --gpus 2", "--", ["missing '--'"]),
    ("x --gpus 2 stray -- y", "--", ["unexpected", "'stray'", "'--'"]),
    ("x --", "command", ["command", "empty"]),
    ("x -- ''", "command", ["command", "empty"]),
    ('x -- python "abc', None, ["unbalanced", "double", '"abc']),
    ("x -- python 'abc", None, ["unbalanced", "single", "'abc"]),
    ("x -- python abc\\", None, ["backslash"]),
    ("x --gpu 2 -- y", "--gpu", ["unknown option --gpu", "did you mean --gpus?"]),
    ("x --imgae foo -- y", "--imgae", ["unknown option --imgae", "did you mean --image?"]),
    ("x --hour 2 -- y", "--hour", ["did you mean --hours?"]),
    ("x -g 2 -- y", "-g", ["unknown option -g"]),
    ("x --help -- y", "--help", ["--help", "not a launch option"]),
    ("x -h -- y", "-h", ["-h", "not a launch option"]),
    ("--help", "--help", ["not a launch option"]),
    ("x \u2014gpus 2 -- y", "\u2014gpus", ["long dash", "--gpus"]),
    ("x --gpus -- y", "--gpus", ["--gpus needs a value"]),
    ("x --gpus= -- y", "--gpus", ["--gpus needs a value"]),
    ("x --gpus --hours 2 -- y", "--gpus", ["--gpus needs a value"]),
    ("x --env", "--env", ["--env needs a value"]),
    ("x --gpus four -- y", "--gpus", ["--gpus expects a whole number, got 'four'"]),
    ("x --gpus 1.5 -- y", "--gpus", ["whole number", "'1.5'"]),
    ("x --gpus -1 -- y", "--gpus", ["whole number", "'-1'"]),
    ("x --gpus \u0663 -- y", "--gpus", ["whole number"]),
    ("x --gpus 65 -- y", "--gpus", ["between 0 and 64", "'65'"]),
    ("x --gpus 99999999999999999999999 -- y", "--gpus", ["between 0 and 64"]),
    ("x --gpus 2 --gpus 3 -- y", "--gpus", ["twice", "'2'", "'3'"]),
    ("x --gpus 1 --gpu-type v100 -- y", "--gpu-type", ["'v100'", "h100", "a100", "t4"]),
    ("x --gpus 1 --gpu-type a10 -- y", "--gpu-type", ["'a10'", "did you mean"]),
    ("x --image 'a b' -- y", "--image", ["--image", "'a b'", "python:3.11-slim"]),
    ("x --image -dash -- y", "--image", ["--image", "'-dash'"]),
    ("x --cpu 0 -- y", "--cpu", ["more than 0"]),
    ("x --cpu 0m -- y", "--cpu", ["more than 0"]),
    ("x --cpu 4x -- y", "--cpu", ["'4x'", "500m"]),
    ("x --cpu 1.5m -- y", "--cpu", ["'1.5m'"]),
    ("x --cpu four -- y", "--cpu", ["'four'"]),
    ("x --memory 16GB -- y", "--memory", ["'16GB'", "16Gi", "did you mean 16Gi?"]),
    ("x --memory 512m -- y", "--memory", ["did you mean 512Mi?"]),
    ("x --memory 0Gi -- y", "--memory", ["more than 0"]),
    ("x --memory 1.5 -- y", "--memory", ["'1.5'", "16Gi"]),
    ("x --memory lots -- y", "--memory", ["'lots'"]),
    ("x --hours 0 -- y", "--hours", ["more than 0"]),
    ("x --hours 169 -- y", "--hours", ["at most 7d", "'169'"]),
    ("x --hours 12h -- y", "--hours", ["number of hours", "'12h'", "--max-runtime 12h"]),
    ("x --hours nan -- y", "--hours", ["number of hours", "'nan'"]),
    ("x --hours inf -- y", "--hours", ["number of hours"]),
    ("x --hours 1e3 -- y", "--hours", ["number of hours"]),
    ("x --hours " + "9" * 400 + " -- y", "--hours", ["at most 7d"]),
    ("x --max-runtime soon -- y", "--max-runtime", ["duration", "'soon'", "90m"]),
    ("x --max-runtime 0m -- y", "--max-runtime", ["more than 0"]),
    ("x --max-runtime 8d -- y", "--max-runtime", ["at most 7d"]),
    ("x --max-runtime 99999999999999999999d -- y", "--max-runtime", ["at most 7d"]),
    ("x --hours 1 --max-runtime 1h -- y", "--max-runtime", ["--hours", "--max-runtime", "not both"]),
    ("x --hours 1 --hours 2 -- y", "--hours", ["twice"]),
    ("x --max-restarts -1 -- y", "--max-restarts", ["whole number", "'-1'"]),
    ("x --max-restarts 1001 -- y", "--max-restarts", ["between 0 and 1000"]),
    ("x --max-preemptions lots -- y", "--max-preemptions", ["whole number", "'lots'"]),
    ("x --retry-on-exit-codes 0 -- y", "--retry-on-exit-codes", ["exit code 0", "1..255"]),
    ("x --retry-on-exit-codes 42,0 -- y", "--retry-on-exit-codes", ["exit code 0"]),
    ("x --retry-on-exit-codes 256 -- y", "--retry-on-exit-codes", ["1..255", "'256'"]),
    ("x --retry-on-exit-codes 42,,75 -- y", "--retry-on-exit-codes", ["empty entry", "'42,,75'"]),
    ("x --retry-on-exit-codes 42, -- y", "--retry-on-exit-codes", ["empty entry"]),
    ("x --retry-on-exit-codes a,b -- y", "--retry-on-exit-codes", ["'a'", "42,75"]),
    ("x --env FOO -- y", "--env", ["KEY=VALUE", "'FOO'"]),
    ("x --env 1FOO=x -- y", "--env", ["'1FOO'", "not allowed"]),
    ("x --env A-B=1 -- y", "--env", ["'A-B'"]),
    ("x --env =x -- y", "--env", ["''", "not allowed"]),
    ("x --env EXPBOT_ATTEMPT=2 -- y", "--env", ["'EXPBOT_ATTEMPT'", "EXPBOT_", "set by expbot"]),
    ("x --env A=1 --env A=2 -- y", "--env", ["A", "twice"]),
    ("x --project Bad_Name -- y", "--project", ["'Bad_Name'", "lowercase"]),
    ("x --project " + "p" * 64 + " -- y", "--project", ["63"]),
    ("x --checkpoint-glob '' -- y", "--checkpoint-glob", ["empty"]),
    ("x --checkpoint-glob /data/*.pt -- y", "--checkpoint-glob", ["'/data/*.pt'", "relative"]),
    ("x --checkpoint-glob ~/ckpt -- y", "--checkpoint-glob", ["relative"]),
    ("x --checkpoint-glob ../x/*.pt -- y", "--checkpoint-glob", ["'..'"]),
    ("x --checkpoint-glob a/../../b -- y", "--checkpoint-glob", ["'..'"]),
    ("x --stall-timeout 0 -- y", "--stall-timeout", ["more than 0"]),
    ("x --stall-timeout forever -- y", "--stall-timeout", ["duration", "'forever'"]),
    ("x --stall-timeout 30d -- y", "--stall-timeout", ["at most 7d"]),
    ("x --give-up-on ' ' -- y", "--give-up-on", ["non-empty"]),
    ("x --sweep lr -- y", "--sweep", ["key=v1,v2", "'lr'"]),
    ("x --sweep 1lr=1 -- y", "--sweep", ["'1lr'", "not allowed"]),
    ("x --sweep l-r=1 -- y", "--sweep", ["'l-r'"]),
    ("x --sweep lr= -- y", "--sweep", ["empty value"]),
    ("x --sweep lr=1,,2 -- y", "--sweep", ["empty value", "'lr=1,,2'"]),
    ("x --sweep lr=1,1 -- y", "--sweep", ["'1'", "twice"]),
    ("x --sweep lr=1 --sweep lr=2 -- y", "--sweep", ["lr", "twice"]),
    ("x --sweep lr=1 --sweep LR=2 -- y", "--sweep", ["lr", "LR", "variable"]),
    ("x --env LR=1 --sweep lr=1,2 -- y", "--sweep", ["lr", "--env LR"]),
    ("x --sweep expbot_x=1 -- y", "--sweep", ["'expbot_x'", "EXPBOT_"]),
    (
        "x --sweep a=1,2,3 --sweep b=0,1,2,3,4,5,6,7,8,9,10 -- y",
        "--sweep",
        ["33 experiments", "at most 32"],
    ),
    ("a" * 38 + " --sweep k=0,1,2,3,4,5,6,7,8,9 -- y", "name", ["too long", "sweep of 10", "-10'"]),
    ("x -- a\x00b", None, ["NUL"]),
]


@pytest.mark.parametrize(("text", "option", "words"), ERRORS, ids=[e[0][:40] for e in ERRORS])
def test_errors_name_the_option_and_explain(text, option, words):
    err = error(text)
    message = str(err)
    assert err.option == option
    for word in words:
        assert word in message, f"{word!r} not in {message!r}"
    assert "\n" not in message and message.strip() == message and message


def test_gpu_type_with_an_empty_catalog():
    config = LaunchConfig(gpu_catalog={})
    err = error("x --gpu-type a100 -- y", config)
    assert err.option == "--gpu-type" and "no GPU types" in str(err)


def test_project_not_in_the_configured_list_lists_the_allowed_ones():
    config = LaunchConfig(projects=("nlp", "vision"))
    err = error("x --project visoin -- y", config)
    assert err.option == "--project"
    assert "'visoin'" in str(err) and "nlp, vision" in str(err) and "did you mean vision?" in str(err)


def test_gpus_above_a_custom_maximum():
    err = error("x --gpus 9 -- y", LaunchConfig(max_gpus=8))
    assert err.option == "--gpus" and "between 0 and 8" in str(err)


def test_runtime_limit_comes_from_the_config():
    config = LaunchConfig(max_runtime_limit=timedelta(hours=2))
    assert one("x --hours 2 -- y", config).max_runtime == timedelta(hours=2)
    err = error("x --max-runtime 2h1m -- y", config)
    assert err.option == "--max-runtime" and "at most 2h" in str(err)


def test_unknown_option_far_from_any_known_one_has_no_suggestion():
    err = error("x --zzzzzzzz 1 -- y")
    assert err.option == "--zzzzzzzz"
    assert "unknown option --zzzzzzzz" in str(err) and "did you mean" not in str(err)


def test_message_shows_control_characters_escaped_on_one_line():
    err = error("x --gpus 'a\nb' -- y")
    assert "\n" not in str(err) and "a\\nb" in str(err)


def test_non_string_input_is_a_spec_error():
    with pytest.raises(SpecError):
        parse_launch(None, CONFIG)  # type: ignore[arg-type]


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
    prefix=st.sampled_from(["", "launch ", "launch x ", "x ", "my-exp "]),
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
    launch=st.booleans(),
    name=_NAMES,
    gpus=st.integers(0, 64),
    gpu_type=st.one_of(st.none(), st.sampled_from(list(CONFIG.gpu_catalog))),
    tenths_of_hours=st.integers(1, 1680),
    env=st.dictionaries(_ENV_KEYS, _ARG, max_size=4),
    command=st.lists(_ARG, min_size=1, max_size=6).filter(lambda args: args[0].strip()),
    equals=st.booleans(),
    data=st.data(),
)
def test_valid_inputs_round_trip(launch, name, gpus, gpu_type, tenths_of_hours, env, command, equals, data):
    hours = f"{tenths_of_hours // 10}.{tenths_of_hours % 10}"
    pairs = [("--gpus", str(gpus)), ("--hours", hours)]
    pairs += [("--env", f"{key}={value}") for key, value in env.items()]
    if gpu_type:
        pairs.append(("--gpu-type", gpu_type))
    pairs = data.draw(st.permutations(pairs))
    words = [f"{opt}={shlex.quote(val)}" if equals else f"{opt} {shlex.quote(val)}" for opt, val in pairs]
    text = ("launch " if launch else "") + " ".join([name, *words, "--", *map(shlex.quote, command)])

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
