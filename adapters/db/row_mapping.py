"""Experiments and attempts as rows and back: the columns the repository writes and how it reads them."""
from __future__ import annotations

from typing import Any

from sqlalchemy.engine import RowMapping

from core.model import Attempt, AttemptState, Experiment, FailureClass, State
from core.spec import ExperimentSpec

ATTEMPT_PREFIX = "attempt_"  # the attempt columns' labels in the repository's joined statement


def experiment_values(exp: Experiment, version: int) -> dict[str, Any]:
    """The experiment's columns, stamped with `version`."""
    return {
        "id": exp.id,
        "name": exp.spec.name,
        "group_name": exp.spec.group,
        "owner": exp.owner,
        "project": exp.spec.project,
        "state": str(exp.state),
        "state_reason": exp.state_reason,
        "spec": exp.spec.model_dump(mode="json"),
        "idempotency_key": exp.idempotency_key,
        "created_at": exp.created_at,
        "updated_at": exp.updated_at,
        "next_attempt_at": exp.next_attempt_at,
        "user_restarts": exp.user_restarts,
        "infra_restarts": exp.infra_restarts,
        "free_restarts": exp.free_restarts,
        "stopped_by": exp.stopped_by,
        "stop_requested_at": exp.stop_requested_at,
        "launch_id": exp.launch_id,
        "channel": exp.channel,
        "version": version,
    }


def attempt_values(experiment_id: str, attempt: Attempt) -> dict[str, Any]:
    """One attempt's columns."""
    return {
        "experiment_id": experiment_id,
        "number": attempt.number,
        "state": str(attempt.state),
        "created_at": attempt.created_at,
        "started_at": attempt.started_at,
        "ended_at": attempt.ended_at,
        "exit_code": attempt.exit_code,
        "reason": attempt.reason,
        "failure_class": None if attempt.failure_class is None else str(attempt.failure_class),
        "resumed_from": attempt.resumed_from,
        "gpus": attempt.gpus,
        "hourly_rate": attempt.hourly_rate,
        "node": attempt.node,
    }


def experiment_from_row(row: RowMapping) -> Experiment:
    """The experiment a joined row's experiment columns hold (its attempts come separately)."""
    return Experiment(
        id=row["id"],
        spec=ExperimentSpec.model_validate(row["spec"]),
        owner=row["owner"],
        created_at=row["created_at"],
        state=State(row["state"]),
        state_reason=row["state_reason"],
        updated_at=row["updated_at"],
        idempotency_key=row["idempotency_key"],
        next_attempt_at=row["next_attempt_at"],
        user_restarts=row["user_restarts"],
        infra_restarts=row["infra_restarts"],
        free_restarts=row["free_restarts"],
        stopped_by=row["stopped_by"],
        stop_requested_at=row["stop_requested_at"],
        launch_id=row["launch_id"],
        channel=row["channel"],
        version=row["version"],
    )


def attempt_from_row(row: RowMapping) -> Attempt:
    """The attempt a joined row's labelled attempt columns hold."""
    def col(name: str) -> Any:
        return row[ATTEMPT_PREFIX + name]

    failure = col("failure_class")
    return Attempt(
        number=col("number"),
        created_at=col("created_at"),
        state=AttemptState(col("state")),
        started_at=col("started_at"),
        ended_at=col("ended_at"),
        exit_code=col("exit_code"),
        reason=col("reason"),
        failure_class=None if failure is None else FailureClass(failure),
        resumed_from=col("resumed_from"),
        gpus=col("gpus"),
        hourly_rate=col("hourly_rate"),
        node=col("node"),
    )
