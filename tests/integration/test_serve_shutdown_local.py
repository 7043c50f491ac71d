"""`expbot serve` on the local runner stops at once on SIGTERM, whatever its resync interval."""
from __future__ import annotations

import signal
import time

from tests.integration.cli_harness import Expbot, wait_for

EXIT_BOUND_SECONDS = 2.0  # the bound


def test_serve_on_the_local_runner_exits_within_two_seconds_of_sigterm(tmp_path) -> None:
    # A resync far longer than the bound: the supervisor's wait itself must end on stop.
    bot = Expbot(tmp_path / "data", EXPBOT_RESYNC_INTERVAL_SECONDS="30")
    proc = bot.serve()
    try:
        wait_for(lambda: "expbot serving" in bot.serve_logs(), 60, "expbot serve to start")
        bot.cli("launch", "quick", "--", "python", "-c", "pass")
        # Supervised to its end: the supervisor has run its passes and now waits for the next.
        wait_for(lambda: bot.status("quick")["state"] == "SUCCEEDED", 30, "quick to succeed")
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        wait_for(lambda: proc.poll() is not None, 35, "serve to exit after SIGTERM", interval=0.01)
        took = time.monotonic() - sent
        print(f"local serve exited {took:.2f}s after SIGTERM (exit status {proc.returncode})")
        assert proc.returncode == 0 and took < EXIT_BOUND_SECONDS, f"took {took:.2f}s:\n{bot.serve_logs()[-3000:]}"
        assert "expbot stopped" in bot.serve_logs()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
