"""The watch cache: the newest view of every attempt's Job and pods (and Kueue's Workload of it)."""
from __future__ import annotations

import threading
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

from adapters.k8s.views import JobView, PodView, WorkloadView

Key = tuple[str, int]  # (experiment id, attempt)


class ClusterCache:
    """The newest view of every attempt's Job and pod, plus which experiments changed since asked."""

    def __init__(self) -> None:
        self.jobs: dict[Key, JobView] = {}
        self.pods: dict[Key, PodView] = {}
        self.gangs: dict[Key, dict[str, PodView]] = {}  # every pod of an attempt, by name (a gang has several)
        self.workloads: dict[str, WorkloadView] = {}  # Kueue's Workload of a Job, by the Job's name
        self._by_name: dict[str, Key] = {}  # Job name -> attempt, for the Workloads' owners
        self._lock = threading.Lock()
        self._changed_ids: set[str] = set()
        self._changed = threading.Event()
        self.synced = {"jobs": threading.Event(), "pods": threading.Event()}

    def gang(self, key: Key) -> list[PodView]:
        """Every pod of one attempt, by rank."""
        with self._lock:
            return sorted((self.gangs.get(key) or {}).values(), key=lambda p: (p.index, p.name))

    def workload(self, job_name: str) -> WorkloadView | None:
        """Kueue's Workload of a Job, when Kueue manages it (and its Workloads are watched)."""
        with self._lock:
            return self.workloads.get(job_name)

    def get(self, key: Key) -> tuple[JobView | None, PodView | None]:
        """The Job and pod views of one attempt."""
        with self._lock:
            return self.jobs.get(key), self.pods.get(key)

    def put_job(self, view: JobView) -> None:
        """Record a Job view (e.g. the one just created, before its watch event arrives)."""
        with self._lock:
            self.jobs[(view.experiment_id, view.attempt)] = view
            self._mark(view.experiment_id)

    def apply(self, kind: str, event_type: str, raw: dict[str, Any]) -> None:
        """Fold one watch event in."""
        with self._lock:
            if kind == "workloads":
                self._apply_workload(event_type, raw)
                return
            if kind == "jobs":
                view = JobView.from_raw(raw)
                if view is None:
                    return
                key = (view.experiment_id, view.attempt)
                if event_type == "DELETED":
                    self.jobs.pop(key, None)
                    self.pods.pop(key, None)  # its pods go with it; nothing more to learn
                    self.gangs.pop(key, None)
                else:
                    self.jobs[key] = view
            else:
                pod = PodView.from_raw(raw, deleted=event_type == "DELETED")
                if pod is None:
                    return
                key = (pod.experiment_id, pod.attempt)
                if event_type == "DELETED" and key not in self.jobs and key not in self.pods:
                    return
                current = self.pods.get(key)
                # One pod per attempt (backoffLimit 0); should a second appear, the newest wins.
                if current is None or current.name == pod.name or _newer(pod, current):
                    self.pods[key] = pod
                self.gangs.setdefault(key, {})[pod.name] = pod
            self._mark(key[0])

    def replace(self, kind: str, raws: list[dict[str, Any]]) -> None:
        """A fresh list replaces what we knew of a kind; whatever vanished meanwhile counts as deleted."""
        with self._lock:
            if kind == "workloads":
                self.workloads = {}
                for raw in raws:
                    self._apply_workload("ADDED", raw)
                self.synced.setdefault(kind, threading.Event()).set()
                return
            if kind == "jobs":
                fresh = {(v.experiment_id, v.attempt): v for v in map(JobView.from_raw, raws) if v}
                for key in self.jobs.keys() - fresh.keys():
                    self.pods.pop(key, None)
                    self.gangs.pop(key, None)
                changed = {k[0] for k in fresh.keys() ^ self.jobs.keys()} | {
                    k[0] for k, v in fresh.items() if self.jobs.get(k) != v}
                self.jobs = fresh
            else:
                fresh_pods: dict[Key, PodView] = {}
                fresh_gangs: dict[Key, dict[str, PodView]] = {}
                for pod in filter(None, map(PodView.from_raw, raws)):
                    key = (pod.experiment_id, pod.attempt)
                    fresh_gangs.setdefault(key, {})[pod.name] = pod
                    if key not in fresh_pods or _newer(pod, fresh_pods[key]):
                        fresh_pods[key] = pod
                for key, old in self.pods.items():
                    if key not in fresh_pods and not old.deleted:
                        fresh_pods[key] = _as_deleted(old)
                for key, members in self.gangs.items():
                    for name, old in members.items():  # vanished meanwhile: deleted
                        if name not in fresh_gangs.get(key, {}) and not old.deleted:
                            fresh_gangs.setdefault(key, {})[name] = _as_deleted(old)
                self.gangs = fresh_gangs
                changed = {k[0] for k, v in fresh_pods.items() if self.pods.get(k) != v}
                self.pods = fresh_pods
            for experiment_id in changed:
                self._mark(experiment_id)
        self.synced[kind].set()

    def wait_for_change(self, timeout: float) -> set[str]:
        """Block until something changed (or timeout); the experiments that changed since the last call."""
        if self._changed.wait(timeout):
            self._changed.clear()
        with self._lock:
            changed, self._changed_ids = self._changed_ids, set()
        return changed

    def interrupt(self) -> None:
        """End a wait_for_change now, naming no experiment (expbot is stopping)."""
        self._changed.set()

    def _apply_workload(self, event_type: str, raw: dict[str, Any]) -> None:
        view = WorkloadView.from_raw(raw)
        if view is None:
            return
        if event_type == "DELETED":
            self.workloads.pop(view.job_name, None)
        else:
            self.workloads[view.job_name] = view
        if view.job_name not in self._by_name:  # rebuilt only on a miss: a Job new since the last one
            self._by_name = {job.name: k for k, job in self.jobs.items()}
        owner = self._by_name.get(view.job_name)
        if owner is not None and owner in self.jobs:
            self._mark(owner[0])

    def _mark(self, experiment_id: str) -> None:
        self._changed_ids.add(experiment_id)
        self._changed.set()


_NEVER = datetime.min.replace(tzinfo=timezone.utc)


def _newer(a: PodView, b: PodView) -> bool:
    return (a.created_at or _NEVER, a.name) > (b.created_at or _NEVER, b.name)


def _as_deleted(pod: PodView) -> PodView:
    return replace(pod, deleted=True)
