"""POST /report under the real waitress server, driven over real HTTP; and train_toy.py reporting to it."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from adapters.db.engine import make_session_factory
from adapters.db.progress import SqlProgressStore
from bot.http_server import HttpServer, routes
from bot.report_endpoint import MAX_BODY, report_app
from core.progress import ProgressReport, attempt_token
from tests.fakes.clock import FakeClock
from tests.fakes.progress import FakeProgressStore
from tests.integration.conftest import Store

SECRET = "report-secret-for-tests"
REPO = Path(__file__).resolve().parents[2]
TOY = REPO / "examples" / "train_toy.py"


class Endpoint:
    """routes(slack, report) served by HttpServer on a free port, and an httpx client for it."""

    def __init__(self, store, slack=None, report: bool = True) -> None:
        self.store, self.clock = store, FakeClock()
        app = routes(slack, report_app(store, SECRET, self.clock) if report else None)
        self.server = HttpServer(app, "127.0.0.1", 0, threads=4).start()
        self.base = f"http://127.0.0.1:{self.server.port}"
        self.url = f"{self.base}/report"
        self.http = httpx.Client(timeout=10)

    def post(self, body: object, experiment_id: str = "exp1", attempt: int = 1, token: str | None = None,
             **kwargs) -> httpx.Response:
        """POST a report (a dict is sent as JSON), with the attempt's own token unless one is given."""
        token = attempt_token(SECRET, experiment_id, attempt) if token is None else token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        content = json.dumps(body).encode() if isinstance(body, dict) else body
        return self.http.post(self.url, content=content, headers=headers, **kwargs)

    def close(self) -> None:
        self.http.close()
        self.server.stop()


@pytest.fixture
def endpoint(sqlite_store: Store) -> Iterator[Endpoint]:
    """The endpoint storing into a migrated SQLite database."""
    ep = Endpoint(SqlProgressStore(make_session_factory(sqlite_store.engine)))
    yield ep
    ep.close()


def test_a_good_report_is_a_heartbeat_at_expbots_time(endpoint: Endpoint) -> None:
    response = endpoint.post({"experiment_id": "exp1", "attempt": 1, "step": 5})
    assert response.status_code == 204 and response.content == b""
    assert endpoint.store.heartbeats(endpoint.clock.now()) == {("exp1", 1): endpoint.clock.now()}


def test_reported_checkpoints_become_the_latest_checkpoint(endpoint: Endpoint) -> None:
    assert endpoint.post({"experiment_id": "exp1", "attempt": 1, "checkpoint": "/ck/ckpt-10.pt"}).status_code == 204
    assert endpoint.store.latest_checkpoint("exp1") == "/ck/ckpt-10.pt"
    endpoint.clock.advance(seconds=30)
    assert endpoint.post({"experiment_id": "exp1", "attempt": 2, "checkpoint": "/ck/ckpt-20.pt"},
                         attempt=2).status_code == 204
    endpoint.clock.advance(seconds=30)
    assert endpoint.post({"experiment_id": "exp1", "attempt": 2, "step": 25}, attempt=2).status_code == 204
    assert endpoint.store.latest_checkpoint("exp1") == "/ck/ckpt-20.pt"


@pytest.mark.parametrize(
    ("token", "words"),
    [
        ("", "missing 'Authorization: Bearer"),
        ("0" * 64, "not this attempt's"),
        (attempt_token(SECRET, "exp1", 2), "not this attempt's"),  # attempt 2's token for attempt 1
        (attempt_token(SECRET, "other", 1), "not this attempt's"),
        (attempt_token("another-secret", "exp1", 1), "not this attempt's"),
    ],
)
def test_a_missing_or_wrong_token_is_401_and_stores_nothing(endpoint: Endpoint, token: str, words: str) -> None:
    response = endpoint.post({"experiment_id": "exp1", "attempt": 1, "checkpoint": "/evil"}, token=token)
    assert response.status_code == 401 and words in response.text
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert endpoint.store.latest_checkpoint("exp1") is None and endpoint.store.heartbeats(endpoint.clock.now()) == {}


def test_other_authorization_schemes_are_401(endpoint: Endpoint) -> None:
    token = attempt_token(SECRET, "exp1", 1)
    response = endpoint.http.post(endpoint.url, content=b'{"experiment_id": "exp1", "attempt": 1}',
                                  headers={"Authorization": f"Basic {token}"})
    assert response.status_code == 401


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"{not json", "not JSON"),
        (b"[1]", "must be a JSON object"),
        ({"experiment_id": "exp1"}, "attempt is missing"),
        ({"experiment_id": "exp1", "attempt": 1, "step": -3}, "step must be an integer >= 0"),
        ({"experiment_id": "exp1", "attempt": 1, "checkpoint": "c" * 1025}, "checkpoint must be"),
    ],
)
def test_a_bad_body_is_400_saying_what_is_wrong(endpoint: Endpoint, body: object, words: str) -> None:
    response = endpoint.post(body)
    assert response.status_code == 400 and words in response.text
    assert response.headers["Content-Type"].startswith("text/plain") and "Traceback" not in response.text


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_other_methods_are_405(endpoint: Endpoint, method: str) -> None:
    response = endpoint.http.request(method, endpoint.url)
    assert response.status_code == 405 and response.headers["Allow"] == "POST"


def test_a_body_over_16_kib_is_413(endpoint: Endpoint) -> None:
    padding = "x" * MAX_BODY
    response = endpoint.post({"experiment_id": "exp1", "attempt": 1, "pad": padding})
    assert response.status_code == 413
    # Without a declared length (chunked), the limit holds too.
    chunks = iter([b'{"experiment_id": "exp1", "attempt": 1, "pad": "', padding.encode(), b'"}'])
    response = endpoint.post(chunks)
    assert response.status_code == 413
    assert endpoint.store.heartbeats(endpoint.clock.now()) == {}
    small = json.dumps({"experiment_id": "exp1", "attempt": 1, "pad": "x" * 1000}).encode()
    assert endpoint.post(iter([small[:10], small[10:]])).status_code == 204


def test_a_failing_store_is_500_with_an_error_id_and_no_stack_trace(caplog) -> None:
    class Broken(FakeProgressStore):
        def record(self, report: ProgressReport) -> None:
            raise RuntimeError("database on fire")

    ep = Endpoint(Broken())
    try:
        with caplog.at_level(logging.ERROR, logger="bot.report_endpoint"):
            response = ep.post({"experiment_id": "exp1", "attempt": 1})
    finally:
        ep.close()
    assert response.status_code == 500 and response.text.startswith("internal error (id ")
    assert "fire" not in response.text and "Traceback" not in response.text
    error_id = response.text.split("id ", 1)[1].split(")")[0]
    assert any(error_id in r.getMessage() and r.exc_info for r in caplog.records)


def test_probes_and_slack_keep_working_beside_reports() -> None:
    def slack(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"slack " + environ["PATH_INFO"].encode()]

    ep = Endpoint(FakeProgressStore(), slack=slack)
    try:
        assert ep.http.get(f"{ep.base}/healthz").text == "ok"
        assert ep.http.get(f"{ep.base}/readyz").text == "ok"
        assert ep.http.post(f"{ep.base}/slack/events", content=b"x").text == "slack /slack/events"
        assert ep.post({"experiment_id": "exp1", "attempt": 1}).status_code == 204
    finally:
        ep.close()


def test_without_a_report_app_report_is_not_served() -> None:
    ep = Endpoint(FakeProgressStore(), report=False)
    try:
        assert ep.post({"experiment_id": "exp1", "attempt": 1}).status_code == 404
        assert ep.http.get(f"{ep.base}/healthz").text == "ok"
    finally:
        ep.close()


def test_an_empty_secret_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="secret"):
        report_app(FakeProgressStore(), "", FakeClock())


# --- examples/train_toy.py reporting to the endpoint ---------------------------------------------
def run_toy(endpoint: Endpoint, tmp_path: Path, attempt: int, *args: str, resume: str = "",
            token: str | None = None, url: str | None = None) -> subprocess.CompletedProcess:
    env = os.environ | {
        "EXPBOT_EXPERIMENT_ID": "toy1", "EXPBOT_ATTEMPT": str(attempt),
        "EXPBOT_CHECKPOINT_DIR": str(tmp_path / "ck"), "EXPBOT_RESUME_FROM": resume,
        "EXPBOT_REPORT_URL": url or endpoint.url,
        "EXPBOT_REPORT_TOKEN": attempt_token(SECRET, "toy1", attempt) if token is None else token,
        "EXPBOT_HEARTBEAT_SECONDS": "0.05",
    }
    env.pop("EXPBOT_HEARTBEAT_FILE", None)
    return subprocess.run([sys.executable, str(TOY), "--step-seconds", "0.01", *args], env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.slow
def test_train_toy_reports_its_checkpoints_and_resumes_from_the_reported_one(tmp_path: Path) -> None:
    store = FakeProgressStore()
    endpoint = Endpoint(store)
    try:
        first = run_toy(endpoint, tmp_path, 1, "--steps", "50", "--fail-at-step", "35")
        assert first.returncode == 1, first.stderr
        checkpoints = [r.checkpoint for r in store.reports if r.checkpoint]
        assert checkpoints == [str(tmp_path / "ck" / f"ckpt-{s:06d}.json") for s in (10, 20, 30)]
        assert len(store.reports) > len(checkpoints)  # heartbeats in between
        assert all(r.experiment_id == "toy1" and r.attempt == 1 for r in store.reports)
        resume = store.latest_checkpoint("toy1")
        assert resume == checkpoints[-1]

        second = run_toy(endpoint, tmp_path, 2, "--steps", "50", resume=resume)
        assert second.returncode == 0 and "resumed from step 30" in second.stdout, second.stderr
        assert store.latest_checkpoint("toy1") == str(tmp_path / "ck" / "ckpt-000050.json")
        assert set(store.heartbeats(endpoint.clock.now())) == {("toy1", 1), ("toy1", 2)}
        uninterrupted = run_toy(endpoint, tmp_path / "fresh", 1, "--steps", "50")
        assert second.stdout.splitlines()[-1] == uninterrupted.stdout.splitlines()[-1]
        assert "progress report" not in second.stderr + first.stderr
    finally:
        endpoint.close()


@pytest.mark.slow
def test_train_toy_keeps_training_when_reports_fail(tmp_path: Path) -> None:
    store = FakeProgressStore()
    endpoint = Endpoint(store)
    try:
        refused = run_toy(endpoint, tmp_path, 1, "--steps", "20", token="wrong")
        assert refused.returncode == 0 and "final step 20" in refused.stdout
        assert "progress report refused: HTTP 401" in refused.stderr and "not this attempt's" in refused.stderr
        assert store.reports == []
        down = run_toy(endpoint, tmp_path / "down", 1, "--steps", "20", url="http://127.0.0.1:9/report")
        assert down.returncode == 0 and "final step 20" in down.stdout
        assert "progress report failed" in down.stderr
    finally:
        endpoint.close()
