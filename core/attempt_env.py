"""The environment every attempt gets (README: "What every attempt gets"), built once for every backend.

Backends differ only in where things are (the checkpoint directory, the heartbeat file, the report
endpoint), so they pass those paths in; the names and their meaning are decided here.
"""
from __future__ import annotations

from dataclasses import dataclass

from core.ports import AttemptLaunch
from core.progress import attempt_token


@dataclass(frozen=True)
class AttemptPlaces:
    """Where this backend keeps an attempt's things, as the attempt's process sees them."""

    checkpoint_dir: str
    heartbeat_file: str | None = None  # the local runner watches a file; Kubernetes takes reports
    report_url: str | None = None  # POST /report, when this backend's pods can reach one
    report_secret: str | None = None  # the key of the per-attempt report token


def attempt_env(launch: AttemptLaunch, places: AttemptPlaces) -> dict[str, str]:
    """The user's --env, then the EXPBOT_* contract (after them, so no --env can fake one)."""
    values = {
        **launch.spec.env,
        "EXPBOT_EXPERIMENT": launch.experiment_name,
        "EXPBOT_EXPERIMENT_ID": launch.experiment_id,
        "EXPBOT_ATTEMPT": str(launch.attempt),
        "EXPBOT_CHECKPOINT_DIR": places.checkpoint_dir,
        "EXPBOT_RESUME_FROM": launch.resume_from or "",
    }
    if places.heartbeat_file is not None:
        values["EXPBOT_HEARTBEAT_FILE"] = places.heartbeat_file
    values["PYTHONUNBUFFERED"] = "1"  # output reaches the log (and the failure evidence) as it is written
    if places.report_url and places.report_secret:
        values["EXPBOT_REPORT_URL"] = places.report_url
        values["EXPBOT_REPORT_TOKEN"] = attempt_token(places.report_secret, launch.experiment_id, launch.attempt)
    return values
