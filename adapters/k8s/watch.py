"""List-then-watch of expbot's Jobs and Pods into a small in-memory cache (no polling per experiment).

Each kind has one thread: list (paginated) -> watch from the list's resourceVersion -> on 410 Gone,
list again; a stream that stays quiet past its read timeout is reopened from the last version seen.
"""
from __future__ import annotations

import json
import logging
import random
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

from kubernetes import watch as k8s_watch
from urllib3.exceptions import ProtocolError, ReadTimeoutError

from adapters.k8s.errors import WatchExpired, translate
from adapters.k8s.names import MANAGED_SELECTOR
from adapters.k8s.views import JobView, PodView
from core.policy import Backoff

log = logging.getLogger(__name__)
Key = tuple[str, int]  # (experiment id, attempt)
_PAGE = 500
_RELIST_BACKOFF = Backoff(base=timedelta(seconds=0.2), cap=timedelta(seconds=30))


class ClusterCache:
    """The newest view of every attempt's Job and pod, plus which experiments changed since asked."""

    def __init__(self) -> None:
        self.jobs: dict[Key, JobView] = {}
        self.pods: dict[Key, PodView] = {}
        self._lock = threading.Lock()
        self._changed_ids: set[str] = set()
        self._changed = threading.Event()
        self.synced = {"jobs": threading.Event(), "pods": threading.Event()}

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
            if kind == "jobs":
                view = JobView.from_raw(raw)
                if view is None:
                    return
                key = (view.experiment_id, view.attempt)
                if event_type == "DELETED":
                    self.jobs.pop(key, None)
                    self.pods.pop(key, None)  # its pods go with it; nothing more to learn
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
            self._mark(key[0])

    def replace(self, kind: str, raws: list[dict[str, Any]]) -> None:
        """A fresh list replaces what we knew of a kind; whatever vanished meanwhile counts as deleted."""
        with self._lock:
            if kind == "jobs":
                fresh = {(v.experiment_id, v.attempt): v for v in map(JobView.from_raw, raws) if v}
                for key in self.jobs.keys() - fresh.keys():
                    self.pods.pop(key, None)
                changed = {k[0] for k in fresh.keys() ^ self.jobs.keys()} | {
                    k[0] for k, v in fresh.items() if self.jobs.get(k) != v}
                self.jobs = fresh
            else:
                fresh_pods: dict[Key, PodView] = {}
                for pod in filter(None, map(PodView.from_raw, raws)):
                    key = (pod.experiment_id, pod.attempt)
                    if key not in fresh_pods or _newer(pod, fresh_pods[key]):
                        fresh_pods[key] = pod
                for key, old in self.pods.items():
                    if key not in fresh_pods and not old.deleted:
                        fresh_pods[key] = _as_deleted(old)
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

    def mark_changed(self, experiment_id: str) -> None:
        """Count an experiment as changed without a cluster event (e.g. expbot just launched it)."""
        with self._lock:
            self._mark(experiment_id)

    def _mark(self, experiment_id: str) -> None:
        self._changed_ids.add(experiment_id)
        self._changed.set()


_NEVER = datetime.min.replace(tzinfo=timezone.utc)


def _newer(a: PodView, b: PodView) -> bool:
    return (a.created_at or _NEVER, a.name) > (b.created_at or _NEVER, b.name)


def _as_deleted(pod: PodView) -> PodView:
    return replace(pod, deleted=True)


class Watcher:
    """One thread keeping the cache of one kind ("jobs" or "pods") in step with the API."""

    def __init__(
        self, kind: str, list_fn: Callable[..., Any], namespace: str, cache: ClusterCache, *,
        read_timeout: float = 90.0, watch_timeout: int = 300,
    ) -> None:
        self.kind, self.list_fn, self.namespace, self.cache = kind, list_fn, namespace, cache
        self.read_timeout, self.watch_timeout = read_timeout, watch_timeout
        self._stop = threading.Event()
        self._watch: k8s_watch.Watch | None = None
        self._thread = threading.Thread(target=self._run, name=f"k8s-watch-{kind}", daemon=True)
        self.relists = 0  # how often it had to list again (410 Gone, errors): for tests and metrics

    def start(self) -> "Watcher":
        """Start listing and watching in the background."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread (an open stream is closed at once)."""
        self._stop.set()
        if self._watch is not None:
            self._watch.stop()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                version = self._list()
                failures = 0
                while not self._stop.is_set():
                    version = self._watch_from(version)
            except WatchExpired:
                log.info("%s watch expired (410 Gone): listing again", self.kind)
            except Exception as e:  # the API restarting, the network: list again after a pause
                failures += 1
                delay = _RELIST_BACKOFF.delay(failures + 1, random).total_seconds()  # type: ignore[arg-type]
                log.warning("%s watch failed (%s); listing again in %.1fs", self.kind, translate(e), delay)
                self._stop.wait(delay)
            self.relists += 1

    def _list(self) -> str:
        items: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            resp = self.list_fn(
                self.namespace, label_selector=MANAGED_SELECTOR, limit=_PAGE, _continue=token,
                _preload_content=False, _request_timeout=(10, 60),
            )
            body = json.loads(resp.data)
            items.extend(body.get("items") or ())
            meta = body.get("metadata") or {}
            token = meta.get("continue")
            if not token:
                self.cache.replace(self.kind, items)
                return str(meta.get("resourceVersion", ""))

    def _watch_from(self, version: str) -> str:
        """Stream events from `version` until the server ends the watch; the newest version seen."""
        self._watch = k8s_watch.Watch()
        stream = self._watch.stream(
            self.list_fn, self.namespace, label_selector=MANAGED_SELECTOR, resource_version=version,
            allow_watch_bookmarks=True, timeout_seconds=self.watch_timeout,
            _request_timeout=(10, self.read_timeout), deserialize=False,
        )
        try:
            for event in stream:
                if not isinstance(event, dict):
                    continue
                obj = event.get("object") or {}
                version = (obj.get("metadata") or {}).get("resourceVersion") or version
                if event.get("type") in ("ADDED", "MODIFIED", "DELETED"):
                    self.cache.apply(self.kind, event["type"], obj)
        except KeyError as e:
            # With deserialize=False the client fails on an ERROR event (it reads a key it never set):
            # the server ended the watch, almost always with 410 Gone.
            raise WatchExpired(f"{self.kind} watch ended by the server ({e})") from e
        except (ReadTimeoutError, ProtocolError) as e:
            # Quiet past the read timeout, or the server closed the stream: reopen from where we were.
            log.debug("%s watch stream ended (%s): watching again from %s", self.kind, e, version)
        except Exception as e:
            raise translate(e) from e
        return version
