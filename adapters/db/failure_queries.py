"""The daily digest's failure figures: infrastructure failures by cause, and the sick-node reports."""
from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from adapters.db.cost_queries import _ts
from adapters.db.rows import AttemptRow
from adapters.db.rows_cost import AuditRow

ATTEMPT = AttemptRow.__table__
AUDIT = AuditRow.__table__
# The failure classes that are the cluster's fault (core.policy.INFRASTRUCTURE), as stored.
INFRA_CLASSES = ("infra", "hardware", "network", "stall")


def infra_failures_by_class(session: Session, start: datetime, end: datetime) -> dict[str, int]:
    """Attempts that ended in [start, end) with an infrastructure failure, counted by failure class."""
    rows = session.execute(
        sa.select(ATTEMPT.c.failure_class, sa.func.count())
        .where(ATTEMPT.c.failure_class.in_(INFRA_CLASSES), ATTEMPT.c.ended_at >= _ts(start),
               ATTEMPT.c.ended_at < _ts(end))
        .group_by(ATTEMPT.c.failure_class)
    ).all()
    return {str(kind): int(n) for kind, n in rows}


def node_reports(session: Session, start: datetime, end: datetime, action: str) -> list[dict]:
    """The details of the sick-node reports (audit `action`) made in [start, end), oldest first."""
    rows = session.execute(
        sa.select(AUDIT.c.detail).where(AUDIT.c.action == action, AUDIT.c.at >= _ts(start), AUDIT.c.at < _ts(end))
        .order_by(AUDIT.c.id)
    ).scalars()
    return [dict(detail) for detail in rows]
