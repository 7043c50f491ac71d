"""Command handlers: what Slack, the CLI and the schedulers all end up calling."""
from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from core import commands
from core.approvals import admit
from core.budget import BudgetConfig
from core.cost import Prices
from core.errors import CapacityError, DuplicateLaunch, ExpbotError, NameInUse, NotAllowed
from core.grammar import parse_launch
from core.lookup import find_experiment
from core.messages import owner_or_admin
from core.model import Experiment, State
from core.ports import Clock, ClusterBackend, UnitOfWork
from core.spec import ExperimentSpec, LaunchConfig


@dataclass(frozen=True)
class LaunchResult:
    experiments: list[Experiment]
    duplicate: bool = False  # True: this request was seen before; nothing new was launched


def member_key(idempotency_key: str, index: int) -> str:
    """The idempotency key stored for member `index` (1-based) of one launch request."""
    return f"{idempotency_key}#{index}"


def launch(
    cmd: commands.LaunchExperiment,
    uow: UnitOfWork,
    *,
    config: LaunchConfig,
    backend: ClusterBackend,
    clock: Clock,
    prices: Prices | None = None,
    budgets: BudgetConfig | None = None,
    new_id: Callable[[], str] = lambda: uuid.uuid4().hex,
) -> LaunchResult:
    """Parse, check, admit against budgets and store a launch; the supervisor starts it."""
    request = cmd.request or parse_launch(cmd.text, config)
    with uow:
        earlier = preflight(uow, request.specs, backend=backend, idempotency_key=cmd.idempotency_key)
        if earlier:
            return LaunchResult(earlier, duplicate=True)
        now = clock.now()
        launch_id = new_id()
        created = []
        for index, spec in enumerate(request.specs, start=1):
            key = member_key(cmd.idempotency_key, index) if cmd.idempotency_key else None
            experiment = Experiment(
                id=new_id(), spec=spec, owner=cmd.owner, created_at=now, updated_at=now,
                state=State.QUEUED, state_reason="waiting to start", idempotency_key=key,
                launch_id=launch_id, channel=cmd.channel,
            )
            experiment.launched(now)
            uow.experiments.add(experiment)
            created.append(experiment)
        if prices is not None and budgets is not None:
            admit(uow, created, budgets, prices, now)
        try:
            uow.commit()
        except (DuplicateLaunch, NameInUse):
            # The same request raced us (e.g. a Slack retry handled by another replica), or another
            # launch of the same name committed between our check and our commit.
            uow.rollback()
            earlier = _already_launched(uow, cmd.idempotency_key or "", len(request.specs))
            if earlier:
                return LaunchResult(earlier, duplicate=True)
            preflight(uow, request.specs, backend=backend)  # NameInUse saying which state holds it
            raise
    return LaunchResult(created)


def preflight(
    uow: UnitOfWork,
    specs: Sequence[ExperimentSpec],
    *,
    backend: ClusterBackend,
    idempotency_key: str | None = None,
) -> list[Experiment]:
    """The earlier launch if this request was seen before, else [] or CapacityError / NameInUse."""
    # One rule for the launch handler and for the Slack modal, which checks before it closes
    # (fast: a name lookup per member and the backend's static capacity, no cluster calls).
    if idempotency_key:
        earlier = _already_launched(uow, idempotency_key, len(specs))
        if earlier:
            return earlier
    if (problem := capacity_problem(specs, backend)) is not None:
        raise CapacityError(problem)
    for spec in specs:
        existing = uow.experiments.get_by_name(spec.name)
        if existing is not None and not existing.is_terminal:
            raise NameInUse(
                f"an experiment named {spec.name!r} is already {existing.state}; "
                "stop it first or pick another name"
            )
    return []


def capacity_problem(specs: Sequence[ExperimentSpec], backend: ClusterBackend) -> str | None:
    """Why a member can never fit the backend ('big: needs 8 GPUs ...'), or None.

    Only the backend's static capacity, no store or cluster call: cheap enough for Slack's ack.
    """
    for spec in specs:
        if problem := backend.check_fits(spec):
            return f"{spec.name}: {problem}"
    return None


def _already_launched(uow: UnitOfWork, key: str, count: int) -> list[Experiment]:
    found = [uow.experiments.get_by_idempotency_key(member_key(key, i)) for i in range(1, count + 1)]
    return [e for e in found if e is not None]


def stop(
    cmd: commands.StopExperiment,
    uow: UnitOfWork,
    *,
    backend: ClusterBackend,
    clock: Clock,
    grace: timedelta,
) -> Experiment:
    """Ask for a stop: recorded (so nothing restarts it); the supervisor ends its attempt."""
    with uow:
        experiment = find_experiment(uow.experiments, cmd.name)
        if not cmd.as_admin and cmd.by != experiment.owner:
            raise NotAllowed(owner_or_admin(experiment.owner, f"stop {experiment.name}"))
        if experiment.state == State.STOPPING:
            return experiment  # asked already: the supervisor is at it
        if experiment.is_terminal:
            raise ExpbotError(f"{experiment.name} has already ended ({experiment.state})")
        experiment.request_stop(cmd.by, cmd.reason or f"stopped by {cmd.by}", clock.now(),
                                grace_seconds=grace.total_seconds())
        uow.commit()
    if experiment.is_terminal:
        backend.release(experiment.id)
    # Otherwise the supervisor acts at once: in serve its StopRequested wakes it (bot.serve.lead).
    return experiment
