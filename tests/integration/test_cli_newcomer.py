"""The CLI as a newcomer and a script meet it: fast reads that never migrate, logs that follow
restarts, durations with units, and output a script can read (tables that do not wrap, --json)."""
from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import pytest

from tests.integration.cli_harness import EXPBOT, REPO, Expbot, wait_for


@pytest.fixture
def expbot(tmp_path):
    bot = Expbot(tmp_path / "data")
    yield bot
    bot.kill_serve()


def one_clear_error(run) -> str:
    assert run.returncode == 2, run
    assert run.stderr.startswith("error: ") and run.stderr.count("\n") == 1 and "Traceback" not in run.stderr
    return run.stderr


# --- 1. read commands import only what they use, and never migrate ---------------------------------
_LOADED = """
import sys
sys.argv = ["expbot", *sys.argv[1:]]
from bot.cli import main
try:
    main()
except SystemExit:
    pass
heavy = sorted(m for m in ("alembic", "apscheduler", "bot.bootstrap", "core.supervisor", "matplotlib")
               if m in sys.modules)
print("HEAVY:", ",".join(heavy))
"""


@pytest.mark.parametrize("args", [("--help",), ("ls",), ("ls", "--all", "--json"), ("status", "reader")])
def test_read_commands_load_neither_alembic_nor_the_wiring(expbot, args):
    expbot.cli("launch", "reader", "--", "python", "-c", "pass")
    done = subprocess.run([sys.executable, "-c", _LOADED, *args], cwd=REPO, env=expbot.env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "HEAVY:", done.stdout


def test_read_commands_never_migrate_and_name_a_schema_that_is_behind(expbot):
    expbot.cli("db", "upgrade", "0006")  # an older expbot's schema
    for args in (("ls",), ("ls", "--all"), ("status", "anything"), ("logs", "anything")):
        said = one_clear_error(expbot.cli(*args, check=False))
        assert "revision 0006" in said and "expbot db upgrade" in said
    assert "database at revision 0006" in expbot.cli("db", "upgrade", "0006").stdout  # still behind: untouched
    expbot.cli("db", "upgrade")
    assert "no experiments" in expbot.cli("ls").stdout


def test_a_fresh_install_reads_as_empty_and_read_commands_create_nothing(expbot):
    assert "no experiments" in expbot.cli("ls").stdout  # before any serve or launch: not an error
    said = one_clear_error(expbot.cli("status", "nothing-yet", check=False))
    assert "no experiment named 'nothing-yet'" in said
    db = expbot.data_dir / "expbot.db"
    tables = sqlite3.connect(db).execute("SELECT name FROM sqlite_master").fetchall() if db.exists() else []
    assert tables == []  # read commands never create or upgrade the schema


# --- 7. durations need units -----------------------------------------------------------------------
@pytest.mark.parametrize("option, value, says", [
    ("--max-runtime", "90", "add a unit: 90m or 90h"),
    ("--max-runtime", "1h1h", "each unit once"),
    ("--max-runtime", "30s", "at least 1m"),
    ("--hours", "0.01", "at least 1m"),
    ("--stall-timeout", "2", "add a unit: 2m or 2h"),
])
def test_durations_without_a_unit_or_under_a_minute_are_refused_in_one_line(expbot, option, value, says):
    said = one_clear_error(expbot.cli("launch", "dur", option, value, "--", "true", check=False))
    assert says in said and option in said
    assert "no experiments" in expbot.cli("ls", "--all").stdout


def test_hours_stay_a_number_of_hours(expbot):
    expbot.cli("launch", "hours", "--hours", "1.5", "--", "true")
    assert expbot.status("hours")["max_runtime_seconds"] == 5400


# --- 8. output for scripts -------------------------------------------------------------------------
def test_piped_tables_keep_every_row_on_one_line(expbot):
    name = "a-rather-long-experiment-name-for-tables"  # 40 characters: the longest allowed
    expbot.cli("launch", name, "--project", "computer-vision-research", "--", "true")
    expbot.cli("stop", name, "--no-wait", "--reason", "superseded by a better learning-rate schedule")
    listing = expbot.cli("ls", "--all").stdout
    row = next(line for line in listing.splitlines() if name in line)
    assert "STOPPING" in row or "STOPPED" in row, listing
    assert "computer-vision-research" in row and "superseded by a better learning-rate schedule" in row, listing


@pytest.mark.parametrize("args, key", [(("cost", "--days", "3"), "by_project"), (("budget",), None),
                                       (("digest",), "yesterday_total")])
def test_cost_budget_and_digest_speak_json(expbot, args, key):
    data = json.loads(expbot.cli(*args, "--json").stdout)
    assert (key in data) if key else data == []


# --- 2. logs --follow follows the experiment through its restarts ----------------------------------
_CRASHES_ONCE = """
import os, pathlib, time
attempt = int(os.environ["EXPBOT_ATTEMPT"])
print(f"attempt {attempt} says hello", flush=True)
if attempt == 1:
    go = pathlib.Path(os.environ["GO_FILE"])
    while not go.exists():  # the test lets it crash once the follower is following it
        time.sleep(0.05)
    ckpt = pathlib.Path(os.environ["EXPBOT_CHECKPOINT_DIR"]) / "ckpt-000080.json"
    ckpt.write_text("{}")
    print("step 80: checkpoint written, now crashing", flush=True)
    raise SystemExit(1)
print("resumed from", os.path.basename(os.environ["EXPBOT_RESUME_FROM"]), flush=True)
"""


@pytest.mark.slow
def test_logs_follow_goes_on_through_a_restart_until_the_experiment_ends(expbot):
    go = expbot.data_dir.parent / "go"
    expbot.serve()
    expbot.cli("launch", "phoenix", "--max-restarts", "1", "--checkpoint-glob", "ckpt-*.json",
               "--env", f"GO_FILE={go}", "--", sys.executable, "-c", _CRASHES_ONCE)
    wait_for(lambda: expbot.status("phoenix")["attempts"], timeout=60)
    out = expbot.data_dir.parent / "followed.txt"
    with open(out, "w") as sink:
        follower = subprocess.Popen([*EXPBOT, "logs", "phoenix", "--follow"], cwd=REPO, env=expbot.env,
                                    stdout=sink, stderr=subprocess.STDOUT, text=True)
        wait_for(lambda: "attempt 1 says hello" in out.read_text(), 60, "the follower to show attempt 1")
        go.touch()
        # --follow must end by itself once the experiment has (the deadline is the test's).
        assert follower.wait(timeout=120) == 0, out.read_text()
    text = out.read_text()
    assert "attempt 1 says hello" in text and "checkpoint written, now crashing" in text, text
    assert "— attempt 2 started, resumed from ckpt-000080.json —" in text, text
    assert text.index("now crashing") < text.index("— attempt 2 started") < text.index("attempt 2 says hello")
    assert "resumed from ckpt-000080.json" in text.splitlines()[-1], text
    assert expbot.status("phoenix")["state"] == "SUCCEEDED"
