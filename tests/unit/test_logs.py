"""serve's log formats: JSON lines that carry what they are about, and APScheduler's chatter at DEBUG."""
from __future__ import annotations

import io
import json
import logging

import pytest

from bot.logs import configure_logging
from core.log_context import bound


@pytest.fixture
def configured():
    """Configure the root logger into a buffer; restore the previous handlers afterwards."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    sink = io.StringIO()

    def configure(level: str = "INFO", fmt: str = "text") -> io.StringIO:
        configure_logging(level, fmt, stream=sink)
        return sink

    yield configure
    root.handlers[:], root.level = saved


def lines(sink: io.StringIO) -> list[str]:
    return sink.getvalue().splitlines()


def test_json_lines_carry_time_level_logger_message_and_what_they_are_about(configured):
    sink = configured(fmt="json")
    log = logging.getLogger("expbot.test")
    with bound(experiment="toy", experiment_id="abc123"):
        log.info("attempt %d started", 2, extra={"attempt": 2})
    log.warning("no context here")
    first, second = (json.loads(line) for line in lines(sink))
    assert first["message"] == "attempt 2 started" and first["level"] == "INFO" and first["logger"] == "expbot.test"
    assert (first["experiment"], first["experiment_id"], first["attempt"]) == ("toy", "abc123", 2)
    assert first["time"].endswith("+00:00") and "T" in first["time"]
    assert second["level"] == "WARNING" and "experiment" not in second and "attempt" not in second


def test_a_traceback_stays_inside_its_one_json_line(configured):
    sink = configured(fmt="json")
    try:
        raise RuntimeError("boom\nsecond line")
    except RuntimeError:
        logging.getLogger("expbot.test").exception("error %s failed", "e1", extra={"error_id": "e1"})
    (line,) = lines(sink)
    entry = json.loads(line)
    assert entry["error_id"] == "e1" and "RuntimeError: boom" in entry["exception"]


def test_the_context_ends_with_its_block(configured):
    sink = configured(fmt="json")
    with bound(experiment="inner", attempt=None):
        pass
    logging.getLogger("expbot.test").info("after")
    assert "experiment" not in json.loads(lines(sink)[0])
    with pytest.raises(ValueError, match="unknown log context field"):
        with bound(user="ana"):
            pass


def test_text_stays_the_readable_default(configured):
    sink = configured()
    logging.getLogger("expbot.test").info("attempt 1 started")
    (line,) = lines(sink)
    assert line.endswith(" INFO expbot.test: attempt 1 started") and not line.startswith("{")


@pytest.mark.parametrize("level, shown", [("INFO", False), ("DEBUG", True)])
def test_apscheduler_per_run_lines_show_only_at_debug(configured, level, shown):
    sink = configured(level)
    logging.getLogger("apscheduler.executors.default").info('Running job "check_idle" (scheduled at now)')
    logging.getLogger("apscheduler.executors.default").warning('Run time of job "digest" was missed by 0:01:00')
    logging.getLogger("expbot.serve").info("expbot serving")
    text = sink.getvalue()
    assert ("DEBUG apscheduler.executors.default: Running job" in text) is shown
    assert "WARNING apscheduler.executors.default: Run time of job" in text  # problems stay visible
    assert "INFO expbot.serve: expbot serving" in text


def test_what_the_supervisor_logs_about_an_experiment_names_it(configured, world, monkeypatch):
    sink = configured(fmt="json")
    world.launch("named -- python train.py")
    world.supervisor.reconcile_once()
    exp = world.get("named")
    world.backend.run(exp.id, 1)

    def status(experiment_id, attempt):
        logging.getLogger("adapters.test").warning("cannot read the status of attempt %d", attempt)
        raise RuntimeError("the cluster is confused")

    monkeypatch.setattr(world.backend, "status", status)
    world.supervisor.reconcile_once()  # the needs-work look fails
    world.supervisor.reconcile_ids({exp.id})  # a pass over just it fails too
    entries = [json.loads(line) for line in lines(sink)]
    told = [e for e in entries if e["logger"] == "adapters.test"]
    failed = [e for e in entries if e["message"] == f"supervising experiment {exp.id} failed"]
    assert len(told) == 2 and all(e["experiment_id"] == exp.id for e in told), entries
    assert len(failed) == 2 and all(e["experiment_id"] == exp.id and "RuntimeError" in e["exception"] for e in failed)
