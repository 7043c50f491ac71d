"""A launch over budget where no approver is configured says how to make one, not commands nobody may run."""
from __future__ import annotations

import pytest

from tests.integration.cli_harness import Expbot

pytestmark = pytest.mark.slow


@pytest.fixture
def expbot(tmp_path):
    config = tmp_path / "expbot.toml"
    config.write_text('[budgets]\nprojects = { nlp = 1.0 }\n')
    bot = Expbot(tmp_path / "data", EXPBOT_CONFIG_FILE=str(config), EXPBOT_SLACK_APPROVERS="")
    yield bot
    bot.kill_serve()


def test_with_no_approvers_the_waiting_launch_says_how_to_configure_one(expbot):
    # 4 CPUs for 24 hours at 0.03 a CPU-hour (2.88) overrun the project's 1.00.
    launched = expbot.cli("launch", "big", "--project", "nlp", "--cpu", "4", "--hours", "24", "--",
                          "python", "-c", "pass").stdout
    assert "big: PENDING_APPROVAL" in launched
    for shown in (launched, expbot.cli("status", "big").stdout):
        [line] = [line for line in shown.splitlines() if line.startswith("who may approve")]
        assert "no approvers are configured (EXPBOT_SLACK_APPROVERS): list a user there" in line
        assert "and they may `expbot approve big`" in line
    refused = expbot.cli("approve", "big", check=False)
    assert refused.returncode == 2 and "EXPBOT_SLACK_APPROVERS" in refused.stderr
