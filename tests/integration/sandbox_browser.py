"""Drive the Slack sandbox page in Debian's chromium (Playwright) against a real `expbot serve` process.

Without chromium or Playwright the browser tests are skipped, except under CI (env CI set), where
they fail: `make test` installs both (Makefile `browser` target).
"""
from __future__ import annotations

import os
import re
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from adapters.db.digest_runs import DigestRuns
from adapters.db.engine import make_engine
from adapters.db.migrate import upgrade
from adapters.db.uow import SqlUnitOfWork, make_session_factory
from tests.integration.cli_harness import REPO, Expbot, wait_for
from tests.integration.cost_fixtures import ran

CHROMIUM = Path("/usr/bin/chromium")
# Screenshots of every step: kept after the run (CI keeps them as artifacts), the path is printed.
ARTIFACTS = Path(os.environ.get("EXPBOT_TEST_ARTIFACTS") or Path(tempfile.gettempdir()) / "expbot-artifacts") / "sandbox"
TOY = f"{sys.executable} examples/train_toy.py"
BUDGETS = '[budgets]\nprojects = { nlp = 40.0 }\napproval_ttl_hours = 24\n'


def missing(message: str) -> None:
    """Skip without the browser, but fail under CI: CI must run the browser tests."""
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI is set: the browser tests must run there; `make browser` installs it)")
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's chromium, headless, driven by Playwright (never a downloaded browser)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing("Playwright for Python is not installed (pip install -e '.[test]')")
    if not CHROMIUM.exists():
        missing(f"{CHROMIUM} is missing (apt-get install chromium)")
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-gpu"])
        yield chromium
        chromium.close()


def seed_yesterday(data_dir: Path) -> None:
    """Yesterday's spend, and the digest of the day before as posted: serve posts yesterday's at start."""
    data_dir.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{data_dir / 'expbot.db'}"
    upgrade(url)
    day = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    done = [
        ran("seeded-vision", [(day + timedelta(hours=2), day + timedelta(hours=8), 10.0)], owner="U0OWNER",
            project="vision", gpus=4, gpu_type="a100"),
        ran("seeded-nlp", [(day + timedelta(hours=9), day + timedelta(hours=13), 5.0)], owner="U0ADMIN",
            project="nlp", gpus=2, gpu_type="a100"),
    ]
    engine = make_engine(url)
    factory = make_session_factory(engine)
    with SqlUnitOfWork(factory) as uow:
        for exp in done:
            exp.events.clear()  # history for the digest, not launches for the channel
            uow.experiments.add(exp)
        uow.commit()
    # The day before was posted: serve catches up on the missed one (yesterday's) when it starts.
    before, now = (day - timedelta(days=1)).date().isoformat(), datetime.now(timezone.utc)
    runs = DigestRuns(factory)
    assert runs.claim(before, "seed", now)
    runs.mark_posted(before, "C0DIGEST", "1.000001", now)
    engine.dispose()


@dataclass
class Served:
    """A running `expbot serve` with its sandbox: the page's URL, and the installation (for CLI commands)."""

    url: str
    expbot: Expbot


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Served]:
    """A real `expbot serve` on the embedded default, no Slack token, and its sandbox page."""
    root = tmp_path_factory.mktemp("sandbox")
    config = root / "expbot.toml"
    config.write_text(BUDGETS)
    seed_yesterday(root / "data")
    expbot = Expbot(root / "data", EXPBOT_HTTP_PORT="0", EXPBOT_LOCAL_GPUS="2", EXPBOT_CONFIG_FILE=str(config),
                    EXPBOT_DIGEST_TIME="00:00")
    for name in ("EXPBOT_SLACK_BOT_TOKEN", "EXPBOT_SLACK_APP_TOKEN", "EXPBOT_SANDBOX_ENABLED"):
        expbot.env.pop(name, None)
    expbot.serve()
    try:
        found = wait_for(lambda: re.search(r"Slack experience at (http://\S+/sandbox)", expbot.serve_logs()),
                         timeout=60, what="serve to print the sandbox URL")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        plugins = request.config.pluginmanager
        reporter, capture = plugins.get_plugin("terminalreporter"), plugins.get_plugin("capturemanager")
        if reporter is not None and capture is not None:  # shown even when the tests pass
            with capture.global_and_fixture_disabled():
                reporter.write_line(f"\nsandbox screenshots: {ARTIFACTS}")
        yield Served(found[1], expbot)
    finally:
        expbot.kill_serve(15)
        if os.environ.get("CI"):
            print(expbot.serve_logs()[-4000:])


class Page:
    """One person's browser tab on the sandbox, with the few gestures the tests need."""

    def __init__(self, browser: Any, url: str, user: str = "U0OWNER") -> None:
        self.page = browser.new_page(viewport={"width": 1400, "height": 900})
        self.page.set_default_timeout(30_000)  # a loaded 2-core CI machine
        self.page.goto(url)
        self.page.wait_for_selector("#user option", state="attached")
        self.be(user)

    def be(self, user: str) -> None:
        """Switch the user switcher to `user`."""
        self.page.select_option("#user", user)

    def channel(self, name: str) -> None:
        """Open a channel from the sidebar."""
        self.page.click(f"#channels a:text-is('# {name}')")

    def type(self, text: str) -> None:
        """Type into the message box and press Enter."""
        self.page.fill("#input", text)
        self.page.press("#input", "Enter")

    def parent(self, name: str) -> Any:
        """The channel message whose text names experiment `name` (its thread's parent)."""
        return self.page.locator("#messages .msg", has_text=re.compile(rf"\b{re.escape(name)}\b")).filter(
            has=self.page.locator(".bk-actions, .replies")).first

    def shot(self, step: str) -> None:
        """A screenshot of this step, kept as a test artifact."""
        self.page.screenshot(path=str(ARTIFACTS / f"{step}.png"))

    def close(self) -> None:
        self.page.close()


@pytest.fixture
def tab(browser: Any, sandbox: Served) -> Iterator[Page]:
    opened = Page(browser, sandbox.url)
    yield opened
    opened.close()
