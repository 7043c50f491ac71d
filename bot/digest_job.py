"""`expbot digest`: print or post one day's digest through the digest service bootstrap built."""
from __future__ import annotations

from datetime import date
from pathlib import Path

from bot.container import Expbot
from bot.digest import render_for_terminal
from core.digest_service import due_day
from core.errors import ExpbotError


def digest_command(bot: Expbot, day: str | None, dry_run: bool, chart: Path | None) -> str:
    """`expbot digest`: print (with --dry-run) or post one day's digest; returns what to print."""
    digest, now = bot.digest, bot.clock.now()
    assert digest is not None, "bootstrap builds the digest service"
    try:
        when = date.fromisoformat(day) if day else due_day(now, digest.timezone)
    except ValueError:
        raise ExpbotError(f"--date expects a day like 2026-11-21, got {day!r}") from None
    data = digest.build_digest_data(when, now)
    if chart is not None:
        png = digest.chart(data)
        if png:
            try:
                chart.write_bytes(png)
            except OSError as e:
                raise ExpbotError(f"cannot write the chart to {chart}: {e.strerror or e}") from e
    if dry_run:
        return render_for_terminal(digest.compose(data))
    if not digest.can_post:
        raise ExpbotError("posting needs EXPBOT_SLACK_BOT_TOKEN and EXPBOT_SLACK_DIGEST_CHANNEL (or use --dry-run)")
    posted = digest.publish(when, now)
    return f"digest for {when} posted" if posted else f"the digest for {when} was posted already"
