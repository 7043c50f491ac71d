"""Help and usage errors as a newcomer meets them, through the real `expbot` process (#15.6)."""
from __future__ import annotations

import re
from importlib.metadata import version

import pytest

from tests.integration.cli_harness import REPO, Expbot


@pytest.fixture
def expbot(tmp_path):
    return Expbot(tmp_path / "data")


def commands(expbot) -> list[str]:
    listing = expbot.cli("--help").stdout.split("Commands:", 1)[1]
    return [line.split()[0] for line in listing.splitlines() if line.startswith("  ") and line.split()]


def test_the_command_list_keeps_brackets_and_lists_version(expbot):
    shown = expbot.cli("--help").stdout
    assert "launch" in shown and "NAME [options] -- COMMAND" in shown, shown  # rich markup ate "[options]"
    assert "--version" in shown
    assert {"launch", "ls", "status", "stop", "logs", "serve", "db"} <= set(commands(expbot))


def test_no_help_shows_a_placeholder_for_a_flag_or_a_literal_brace_name(expbot):
    for command in commands(expbot):
        if command == "launch":
            continue  # its own help, below
        shown = expbot.cli(command, "--help").stdout
        assert "<bool>" not in shown and "{name}" not in shown, (command, shown)
        assert "--help" in shown and "╭" not in shown, (command, shown)
    assert "-a, --all " in expbot.cli("ls", "--help").stdout


def test_version_prints_the_installed_version(expbot):
    shown = expbot.cli("--version")
    assert shown.stdout.strip() == f"expbot {version('expbot')}" and shown.stderr == ""


def launch_defaults(help_text: str) -> dict[str, str]:
    return dict(re.findall(r"^\s+(--[a-z-]+) .*\[default: (.*)\]$", help_text, re.M))


def test_launch_help_lists_the_defaults_and_the_readme_states_them(expbot):
    defaults = launch_defaults(expbot.cli("launch", "--help").stdout)
    assert defaults["--max-runtime"] == "1d" and defaults["--max-restarts"] == "3", defaults
    assert defaults["--max-preemptions"] == "10" and defaults["--stall-timeout"] == "off", defaults
    readme = (REPO / "README.md").read_text()
    section = " ".join(readme.split("### Launch options", 1)[1].split("\n### ", 1)[0].replace("`", "").split())
    missing = {option: value for option, value in defaults.items() if f"{option} {value}" not in section}
    assert not missing, f"README's launch options do not state these defaults: {missing}"


def test_launch_help_shows_this_installations_defaults(expbot, tmp_path):
    config = tmp_path / "expbot.toml"
    config.write_text("[launch]\ndefault_max_restarts = 5\ndefault_max_runtime = 7200\n")
    expbot.env["EXPBOT_CONFIG_FILE"] = str(config)
    defaults = launch_defaults(expbot.cli("launch", "--help").stdout)
    assert defaults["--max-restarts"] == "5" and defaults["--max-runtime"] == "2h", defaults


def test_launch_help_with_a_wrong_configuration_shows_the_built_in_defaults_and_why(expbot, tmp_path):
    config = tmp_path / "expbot.toml"
    config.write_text("[launch]\ndefault_max_restart = 5\n")
    expbot.env["EXPBOT_CONFIG_FILE"] = str(config)
    shown = expbot.cli("launch", "--help").stdout
    assert launch_defaults(shown)["--max-restarts"] == "3", shown
    assert "built-in defaults" in shown and "unknown key 'default_max_restart'" in shown, shown


def one_line_error(run) -> str:
    assert run.returncode == 2, run
    assert run.stderr.startswith("error: ") and run.stderr.count("\n") == 1, run.stderr
    assert "Usage:" not in run.stderr and "Traceback" not in run.stderr and "{" not in run.stderr, run.stderr
    return run.stderr


@pytest.mark.parametrize("args, says", [
    (("status",), "expbot status: missing argument NAME (see `expbot status --help`)"),
    (("logs",), "expbot logs: missing argument NAME"),
    (("list",), "no such command 'list'"),
    (("ls", "extra"), "unexpected extra argument"),
    (("ls", "--limit", "0"), "'--limit'"),
    (("cost", "--since", "3"), "no such option: --since"),
    (("logs", "x", "--attempt"), "expbot logs: option '--attempt' requires an argument (see `expbot logs --help`)"),
])
def test_every_usage_error_is_one_line_naming_the_problem(expbot, args, says):
    assert says in one_line_error(expbot.cli(*args, check=False))


_HUGE = "x" * 100_000


@pytest.mark.parametrize("args", [("status", _HUGE), ("logs", _HUGE), (_HUGE,), ("ls", "--owner", "a", _HUGE),
                                  ("launch", "ok", "--project", _HUGE, "--", "true")])
def test_a_huge_value_is_cut_in_the_message(expbot, args):
    said = expbot.cli(*args, check=False).stderr
    assert said.startswith("error: ") and len(said) < 400, said[:400]
    assert "xxxxxxxxxx" in said  # the value is still recognisable
