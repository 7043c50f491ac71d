"""serve's in-memory metrics and the liveness rule, without I/O."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from bot.telemetry.probes import Liveness
from bot.telemetry.process import Telemetry

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=timezone.utc)


def _samples(telemetry: Telemetry) -> dict[tuple[str, tuple], float]:
    text = generate_latest(telemetry.registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(text) for s in f.samples}


def test_leading_sets_the_gauge_and_counts_each_change_once():
    telemetry = Telemetry()
    telemetry.leading(True)
    telemetry.leading(True)  # already leading: no change
    assert _samples(telemetry)[("expbot_leader", ())] == 1
    telemetry.leading(False)
    samples = _samples(telemetry)
    assert samples[("expbot_leader", ())] == 0
    assert samples[("expbot_leadership_changes_total", ())] == 2


def test_slack_calls_by_method_and_outcome_and_429s_apart():
    telemetry = Telemetry()
    for outcome in ("ok", "ok", "error", "rate_limited"):
        telemetry.slack_call("chat.postMessage", outcome)
    samples = _samples(telemetry)
    assert samples[("expbot_slack_api_calls_total", (("method", "chat.postMessage"), ("outcome", "ok")))] == 2
    assert samples[("expbot_slack_api_calls_total", (("method", "chat.postMessage"), ("outcome", "error")))] == 1
    assert samples[("expbot_slack_rate_limited_total", (("method", "chat.postMessage"),))] == 1
    assert ("expbot_slack_api_calls_total", (("method", "chat.postMessage"), ("outcome", "rate_limited"))) not in samples


def test_watch_relists_are_read_at_scrape_time():
    telemetry = Telemetry()
    counts = {"pods": 1}
    telemetry.count_relists(lambda: dict(counts))
    assert _samples(telemetry)[("expbot_watch_relists_total", (("resource", "pods"),))] == 1
    counts["pods"] = 3
    assert _samples(telemetry)[("expbot_watch_relists_total", (("resource", "pods"),))] == 3


class _Leading:
    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds

    def leading_for(self) -> float | None:
        return self.seconds


def _live(leading: float | None, last_pass: datetime | None, now: datetime) -> str | None:
    return Liveness(_Leading(leading), lambda: last_pass, lambda: now, resync_seconds=30)()  # type: ignore[arg-type]


def test_a_follower_and_a_new_leader_are_live():
    assert _live(None, None, T0) is None
    assert _live(60, None, T0) is None  # leading for less than 3 resync intervals: its first passes may still run


def test_a_leader_whose_supervisor_stopped_passing_is_not_live():
    assert _live(3600, T0, T0 + timedelta(seconds=89)) is None
    problem = _live(3600, T0, T0 + timedelta(seconds=91))
    assert problem is not None and "91s" in problem and "3 resync intervals" in problem
    assert _live(3600, None, T0) is not None  # never completed a pass in an hour of leading


def _event(cls, name="e1", minutes=0.0, **fields):
    from core import events

    return getattr(events, cls)(experiment_id=name, experiment_name=name, occurred_at=T0 + timedelta(minutes=minutes),
                                **fields)


def _histogram(telemetry: Telemetry, name: str) -> tuple[float, float]:
    samples = _samples(telemetry)
    return samples[(f"{name}_count", ())], samples[(f"{name}_sum", ())]


def test_latencies_come_from_the_events_times_each_event_once():
    telemetry = Telemetry()
    launched = _event("ExperimentLaunched", owner="ana", project="nlp", gpus=1, gpu_type="a100")
    running = _event("AttemptRunning", minutes=2, attempt=1)
    failed = _event("AttemptEnded", minutes=10, attempt=1, exit_code=1, reason="exit 1", failure_class="user")
    restarted = _event("AttemptStarted", minutes=10.5, attempt=2)
    for event in (launched, running, running, failed, restarted, restarted):  # redeliveries count once
        telemetry.latencies.observe(event)
    assert _histogram(telemetry, "expbot_launch_to_running_seconds") == (1, 120.0)
    assert _histogram(telemetry, "expbot_supervision_latency_seconds") == (1, 30.0)
    # A later attempt running is not a launch's first; a success is no failure to restart from.
    telemetry.latencies.observe(_event("AttemptRunning", minutes=11, attempt=2))
    telemetry.latencies.observe(_event("AttemptEnded", minutes=20, attempt=2, exit_code=0, reason="ok", failure_class="none"))
    telemetry.latencies.observe(_event("AttemptStarted", minutes=21, attempt=3))
    assert _histogram(telemetry, "expbot_launch_to_running_seconds") == (1, 120.0)
    assert _histogram(telemetry, "expbot_supervision_latency_seconds") == (1, 30.0)


def test_an_experiment_that_ends_is_forgotten():
    telemetry = Telemetry()
    telemetry.latencies.observe(_event("ExperimentLaunched", owner="ana", project="nlp", gpus=1, gpu_type=None))
    telemetry.latencies.observe(_event("ExperimentStopped", minutes=1, by="ana", reason="not needed"))
    assert telemetry.latencies._launched == {}  # noqa: SLF001  (what would otherwise grow without bound)
