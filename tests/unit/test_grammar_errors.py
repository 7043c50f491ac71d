"""The launch grammar: every bad input gets one specific message."""
from __future__ import annotations

from datetime import timedelta

import pytest

from core.errors import SpecError
from core.grammar import parse_launch
from core.spec import LaunchConfig
from tests.unit.grammar_helpers import CONFIG, error, one

# ---------------------------------------------------------------- errors

ERRORS = [
    # text, option, words the message must contain
    ("", "name", ["missing", "name"]),
    ("   ", "name", ["missing", "name"]),
    ("-- python", "name", ["missing", "name", "before '--'"]),
    ("--gpus 2 -- x", "name", ["missing", "name", "--gpus"]),
    (
        "Train_BERT -- x",
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
    # A bare number meant hours, and repeated units added up: both were silent surprises.
    ("x --max-runtime 90 -- y", "--max-runtime", ["'90'", "add a unit: 90m or 90h"]),
    ("x --max-runtime 1.5 -- y", "--max-runtime", ["add a unit: 1.5m or 1.5h"]),
    ("x --max-runtime 1h1h -- y", "--max-runtime", ["'1h1h'", "each unit once"]),
    ("x --max-runtime 30m1h -- y", "--max-runtime", ["'30m1h'", "each unit once"]),
    ("x --max-runtime 30s -- y", "--max-runtime", ["at least 1m", "'30s'"]),
    ("x --max-runtime 59s -- y", "--max-runtime", ["at least 1m"]),
    ("x --hours 0.01 -- y", "--hours", ["at least 1m", "'0.01'"]),
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
    ("x --stall-timeout 0s -- y", "--stall-timeout", ["more than 0"]),
    ("x --stall-timeout 2 -- y", "--stall-timeout", ["add a unit: 2m or 2h"]),
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
