"""/metrics of a real `expbot serve`, scraped by a real Prometheus, read through the Grafana dashboard.

One `serve` (Slack over HTTP against the local Web API, the local runner with 2 GPUs, priced GPU
types and project budgets) runs a few experiments: one launched by a signed slash command, one that
fails once and is restarted, one that just succeeds; Slack answers 429 more often than the client
retries. Then: /metrics parses with prometheus_client's parser and follows the naming conventions;
every query of every dashboard panel returns data in Prometheus; and the spend the dashboard shows
for today is the digest's figure for today.
"""
from __future__ import annotations

import json
import math
import socket
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.cli_harness import Expbot, wait_for
from tests.integration.prometheus import PrometheusServer, scraping
from tests.integration.slack_harness import SIGNING_SECRET, sign
from tests.slack.fake_slack_api import FakeSlackApi

pytestmark = pytest.mark.slow

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "expbot-dashboard.json"
CHANNEL = "C0LAUNCH"
CONFIG = """
[launch]
projects = ["nlp", "vision"]
default_project = "nlp"
[gpu_types.a100]
price_per_hour = 2.5
[gpu_types.h100]
price_per_hour = 4.0
[budgets]
timezone = "UTC"
projects = { nlp = 1000.0, vision = 500.0 }
"""
# Fails its first attempt (exit 1: a user error), succeeds on the restart.
FLAKY = "import os, sys, time; time.sleep(1); sys.exit(1 if os.environ['EXPBOT_ATTEMPT'] == '1' else 0)"
SLEEP = "import time; time.sleep(1.5)"
# Grafana's own variables, as Grafana would fill them in for a short time range.
GRAFANA_VARS = {"$__rate_interval": "10m", "$__interval": "1m", "$__range": "1h"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _slash(base: str, slack_api: FakeSlackApi, text: str) -> httpx.Response:
    """`/experiment {text}` from UOWNER, signed as Slack signs it."""
    form = urlencode({
        "token": "deprecated", "team_id": "T000FAKE", "team_domain": "lab", "channel_id": CHANNEL,
        "channel_name": "ml-runs", "user_id": "UOWNER", "user_name": "owner", "command": "/experiment",
        "text": text, "api_app_id": "A0EXPBOT", "is_enterprise_install": "false",
        "response_url": slack_api.new_response_url(channel=CHANNEL), "trigger_id": slack_api.new_trigger_id(),
    })
    ts = str(int(time.time()))
    return httpx.post(f"{base}/slack/events", content=form.encode(), timeout=10, headers={
        "Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": sign(form, ts)})


class Served:
    """The installation, its serve's base URL and the Prometheus scraping it."""

    def __init__(self, expbot: Expbot, base: str, prometheus: PrometheusServer) -> None:
        self.expbot, self.base, self.prometheus = expbot, base, prometheus

    def query(self, expr: str) -> list[dict]:
        """An instant query's result vector."""
        reply = httpx.get(f"{self.prometheus.url}/api/v1/query", params={"query": expr}, timeout=10).json()
        assert reply["status"] == "success", f"{expr}: {reply}"
        return reply["data"]["result"]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """serve with Slack, after three experiments ended, once Prometheus has scraped their last figures."""
    root = tmp_path_factory.mktemp("metrics")
    (root / "expbot.toml").write_text(CONFIG)
    port = _free_port()
    with FakeSlackApi(bot_token="xoxb-metrics-test") as slack_api:
        expbot = Expbot(root / "data", EXPBOT_CONFIG_FILE=str(root / "expbot.toml"), EXPBOT_LOCAL_GPUS="2",
                        EXPBOT_HTTP_HOST="127.0.0.1", EXPBOT_HTTP_PORT=str(port),
                        EXPBOT_SLACK_BOT_TOKEN=slack_api.bot_token, EXPBOT_SLACK_SIGNING_SECRET=SIGNING_SECRET,
                        EXPBOT_SLACK_API_URL=slack_api.base_url, EXPBOT_SLACK_DEFAULT_CHANNEL=CHANNEL)
        base = f"http://127.0.0.1:{port}"
        expbot.serve()
        try:
            wait_for(lambda: _get(f"{base}/readyz") == 200, timeout=60, what="serve's /readyz")
            with scraping({"expbot": f"127.0.0.1:{port}"}) as prometheus:
                served = Served(expbot, base, prometheus)
                _run_experiments(served, slack_api)
                yield served
        finally:
            expbot.kill_serve()


def _get(url: str) -> int | None:
    try:
        return httpx.get(url, timeout=5).status_code
    except httpx.HTTPError:
        return None


def _run_experiments(served: Served, slack_api: FakeSlackApi) -> None:
    expbot = served.expbot
    # Everything below happens after Prometheus's first scrape, so that rate() and increase() see it.
    wait_for(lambda: _scalar(served, 'up{job="expbot"}') == 1, timeout=60, what="Prometheus to scrape serve")
    # More 429s than the client's 3 retries: one call gives up (an error), four 429s are counted.
    slack_api.rate_limit("chat.postMessage", times=4, retry_after=0)
    assert _slash(served.base, slack_api, f"launch viz --project vision --gpus 1 --gpu-type a100 -- "
                  f"{sys.executable} -c '{SLEEP}'").status_code == 200
    expbot.cli("launch", "flaky", "--project", "nlp", "--gpus", "1", "--gpu-type", "h100", "--max-restarts", "2",
               "--", sys.executable, "-c", FLAKY)
    expbot.cli("launch", "steady", "--project", "nlp", "--gpus", "2", "--gpu-type", "a100",
               "--", sys.executable, "-c", SLEEP)
    names = ("viz", "flaky", "steady")
    wait_for(lambda: all(_state(expbot, n) == "SUCCEEDED" for n in names), timeout=120,
             what="the three experiments to succeed")
    # Prometheus has the final figures once it scraped all four attempts' ends and the leader.
    wait_for(lambda: _scalar(served, "sum(expbot_attempts_ended_total)") == 4, timeout=60,
             what="Prometheus to scrape the last attempts")


def _state(expbot: Expbot, name: str) -> str | None:
    done = expbot.cli("status", name, "--json", check=False)
    return json.loads(done.stdout)["state"] if done.returncode == 0 else None


def _scalar(served: Served, expr: str) -> float | None:
    result = served.query(expr)
    return float(result[0]["value"][1]) if result else None


def _panels() -> list[dict]:
    return json.loads(DASHBOARD.read_text())["panels"]


def _expr(target: dict) -> str:
    expr = target["expr"]
    for name, value in GRAFANA_VARS.items():
        expr = expr.replace(name, value)
    return expr


# --- /metrics itself ------------------------------------------------------------------------------
def test_metrics_parse_and_follow_the_naming_conventions(served):
    text = httpx.get(f"{served.base}/metrics", timeout=10).text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    expected = {
        "expbot_experiments": "gauge", "expbot_attempts_started": "counter", "expbot_attempts_ended": "counter",
        "expbot_restarts": "counter", "expbot_supervision_latency_seconds": "histogram",
        "expbot_launch_to_running_seconds": "histogram", "expbot_slack_api_calls": "counter",
        "expbot_slack_rate_limited": "counter", "expbot_slack_ack_seconds": "histogram",
        "expbot_outbox_backlog": "gauge", "expbot_outbox_oldest_age_seconds": "gauge", "expbot_leader": "gauge",
        "expbot_leadership_changes": "counter", "expbot_spend": "counter", "expbot_gpu_hours": "counter",
        "expbot_budget_used_ratio": "gauge", "expbot_idle_gpu_hours": "counter", "expbot_approvals_pending": "gauge",
    }
    assert {name: families[name].type for name in expected if name in families} == expected
    ids = {json.loads(served.expbot.cli("status", n, "--json").stdout)["id"] for n in ("viz", "flaky", "steady")}
    for family in families.values():
        assert family.name.startswith("expbot_"), family.name
        for sample in family.samples:
            if family.type == "counter":
                assert sample.name.endswith(("_total", "_created")), sample.name
            # Bounded labels only: no experiment id or name (user text) is ever a label value.
            assert not (set(sample.labels.values()) & (ids | {"viz", "flaky", "steady"})), sample
    for family in families.values():
        if family.type == "histogram":
            assert family.name.endswith("_seconds"), family.name
    spend = {(s.labels["project"], s.labels["gpu_type"]) for s in families["expbot_spend"].samples
             if s.name == "expbot_spend_total"}
    assert spend == {("vision", "a100"), ("nlp", "h100"), ("nlp", "a100")}
    rate_limited = sum(s.value for s in families["expbot_slack_rate_limited"].samples if s.name.endswith("_total"))
    assert rate_limited >= 4
    assert any(s.labels.get("outcome") == "error" for s in families["expbot_slack_api_calls"].samples)
    restarts = {s.labels["budget"]: s.value for s in families["expbot_restarts"].samples if s.name.endswith("_total")}
    assert restarts["user"] == 1
    acks = next(s.value for s in families["expbot_slack_ack_seconds"].samples if s.name.endswith("_count"))
    assert acks >= 1


# --- the dashboard in Prometheus -----------------------------------------------------------------
def test_the_dashboard_imports_as_is_with_a_prometheus_datasource_variable():
    dashboard = json.loads(DASHBOARD.read_text())
    [variable] = [v for v in dashboard["templating"]["list"] if v["type"] == "datasource"]
    assert variable["query"] == "prometheus"
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${" + variable["name"] + "}"
        assert panel["targets"] and all(t["datasource"]["uid"] == "${" + variable["name"] + "}" for t in panel["targets"])
    titles = {p["title"] for p in dashboard["panels"]}
    assert {"Spend per day by project", "Month to date against budget", "GPU-hours per day by GPU type",
            "Idle GPU waste per day", "Successful experiments per week", "Restarts by cause", "Queue length and wait",
            "Supervision latency p50/p99", "Slack errors"} <= titles


@pytest.mark.parametrize("panel", _panels(), ids=lambda p: p["title"])
def test_every_panel_query_returns_data(served, panel):
    for target in panel["targets"]:
        expr = _expr(target)
        values = [float(r["value"][1]) for r in served.query(expr)]
        assert any(math.isfinite(v) for v in values), f"{panel['title']} {target['refId']}: no data from {expr}"


def test_the_spend_shown_for_today_is_the_digests_figure(served):
    [spend_panel] = [p for p in _panels() if p["title"] == "Spend per day by project"]
    shown = {r["metric"]["project"]: float(r["value"][1]) for r in served.query(_expr(spend_panel["targets"][0]))}
    today = datetime.now(timezone.utc).date().isoformat()
    digest = json.loads(served.expbot.cli("digest", "--date", today, "--json").stdout)
    figures = {line["key"]: line["cost"] for line in digest["projects"]}
    assert set(shown) == set(figures) == {"nlp", "vision"}
    for project, cost in figures.items():
        assert cost > 0
        assert shown[project] == pytest.approx(cost, rel=1e-9), project
    # The GPU-hours panel agrees with the digest's GPU-hours too.
    [hours_panel] = [p for p in _panels() if p["title"] == "GPU-hours per day by GPU type"]
    hours = sum(float(r["value"][1]) for r in served.query(_expr(hours_panel["targets"][0])))
    assert hours == pytest.approx(sum(line["gpu_hours"] for line in digest["projects"]), rel=1e-9)
