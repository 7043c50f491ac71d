"""Per-attempt report tokens and the parsing of report bodies."""
from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime, timezone

import pytest

from core.errors import SpecError
from core.progress import ProgressReport, attempt_token, parse_report, token_matches

AT = datetime(2026, 11, 22, 9, 0, tzinfo=timezone.utc)
SECRET = "s3cret"


def test_the_token_is_the_hex_hmac_of_experiment_and_attempt() -> None:
    expected = hmac.new(b"s3cret", b"abc123/2", hashlib.sha256).hexdigest()
    assert attempt_token(SECRET, "abc123", 2) == expected


def test_a_token_matches_only_its_own_attempt_and_secret() -> None:
    token = attempt_token(SECRET, "abc123", 2)
    assert token_matches(SECRET, "abc123", 2, token)
    assert not token_matches(SECRET, "abc123", 3, token)
    assert not token_matches(SECRET, "abc12", 2, token)
    assert not token_matches("other", "abc123", 2, token)
    assert not token_matches(SECRET, "abc123", 2, token.upper())


@pytest.mark.parametrize("token", ["", "é" * 64, "\udcff", None, 42])
def test_odd_tokens_are_refused_not_raised(token) -> None:
    assert not token_matches(SECRET, "abc123", 2, token)


def body(**fields: object) -> bytes:
    return json.dumps(fields).encode()


def test_a_full_report_parses() -> None:
    report = parse_report(body(experiment_id="abc123", attempt=2, checkpoint="/ck/ckpt-10.json", step=10), AT)
    assert report == ProgressReport("abc123", 2, AT, checkpoint="/ck/ckpt-10.json", step=10)


def test_a_heartbeat_needs_only_experiment_and_attempt_and_extra_fields_are_ignored() -> None:
    report = parse_report(body(experiment_id="abc123", attempt=1, loss=0.5, checkpoint=None), AT)
    assert report == ProgressReport("abc123", 1, AT)


@pytest.mark.parametrize(
    ("raw", "option", "words"),
    [
        (b"not json", None, "not JSON"),
        (b"\xff\xfe\x00", None, "not JSON"),
        (b"", None, "not JSON"),
        (b"[" * 100_000, None, "not JSON"),
        (b'[1, 2]', None, "JSON object, not an array"),
        (b'"x"', None, "JSON object, not a string"),
        (body(attempt=1), "experiment_id", "experiment_id is missing"),
        (body(experiment_id="", attempt=1), "experiment_id", "1 to 64"),
        (body(experiment_id="x" * 65, attempt=1), "experiment_id", "65 characters"),
        (body(experiment_id=12, attempt=1), "experiment_id", "got 12"),
        (body(experiment_id="a\x00b", attempt=1), "experiment_id", "printable"),
        (body(experiment_id="abc"), "attempt", "attempt is missing"),
        (body(experiment_id="abc", attempt=0), "attempt", "got 0"),
        (body(experiment_id="abc", attempt="1"), "attempt", "got a string"),
        (body(experiment_id="abc", attempt=True), "attempt", "got a boolean"),
        (body(experiment_id="abc", attempt=1.5), "attempt", "got 1.5"),
        (body(experiment_id="abc", attempt=2**31), "attempt", "from 1 to"),
        (body(experiment_id="abc", attempt=1, checkpoint=""), "checkpoint", "1 to 1024"),
        (body(experiment_id="abc", attempt=1, checkpoint="c" * 1025), "checkpoint", "1025 characters"),
        (body(experiment_id="abc", attempt=1, checkpoint=["a"]), "checkpoint", "got an array"),
        (body(experiment_id="abc", attempt=1, step=-1), "step", "got -1"),
        (body(experiment_id="abc", attempt=1, step="10"), "step", "got a string"),
        (b'{"experiment_id": "abc", "attempt": 1, "step": ' + b"9" * 5000 + b"}", None, "not JSON"),
    ],
)
def test_bad_bodies_say_what_is_wrong(raw: bytes, option: str | None, words: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_report(raw, AT)
    assert words in str(caught.value)
    assert caught.value.option == option


def test_the_limits_themselves_are_allowed() -> None:
    report = parse_report(body(experiment_id="x" * 64, attempt=2**31 - 1, checkpoint="c" * 1024, step=0), AT)
    assert report.attempt == 2**31 - 1 and report.step == 0 and len(report.checkpoint) == 1024
