"""A sick database is one clear error (CLI, Slack), and `serve` recovers by itself once it is well."""
from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import event

from core.errors import DatabaseUnavailable
from tests.integration.cli_harness import Expbot, wait_for
from tests.integration.conftest import new_experiment
from tests.integration.slack_harness import slack_bot  # noqa: F401  (fixture)

# What a SQLite connection opened while its file was not writable is like, for its whole life.
_MAKE_READ_ONLY = {"sqlite": "PRAGMA query_only = ON", "postgres": "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY"}


def test_a_read_only_connection_fails_once_with_a_clear_error_and_is_replaced(sql_store):
    with sql_store.engine.connect() as conn:  # it goes back to the pool, spoilt
        conn.exec_driver_sql(_MAKE_READ_ONLY[sql_store.kind])
        conn.commit()
    with pytest.raises(DatabaseUnavailable, match="is read-only") as refused:
        sql_store.save(new_experiment("first"))
    assert sql_store.engine.url.database in str(refused.value)
    sql_store.save(new_experiment("second"))  # on a fresh connection: the spoilt one is gone
    with sql_store.new_uow() as uow:
        assert [e.name for e in uow.experiments.list()] == ["second"]


@pytest.mark.slow
def test_a_slash_command_while_the_database_is_read_only_says_so_ephemerally(slack_bot):  # noqa: F811
    engine = slack_bot.bot.session_factory.kw["bind"]
    event.listen(engine, "connect", lambda dbapi, _record: dbapi.execute(_MAKE_READ_ONLY["sqlite"]))
    engine.dispose()  # every connection from now on is read-only
    assert slack_bot.slash("launch ro -- python train.py").status_code == 200
    [told] = wait_for(lambda: [r for r in slack_bot.slack_api.responses(slack_bot.last_response_url)
                               if "read-only" in r.payload.get("text", "")], what="the ephemeral error")
    assert told.payload.get("response_type") == "ephemeral"
    text = told.payload["text"]
    database = engine.url.database
    assert text == f":warning: the database {database} is read-only: attempt to write a readonly database", text
    assert "EXPBOT_" not in text  # server settings are advice for the operator, never for Slack users (#15.13)


# --- a database file read-only for a while under a running `serve` ------------------------------
# Root ignores file modes through these capabilities; each child gives them up before exec (as a
# user other than root, the venv's interpreter under /root may not even be reachable).
_LIBC = ctypes.CDLL(None, use_errno=True)
_PR_CAPBSET_DROP, _CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH = 24, 1, 2
_WAIT_FOR_GATE = "import os, sys, time\nwhile not os.path.exists(sys.argv[1]): time.sleep(0.05)"


def _obey_file_modes() -> None:
    for cap in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH):
        if _LIBC.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


def _set_writable(database: Path, writable: bool) -> None:
    for path in (database, database.with_name(database.name + "-wal"), database.with_name(database.name + "-shm")):
        if path.exists():
            path.chmod(0o644 if writable else 0o444)


@pytest.fixture
def expbot(tmp_path: Path):
    bot = Expbot(tmp_path / "data")
    if os.geteuid() == 0:
        bot.preexec_fn = _obey_file_modes
        probe = tmp_path / "probe"
        probe.write_text("")
        probe.chmod(0o444)
        try:
            refused = subprocess.run([sys.executable, "-c", f"open({str(probe)!r}, 'a')"], capture_output=True,
                                     preexec_fn=_obey_file_modes).returncode != 0
        except subprocess.SubprocessError:
            refused = False
        if not refused:
            pytest.skip("cannot give up root's power over file modes here (no CAP_SETPCAP)")
    yield bot
    _set_writable(bot.data_dir / "expbot.db", True)
    bot.kill_serve()
    for launch in (bot.data_dir / "runs").glob("*/attempt-*/launch.json"):
        try:
            os.killpg(bot.attempt_pid(launch.parts[-3], int(launch.parts[-2].split("-")[1])), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass


@pytest.mark.slow
def test_a_database_read_only_for_a_while_is_named_and_serve_records_what_ended_meanwhile_once(expbot, tmp_path):
    gate = tmp_path / "gate"
    expbot.cli("launch", "waits", "--", sys.executable, "-c", _WAIT_FOR_GATE, str(gate))
    expbot.serve()
    wait_for(lambda: expbot.status("waits")["state"] == "RUNNING", 30, "the attempt running")
    database = (expbot.data_dir / "expbot.db").resolve()
    _set_writable(database, False)

    read_only = f"error: the database {database} (EXPBOT_DATA_DIR) is read-only: attempt to write a readonly database"
    for args in (("launch", "late", "--", "true"), ("stop", "waits")):
        refused = expbot.cli(*args, check=False)
        assert (refused.returncode, refused.stderr.strip()) == (2, read_only), refused

    # A serve that starts meanwhile (a deploy, a crash) opens its connections read-only; they stay
    # so after the files are writable again unless they are thrown away.
    expbot.kill_serve(signal.SIGTERM)
    expbot.serve()
    log = sorted(expbot.data_dir.glob("serve-*.log"))[-1]
    wait_for(lambda: "expbot serving" in log.read_text(), 30, "serve started again")
    gate.write_text("")  # the workload ends while its end cannot be recorded
    # The supervisor's own failure: the heartbeat's (also read-only) comes earlier and records no end.
    # Rarely (a loaded machine) SQLite gets a fresh WAL beside the read-only file and the end is
    # recorded at once: what this test then holds is that it is recorded once, with no traceback.
    wait_for(lambda: "supervisor pass failed" in log.read_text() or expbot.status("waits")["state"] != "RUNNING",
             30, "serve failing to record the end")
    refused_meanwhile = "supervisor pass failed" in log.read_text()

    _set_writable(database, True)
    final = wait_for(lambda: (s := expbot.status("waits"))["state"] != "RUNNING" and s, 10, "serve recording the end")
    assert final["state"] == "SUCCEEDED" and len(final["attempts"]) == 1, final
    assert [e["kind"] for e in final["events"]].count("AttemptEnded") == 1, final["events"]
    said = log.read_text()
    assert "Traceback" not in said, said  # one line per failed pass, naming the database and the cause
    if refused_meanwhile:
        assert f"supervisor pass failed (1 in a row): {read_only.removeprefix('error: ')}" in said


# SQLite shares one -shm per file per process: a connection opened while a read-only one is open
# is read-only too. Run as a child that obeys file modes; the parent holds the -wal/-shm open.
_POOL_AFTER_READ_ONLY = """
import sys
from adapters.db.engine import make_engine
from core.errors import DatabaseUnavailable
engine = make_engine("sqlite:///" + sys.argv[1], pool_size=5)
opened = [engine.connect() for _ in range(3)]  # three units of work at once: all read-only
for conn in opened:
    conn.exec_driver_sql("SELECT count(*) FROM t").all()
    conn.rollback()
failing, *idle = opened
for conn in idle:
    conn.close()  # back in the pool, still open
print("opened", flush=True)
sys.stdin.readline()  # the files are writable again
try:
    with failing.begin():
        failing.exec_driver_sql("INSERT INTO t VALUES (1)")
    print("wrote on a read-only connection?!")
except DatabaseUnavailable as e:
    print("refused:", e)
failing.close()
del opened, idle, conn, failing  # those units of work are over (a serve keeps no references to them either)
with engine.begin() as conn:
    conn.exec_driver_sql("INSERT INTO t VALUES (2)")
with engine.begin() as conn:
    conn.exec_driver_sql("INSERT INTO t VALUES (3)")
print("written")
"""


def test_after_a_read_only_error_every_pooled_connection_is_replaced_together(tmp_path):
    import sqlite3

    database = tmp_path / "pool.db"
    holder = sqlite3.connect(database)  # another process's connection: keeps -wal and -shm on disk
    holder.execute("PRAGMA journal_mode = WAL")
    holder.execute("CREATE TABLE t (x)")
    holder.commit()
    _set_writable(database, False)
    child = subprocess.Popen([sys.executable, "-c", _POOL_AFTER_READ_ONLY, str(database)], cwd=Path(__file__).parents[2],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             preexec_fn=_obey_file_modes if os.geteuid() == 0 else None)
    try:
        assert child.stdout.readline().strip() == "opened"
        holder.close()
        _set_writable(database, True)
        out, _ = child.communicate("go\n", timeout=60)
    finally:
        child.kill()
        _set_writable(database, True)
    assert out.splitlines()[0].startswith("refused: ") and "is read-only" in out, out
    assert out.splitlines()[-1] == "written", out  # not refused again by a connection opened beside a spoilt one
