"""The CLI's errors: a mistake in the command line, the data or the configuration is one clear line."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from tests.integration.cli_harness import Expbot, wait_for


@pytest.fixture
def expbot(tmp_path):
    return Expbot(tmp_path / "data")

@pytest.mark.parametrize("args, says", [
    (("list",), "no such command 'list'"),  # a command that does not exist (it is `ls`)
    (("cost", "--since", "yesterday"), "no such option: --since"),
    (("cost", "--days", "0"), "--days"),  # out of range
    (("status",), "missing argument NAME"),
    (("ls", "--limit", "0"), "--limit"),
    (("ls", "--limit", "99999999999999999999"), "--limit"),
    (("logs", "x", "--attempt", "0"), "--attempt"),
    (("logs", "x", "--tail", "0"), "--tail"),
])
def test_cli_usage_errors_say_what_is_wrong_never_internal_error(expbot, args, says):
    wrong = expbot.cli(*args, check=False)
    assert wrong.returncode == 2, wrong
    assert says in wrong.stderr and wrong.stderr.startswith("error: ") and wrong.stderr.count("\n") == 1
    assert "Usage:" not in wrong.stderr  # one line, not click's usage block
    assert "internal error" not in wrong.stderr and "Traceback" not in wrong.stderr


def test_brackets_in_user_text_are_shown_as_typed_not_read_as_markup(expbot):
    expbot.cli("launch", "hydra", "--", "python", "train.py", "data.paths=[/mnt/a,/mnt/b]", "trainer=[gpu]")
    stopped = expbot.cli("stop", "hydra", "--reason", "[/] [bold]why[/bold]")
    assert "[/] [bold]why[/bold]" in stopped.stdout
    shown = expbot.cli("status", "hydra").stdout
    assert "data.paths=[/mnt/a,/mnt/b]" in shown and "trainer=[gpu]" in shown
    assert "[/]" in expbot.cli("ls", "--all").stdout  # the reason column: every later ls used to fail


def one_clear_error(run) -> str:
    assert run.returncode == 2, run
    assert run.stderr.startswith("error: ") and "internal error" not in run.stderr and "Traceback" not in run.stderr
    return run.stderr


def test_a_corrupt_database_file_is_named(expbot):
    expbot.data_dir.mkdir(parents=True)
    (expbot.data_dir / "expbot.db").write_text("not a database")
    said = one_clear_error(expbot.cli("ls", check=False))
    assert "cannot open the database" in said and "expbot.db" in said and "file is not a database" in said


def test_an_unreachable_database_is_named_without_its_password(expbot):
    expbot.env["EXPBOT_DATABASE_URL"] = "postgresql://ana:s3cret-pw@127.0.0.1:1/expbot"
    said = one_clear_error(expbot.cli("ls", check=False))
    assert "postgresql://ana:***@127.0.0.1:1/expbot" in said and "EXPBOT_DATABASE_URL" in said
    assert "s3cret-pw" not in said


def test_a_data_dir_that_cannot_be_a_directory_is_named(expbot, tmp_path):
    (tmp_path / "a-file").write_text("")
    expbot.env["EXPBOT_DATA_DIR"] = str(tmp_path / "a-file" / "data")
    said = one_clear_error(expbot.cli("ls", check=False))
    assert "EXPBOT_DATA_DIR" in said and "Not a directory" in said


@pytest.mark.parametrize("setting, value, says", [
    ("EXPBOT_LOCAL_GPUS", "abc", "EXPBOT_LOCAL_GPUS='abc': expected a whole number"),
    ("EXPBOT_RELAY_INTERVAL_SECONDS", "0", "EXPBOT_RELAY_INTERVAL_SECONDS='0': must be more than 0"),
    ("EXPBOT_LOG_FORMAT", "xml", "EXPBOT_LOG_FORMAT='xml': expected 'text' or 'json'"),
])
def test_a_bad_setting_is_named_with_what_it_expects(expbot, setting, value, says):
    expbot.env[setting] = value
    assert says in one_clear_error(expbot.cli("ls", check=False))


def test_a_typo_in_the_config_file_is_named_with_a_suggestion(expbot, tmp_path):
    config = tmp_path / "expbot.toml"
    config.write_text("[launch]\nmax_gpu = 8\n")
    expbot.env["EXPBOT_CONFIG_FILE"] = str(config)
    said = one_clear_error(expbot.cli("ls", check=False))
    assert f"{config}: unknown key 'max_gpu' in [launch]; did you mean max_gpus?" in said


@pytest.mark.slow
def test_a_chart_that_cannot_be_written_is_named(expbot, tmp_path):
    # Something spent today, or the digest draws no chart at all (it never draws an empty one).
    expbot.env["EXPBOT_LOCAL_GPUS"] = "1"
    expbot.serve()
    try:
        expbot.cli("launch", "spender", "--gpus", "1", "--", "sleep", "1")
        wait_for(lambda: expbot.status("spender")["state"] == "SUCCEEDED", 60, "spender to end")
    finally:
        expbot.kill_serve()
    today = datetime.now(timezone.utc).date().isoformat()
    chart = tmp_path / "no-such-dir" / "chart.png"
    said = one_clear_error(expbot.cli("digest", "--dry-run", "--date", today, "--chart", str(chart), check=False))
    assert f"cannot write the chart to {chart}: No such file or directory" in said


@pytest.mark.parametrize("command", [("ls",), ("db", "upgrade")])
def test_a_database_url_with_a_bad_port_is_named(expbot, command):
    expbot.env["EXPBOT_DATABASE_URL"] = "postgresql://ana:s3cret-pw@localhost:notaport/expbot"
    said = one_clear_error(expbot.cli(*command, check=False))
    assert "cannot open the database" in said and "EXPBOT_DATABASE_URL" in said and "s3cret-pw" not in said
    assert said.count("\n") == 1  # one line, however the driver words it
