"""Monthly budgets: which apply to a launch, how much of each is used, and when approval is needed."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from pydantic import BaseModel, ConfigDict, Field, field_validator

from core.suggest import closest

PROJECT, USER = "project", "user"

# A monthly amount: negative or infinite limits could never apply (and NaN compares false to all).
Amount = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class BudgetConfig(BaseModel):
    """Budgets from configuration (admins may override them from Slack at runtime)."""

    model_config = ConfigDict(frozen=True)
    timezone: str = "UTC"  # months (and the digest's days) start at midnight here
    projects: dict[str, Amount] = Field(default_factory=dict)  # project -> monthly limit
    users: dict[str, Amount] = Field(default_factory=dict)  # owner -> monthly limit
    default_user_limit: Amount | None = None  # for owners without their own line
    # percent of a budget; each alerts once a month
    alert_thresholds: tuple[Annotated[int, Field(gt=0)], ...] = (50, 80, 100)
    approval_ttl: timedelta = Field(default=timedelta(hours=24), gt=timedelta(0))  # unanswered: denied
    channels: dict[str, str] = Field(default_factory=dict)  # project -> Slack channel for its alerts

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        # Checked here, so a typo is refused at start and not at the first month_window() call.
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            zones = sorted(available_timezones())
            close = closest(value, zones)
            hint = f"; did you mean {close}?" if close else ""
            raise ValueError(f"unknown time zone, expected an IANA name like 'Europe/Berlin'{hint}") from None
        return value


@dataclass(frozen=True)
class Limit:
    scope: str  # PROJECT or USER
    name: str
    monthly: float

    def selector(self) -> dict[str, str]:
        """The filter (project= or owner=) that picks what this budget covers."""
        return {"project": self.name} if self.scope == PROJECT else {"owner": self.name}


@dataclass(frozen=True)
class BudgetStatus:
    """One budget this month: spent so far, plus what running experiments may still spend."""

    limit: Limit
    spent: float
    committed: float

    @property
    def remaining(self) -> float:
        return self.limit.monthly - self.spent - self.committed

    @property
    def percent_spent(self) -> float:
        return 100.0 * self.spent / self.limit.monthly if self.limit.monthly > 0 else 100.0


def month_window(now: datetime, tz: str) -> tuple[datetime, datetime, str]:
    """The calendar month containing `now` in time zone `tz`: (start UTC, end UTC, 'YYYY-MM')."""
    zone = ZoneInfo(tz)
    local = now.astimezone(zone)
    start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = (start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1))
    return start.astimezone(timezone.utc), end.astimezone(timezone.utc), f"{start.year:04d}-{start.month:02d}"


def limits_for(config: BudgetConfig, overrides: dict[tuple[str, str], float], project: str, owner: str) -> list[Limit]:
    """The budgets a launch by `owner` in `project` counts against (runtime overrides win)."""
    found = []
    project_limit = overrides.get((PROJECT, project), config.projects.get(project))
    if project_limit is not None:
        found.append(Limit(PROJECT, project, project_limit))
    user_limit = overrides.get((USER, owner), config.users.get(owner, config.default_user_limit))
    if user_limit is not None:
        found.append(Limit(USER, owner, user_limit))
    return found


def exceeded(statuses: list[BudgetStatus], projected: float) -> list[BudgetStatus]:
    """The budgets that `projected` more would overrun."""
    return [s for s in statuses if projected > s.remaining + 1e-9]


def thresholds_crossed(status: BudgetStatus, thresholds: tuple[int, ...]) -> list[int]:
    """The alert thresholds (percent) this month's spend has reached."""
    return [t for t in sorted(thresholds) if status.percent_spent >= t]
