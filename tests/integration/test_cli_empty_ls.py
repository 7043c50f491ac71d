"""`expbot ls` with nothing to show names the filters it applied, so a mistyped sweep is not 'nothing running'."""
from __future__ import annotations

import pytest

from bot.render import empty_listing
from tests.integration.cli_harness import Expbot

pytestmark = pytest.mark.slow


def test_an_empty_listing_names_the_sweep_owner_and_project_asked_for(tmp_path):
    expbot = Expbot(tmp_path / "data")
    expbot.cli("launch", "only", "--", "python", "-c", "pass")  # QUEUED: no serve runs it
    assert expbot.cli("ls", "--group", "nosuch").stdout.strip() == "no experiments of sweep nosuch running (try --all)"
    assert expbot.cli("ls", "--all", "--group", "nosuch").stdout.strip() == "no experiments of sweep nosuch"
    shown = expbot.cli("ls", "--owner", "bob", "--project", "nlp").stdout.strip()
    assert shown == "no experiments owned by bob in project nlp running (try --all)"
    assert "only" in expbot.cli("ls").stdout


def test_with_no_filter_it_says_what_it_always_said():
    assert empty_listing(False) == "no experiments running (try --all)"
    assert empty_listing(True) == "no experiments"
