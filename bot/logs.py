"""serve's log: readable text by default, one JSON object per line with EXPBOT_LOG_FORMAT=json."""
from __future__ import annotations

import json
import logging
import sys
from datetime import datetime, timezone
from typing import IO, Any

from core import log_context

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Libraries whose INFO lines are per-run chatter, not decisions: APScheduler says "Running job" and
# "executed successfully" for every run of every scheduled job (the idle check: every minute).
_CHATTY = ("apscheduler",)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, and what the line is about."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON (a traceback goes in "exception", escaped, not on new lines)."""
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry |= log_context.current()
        # Fields given per call (logger.info(..., extra={"experiment": ...})) win over the context's.
        entry |= {f: getattr(record, f) for f in log_context.FIELDS if getattr(record, f, None) is not None}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


class _Demote(logging.Filter):
    """Turn the chatty libraries' INFO lines into DEBUG ones: shown only at EXPBOT_LOG_LEVEL=DEBUG."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        """False for a demoted line below the configured level (the handler has checked levels already)."""
        if record.levelno == logging.INFO and record.name.startswith(_CHATTY):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return self.level <= logging.DEBUG
        return True


def configure_logging(level: str, fmt: str = "text", stream: IO[str] | None = None) -> None:
    """Send every log line to stderr (or `stream`) as text or JSON, from `level` up."""
    numeric = logging.getLevelNamesMapping()[level.upper()]
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(_Demote(numeric))
    logging.basicConfig(level=numeric, handlers=[handler], force=True)
    logging.captureWarnings(True)  # a library's warning is a log line too, not raw text between them
