"""Slack mrkdwn as HTML for the sandbox page: bold, italics, code, links, mentions, date tokens, emoji."""
from __future__ import annotations

import html
import re
from collections.abc import Callable
from datetime import datetime, timezone

# The emoji expbot writes (grep ':[a-z_]+:' bot core), drawn as Slack draws them; others stay as text.
EMOJI = {
    "warning": "⚠️", "zzz": "💤", "white_check_mark": "✅", "rotating_light": "🚨", "rocket": "🚀",
    "octagonal_sign": "🛑", "no_entry_sign": "🚫", "hourglass_flowing_sand": "⏳", "double_vertical_bar": "⏸️",
    "arrow_forward": "▶️", "x": "❌", "lock": "🔒", "arrows_counterclockwise": "🔄", "stop_button": "⏹️",
    "page_facing_up": "📄", "information_source": "ℹ️", "gear": "⚙️", "tada": "🎉", "moneybag": "💰",
    "chart_with_upwards_trend": "📈", "bar_chart": "📊", "hourglass": "⌛", "clock3": "🕒",
}
_SPECIAL = re.compile(r"<([^<>]+)>")
_FENCE = re.compile(r"```(.*?)```", re.S)
_CODE = re.compile(r"`([^`\n]+)`")
# Slack formats only at word boundaries: *bold* not inside a word (2*3*4 stays as it is).
_BOLD = re.compile(r"(?<![\w*])\*(?!\s)([^*\n]+?)(?<!\s)\*(?![\w*])")
_ITALIC = re.compile(r"(?<![\w_])_(?!\s)([^_\n]+?)(?<!\s)_(?![\w_])")
_STRIKE = re.compile(r"(?<![\w~])~(?!\s)([^~\n]+?)(?<!\s)~(?![\w~])")
_EMOJI = re.compile(r":([a-z0-9_+-]+):")
_DATE_WORDS = {
    "date_num": "%Y-%m-%d", "date": "%B %d, %Y", "date_short": "%b %d, %Y", "date_long": "%A, %B %d, %Y",
    "date_pretty": "%B %d, %Y", "date_short_pretty": "%b %d", "date_long_pretty": "%A, %B %d, %Y",
    "time": "%H:%M", "time_secs": "%H:%M:%S",
}


def mrkdwn_html(text: str, names: Callable[[str], str] = lambda user: user) -> str:
    """Slack mrkdwn (already &-escaped as Slack wants it) as safe HTML; `names` turns a user id into a name."""
    kept: list[str] = []  # HTML already made, kept out of the formatting passes (see _keep)
    parts: list[str] = []
    for n, piece in enumerate(_SPECIAL.split(text or "")):
        parts.append(_special(piece, names, kept) if n % 2 else _placeholder_safe(piece))
    return _format("".join(parts), kept)


def plain_html(text: str) -> str:
    """plain_text as HTML: escaped, emoji drawn, line breaks kept."""
    return _emoji(html.escape(text or "")).replace("\n", "<br>")


def date_text(token: str) -> str:
    """`<!date^1700000000^{date_short} {time}|fallback>`'s text, in UTC (the page's one time zone)."""
    _, _, rest = token.partition("^")
    stamp, _, rest = rest.partition("^")
    fmt, _, fallback = rest.partition("|")
    fmt = fmt.split("^")[0]
    try:
        when = datetime.fromtimestamp(int(stamp), tz=timezone.utc)
    except (ValueError, OverflowError):
        return fallback or token
    now = datetime.now(timezone.utc)

    def word(match: re.Match[str]) -> str:
        key = match[1]
        if key == "ago":
            return _ago(now - when)
        return when.strftime(_DATE_WORDS[key]) if key in _DATE_WORDS else match[0]

    return re.sub(r"\{(\w+)\}", word, fmt) + " UTC" * ("{time" in fmt)


def _ago(delta) -> str:
    seconds = int(delta.total_seconds())
    future, seconds = seconds < 0, abs(seconds)
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size:
            count = seconds // size
            words = f"{count} {unit}{'s' * (count != 1)}"
            return f"in {words}" if future else f"{words} ago"
    return "just now"


def _special(body: str, names: Callable[[str], str], kept: list[str]) -> str:
    label = body.partition("|")[2]
    if body.startswith("@"):
        user = body[1:].partition("|")[0]
        out = f'<span class="bk-mention">@{html.escape(label or names(user))}</span>'
    elif body.startswith("#"):
        out = f'<span class="bk-mention">#{html.escape(label or body[1:].partition("|")[0])}</span>'
    elif body.startswith("!date^"):
        out = f'<span class="bk-date">{html.escape(date_text(html.unescape(body)))}</span>'
    elif body.startswith("!"):
        out = f'<span class="bk-mention">@{html.escape(body[1:].partition("|")[0].split("^")[0])}</span>'
    else:
        url = html.unescape(body.partition("|")[0])
        safe = url if re.match(r"(https?|mailto):", url) else "#"
        out = f'<a href="{html.escape(safe)}" target="_blank" rel="noopener">{html.escape(html.unescape(label or url))}</a>'
    return _keep(out, kept)


def _keep(fragment: str, kept: list[str]) -> str:
    # Formatting runs over the whole escaped text; what is made already must not be re-read as
    # mrkdwn (a link's URL may hold '_'), so it waits behind a marker character until the end.
    kept.append(fragment)
    return f"\x00{len(kept) - 1}\x00"


def _placeholder_safe(piece: str) -> str:
    # Slack's own escapes (&amp; &lt; &gt;) come undone, then everything is escaped for HTML again.
    return html.escape(html.unescape(piece.replace("\x00", "")), quote=False)


def _format(text: str, kept: list[str]) -> str:
    rounds = 0
    text = _FENCE.sub(lambda m: _keep(f"<pre>{m[1].strip(chr(10))}</pre>", kept), text)
    text = _CODE.sub(lambda m: _keep(f"<code>{m[1]}</code>", kept), text)
    text = _BOLD.sub(r"<b>\1</b>", text)
    text = _ITALIC.sub(r"<i>\1</i>", text)
    text = _STRIKE.sub(r"<s>\1</s>", text)
    lines = []
    for line in _emoji(text).split("\n"):
        lines.append(f'<span class="bk-quote">{line[5:]}</span>' if line.startswith("&gt; ") else line)
    text = "<br>".join(lines)
    while "\x00" in text and rounds < 8:  # a kept fragment may hold another one (a mention in code)
        text = re.sub(r"\x00(\d+)\x00", lambda m: kept[int(m[1])], text)
        rounds += 1
    return text


def _emoji(text: str) -> str:
    return _EMOJI.sub(lambda m: EMOJI.get(m[1], m[0]), text)
