"""ClusterCache: watch events and relists folded into the newest Job and pod of every attempt."""
from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any

from adapters.k8s import names
from adapters.k8s.views import JobView
from adapters.k8s.watch import ClusterCache

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)
A, B, C = "aaaaaaaa" + "0" * 24, "bbbbbbbb" + "1" * 24, "cccccccc" + "2" * 24


def ts(at: datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%SZ")


def labels(eid: str, attempt: int) -> dict[str, str]:
    return {names.MANAGED_BY: names.MANAGER, names.EXPERIMENT: eid, names.ATTEMPT: str(attempt)}


def job(eid: str, attempt: int = 1, *, rv: str = "1", complete: bool = False, suspend: bool = False) -> dict[str, Any]:
    status: dict[str, Any] = {}
    if complete:
        status = {"completionTime": ts(T0), "conditions": [{"type": "Complete", "status": "True"}]}
    return {"metadata": {"name": names.job_name(eid, attempt), "resourceVersion": rv, "labels": labels(eid, attempt),
                         "creationTimestamp": ts(T0)},
            "spec": {"suspend": suspend}, "status": status}


def pod(eid: str, attempt: int = 1, *, suffix: str = "abcde", created: datetime = T0,
        phase: str = "Pending", exit_code: int | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase}
    if phase == "Running":
        status["containerStatuses"] = [{"name": "train", "state": {"running": {"startedAt": ts(created)}}}]
    if exit_code is not None:
        status["containerStatuses"] = [{"name": "train", "state": {"terminated": {
            "exitCode": exit_code, "reason": "Error", "finishedAt": ts(created + timedelta(minutes=1))}}}]
    return {"metadata": {"name": f"{names.job_name(eid, attempt)}-{suffix}", "labels": labels(eid, attempt),
                         "creationTimestamp": ts(created), "resourceVersion": "7"},
            "status": status}


def drained(cache: ClusterCache) -> set[str]:
    return cache.wait_for_change(0.01)


# ------------------------------------------------------------------------------------ jobs
def test_job_added_modified_deleted():
    cache = ClusterCache()
    cache.apply("jobs", "ADDED", job(A, rv="1"))
    found, _ = cache.get((A, 1))
    assert found is not None and found.resource_version == "1" and not found.complete
    cache.apply("jobs", "MODIFIED", job(A, rv="2", complete=True))
    found, _ = cache.get((A, 1))
    assert found.resource_version == "2" and found.complete
    cache.apply("jobs", "DELETED", job(A, rv="3", complete=True))
    assert cache.get((A, 1)) == (None, None)
    assert drained(cache) == {A}


def test_attempts_are_kept_apart():
    cache = ClusterCache()
    cache.apply("jobs", "ADDED", job(A, 1))
    cache.apply("jobs", "ADDED", job(A, 2, suspend=True))
    cache.apply("jobs", "ADDED", job(B, 1))
    assert not cache.get((A, 1))[0].suspended and cache.get((A, 2))[0].suspended
    assert cache.get((B, 1))[0].name == names.job_name(B, 1) and cache.get((B, 2)) == (None, None)


def test_a_deleted_job_takes_its_pods_along():
    cache = ClusterCache()
    cache.apply("jobs", "ADDED", job(A))
    cache.apply("pods", "ADDED", pod(A, phase="Running"))
    cache.apply("jobs", "ADDED", job(B))
    cache.apply("pods", "ADDED", pod(B, phase="Running"))
    drained(cache)
    cache.apply("jobs", "DELETED", job(A))
    assert cache.get((A, 1)) == (None, None)
    assert cache.get((B, 1))[1] is not None  # only that attempt's
    assert drained(cache) == {A}


def test_put_job_is_seen_at_once_and_counts_as_a_change():
    cache = ClusterCache()
    view = JobView.from_raw(job(C, 4))
    cache.put_job(view)
    assert cache.get((C, 4)) == (view, None)
    assert drained(cache) == {C}


def test_objects_that_are_not_expbots_are_ignored():
    cache = ClusterCache()
    foreign = {"metadata": {"name": "other", "labels": {"app": "web"}}, "status": {}}
    cache.apply("jobs", "ADDED", foreign)
    cache.apply("pods", "ADDED", foreign)
    assert cache.jobs == {} and cache.pods == {}
    assert drained(cache) == set()


# ------------------------------------------------------------------------------------ pods
def test_pod_added_modified_deleted():
    cache = ClusterCache()
    cache.apply("jobs", "ADDED", job(A))
    cache.apply("pods", "ADDED", pod(A))
    assert cache.get((A, 1))[1].phase == "Pending"
    cache.apply("pods", "MODIFIED", pod(A, phase="Running"))
    assert cache.get((A, 1))[1].phase == "Running" and not cache.get((A, 1))[1].deleted
    cache.apply("pods", "MODIFIED", pod(A, phase="Failed", exit_code=3))
    cache.apply("pods", "DELETED", pod(A, phase="Failed", exit_code=3))
    _, found = cache.get((A, 1))
    assert found.deleted and found.terminated is not None and found.terminated.exit_code == 3  # what it was, kept


def test_the_newest_pod_wins():
    cache = ClusterCache()
    cache.apply("jobs", "ADDED", job(A))
    cache.apply("pods", "ADDED", pod(A, suffix="old00", created=T0, phase="Running"))
    cache.apply("pods", "ADDED", pod(A, suffix="new00", created=T0 + timedelta(seconds=5)))
    assert cache.get((A, 1))[1].name.endswith("-new00")
    # Later events of the older pod change nothing, not even its deletion.
    cache.apply("pods", "MODIFIED", pod(A, suffix="old00", created=T0, phase="Failed", exit_code=1))
    cache.apply("pods", "DELETED", pod(A, suffix="old00", created=T0, phase="Failed", exit_code=1))
    _, found = cache.get((A, 1))
    assert found.name.endswith("-new00") and not found.deleted and found.terminated is None
    # An older pod arriving second does not replace the newer one either.
    cache.apply("jobs", "ADDED", job(B))
    cache.apply("pods", "ADDED", pod(B, suffix="new11", created=T0 + timedelta(seconds=9)))
    cache.apply("pods", "ADDED", pod(B, suffix="old11", created=T0))
    assert cache.get((B, 1))[1].name.endswith("-new11")


def test_deleting_a_pod_nobody_knew_is_ignored():
    cache = ClusterCache()
    cache.apply("pods", "DELETED", pod(A, phase="Running"))
    assert cache.get((A, 1)) == (None, None)
    assert drained(cache) == set()


def test_a_pod_seen_before_its_job_is_kept():
    cache = ClusterCache()
    cache.apply("pods", "ADDED", pod(A))
    assert cache.get((A, 1))[1] is not None and cache.get((A, 1))[0] is None
    cache.apply("jobs", "ADDED", job(A))
    assert all(v is not None for v in cache.get((A, 1)))


# --------------------------------------------------------------------------------- relists
def test_relist_of_jobs_reports_what_changed_and_drops_pods_of_vanished_jobs():
    cache = ClusterCache()
    for eid in (A, B):
        cache.apply("jobs", "ADDED", job(eid, rv="1"))
        cache.apply("pods", "ADDED", pod(eid, phase="Running"))
    drained(cache)
    # During the gap: A's Job vanished, B's is unchanged, C's is new.
    cache.replace("jobs", [job(B, rv="1"), job(C, rv="5")])
    assert cache.get((A, 1)) == (None, None)
    assert cache.get((B, 1))[1] is not None and cache.get((C, 1))[0].resource_version == "5"
    assert drained(cache) == {A, C}
    cache.replace("jobs", [job(B, rv="2", complete=True), job(C, rv="5")])
    assert drained(cache) == {B}


def test_relist_of_pods_marks_the_vanished_ones_deleted():
    cache = ClusterCache()
    for eid in (A, B, C):
        cache.apply("jobs", "ADDED", job(eid))
    cache.apply("pods", "ADDED", pod(A, phase="Running"))
    cache.apply("pods", "ADDED", pod(B, phase="Running"))
    drained(cache)
    cache.replace("pods", [pod(B, phase="Running"), pod(C)])
    vanished = cache.get((A, 1))[1]
    assert vanished is not None and vanished.deleted and vanished.phase == "Running"
    assert not cache.get((B, 1))[1].deleted and cache.get((C, 1))[1].phase == "Pending"
    assert drained(cache) == {A, C}
    cache.replace("pods", [pod(B, phase="Running"), pod(C, phase="Running")])
    assert drained(cache) == {C}


def test_relist_of_pods_keeps_the_newest_of_several():
    cache = ClusterCache()
    cache.replace("pods", [pod(A, suffix="new00", created=T0 + timedelta(seconds=1)),
                           pod(A, suffix="old00", created=T0)])
    assert cache.get((A, 1))[1].name.endswith("-new00")


def test_relists_mark_their_kind_synced():
    cache = ClusterCache()
    assert not any(e.is_set() for e in cache.synced.values())
    cache.replace("jobs", [])
    assert cache.synced["jobs"].is_set() and not cache.synced["pods"].is_set()
    cache.replace("pods", [])
    assert cache.synced["pods"].is_set()


# --------------------------------------------------------------------------- wait_for_change
def test_changes_are_reported_once():
    cache = ClusterCache()
    cache.apply("jobs", "ADDED", job(A))
    cache.apply("jobs", "ADDED", job(B))
    cache.apply("jobs", "MODIFIED", job(A, rv="2"))
    assert cache.wait_for_change(0.01) == {A, B}
    assert cache.wait_for_change(0.01) == set()


def test_wait_for_change_wakes_on_a_change_from_another_thread():
    cache = ClusterCache()
    timer = threading.Timer(0.05, cache.apply, ("pods", "ADDED", pod(B)))
    began = time.monotonic()
    timer.start()
    try:
        assert cache.wait_for_change(10.0) == {B}
    finally:
        timer.cancel()
    assert time.monotonic() - began < 5.0


def test_wait_for_change_times_out_empty():
    cache = ClusterCache()
    began = time.monotonic()
    assert cache.wait_for_change(0.05) == set()
    assert time.monotonic() - began >= 0.04
