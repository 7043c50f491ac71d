"""In-memory Leases behind the LeaseStore port (passes the same contract tests as KubeLeaseStore)."""
from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import timezone

from adapters.k8s.errors import KubeConflict, KubeNotFound, KubeTransient
from adapters.k8s.leader import LeaseRecord


class FakeLeaseServer:
    """The API server's Leases: one shared state, a store per elector, resourceVersion checks."""

    def __init__(self) -> None:
        self.leases: dict[tuple[str, str], LeaseRecord] = {}
        self.writes: list[tuple[str, str, LeaseRecord]] = []  # (verb, name, record) in order
        self._version = 0
        self._lock = threading.Lock()

    def store(self, namespace: str, name: str) -> FakeLeaseStore:
        return FakeLeaseStore(self, namespace, name)

    def _next(self, record: LeaseRecord) -> LeaseRecord:
        self._version += 1
        # The API keeps MicroTime: microseconds, UTC.
        times = {k: getattr(record, k).astimezone(timezone.utc) if getattr(record, k) else None
                 for k in ("acquire_time", "renew_time")}
        return replace(record, resource_version=str(self._version), **times)


class FakeLeaseStore:
    def __init__(self, server: FakeLeaseServer, namespace: str, name: str) -> None:
        self.server, self.key = server, (namespace, name)

    def get(self, timeout: float) -> LeaseRecord | None:
        with self.server._lock:
            return self.server.leases.get(self.key)

    def create(self, record: LeaseRecord, timeout: float) -> LeaseRecord:
        with self.server._lock:
            if self.key in self.server.leases:
                raise KubeConflict(f"leases {self.key[1]!r} already exists", 409)
            stored = self.server.leases[self.key] = self.server._next(record)
            self.server.writes.append(("create", self.key[1], stored))
            return stored

    def replace(self, record: LeaseRecord, timeout: float) -> LeaseRecord:
        with self.server._lock:
            current = self.server.leases.get(self.key)
            if current is None:
                raise KubeNotFound(f"leases {self.key[1]!r} not found", 404)
            if record.resource_version != current.resource_version:
                raise KubeConflict("the object has been modified; please apply your changes to the latest version", 409)
            stored = self.server.leases[self.key] = self.server._next(record)
            self.server.writes.append(("replace", self.key[1], stored))
            return stored


class PartitionableStore:
    """Wraps any LeaseStore; while `cut`, every call fails as if the API server were unreachable."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.cut = False
        self.calls = 0
        self.last_write_at: float | None = None  # time.monotonic() when a create/replace last returned

    def _check(self) -> None:
        self.calls += 1
        if self.cut:
            raise KubeTransient("cannot reach the Kubernetes API: connection refused")

    def get(self, timeout: float) -> LeaseRecord | None:
        self._check()
        return self.inner.get(timeout)

    def create(self, record: LeaseRecord, timeout: float) -> LeaseRecord:
        self._check()
        written = self.inner.create(record, timeout)
        self.last_write_at = time.monotonic()
        return written

    def replace(self, record: LeaseRecord, timeout: float) -> LeaseRecord:
        self._check()
        written = self.inner.replace(record, timeout)
        self.last_write_at = time.monotonic()
        return written

    def close(self) -> None:
        getattr(self.inner, "close", lambda: None)()
