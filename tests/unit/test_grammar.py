"""The launch grammar: defaults, every option, quoting and sweeps."""
from __future__ import annotations

from datetime import timedelta

import pytest

from core.grammar import USAGE, parse_launch
from core.spec import MAX_NAME_LENGTH, GpuType, LaunchConfig
from tests.unit.grammar_helpers import ALL_OPTIONS, CONFIG, error, one

# ---------------------------------------------------------------- defaults and shape


def test_defaults_come_from_the_config():
    spec = one("train-bert -- python train.py")
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


@pytest.mark.parametrize("prefix", ["", "  ", "\t"])
def test_leading_blanks_are_ignored(prefix):
    assert one(prefix + "exp-1 --gpus 1 -- echo hi").name == "exp-1"


def test_an_experiment_may_be_called_launch():
    # `/experiment launch launch -- echo` and `expbot launch launch -- echo` both arrive as this.
    assert one("launch -- echo").name == "launch"
    assert one("launch --gpus 1 -- echo").name == "launch"


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
        ("--max-runtime 1m", timedelta(minutes=1)),
        ("--max-runtime 1.5h", timedelta(minutes=90)),
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
    assert one("x --stall-timeout 2h -- run").stall_timeout == timedelta(hours=2)


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
        "tune --gpus 1 --env SEED=0 --sweep lr=0.1,0.01 --sweep bs=32,64,128 "
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
