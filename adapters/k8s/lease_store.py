"""The Lease as the elector sees it (LeaseRecord), the port it reads and writes it through
(LeaseStore), and that port on the real API (KubeLeaseStore)."""
from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol

from kubernetes import client
from kubernetes.client.rest import ApiException
from urllib3.exceptions import HTTPError

from adapters.k8s.errors import KubeError, KubeNotFound, translate


# --- the Lease as the elector sees it ---------------------------------------------------------
@dataclass(frozen=True)
class LeaseRecord:
    """A Lease's spec plus the resourceVersion it was read at (None: not yet stored)."""

    holder: str  # "" when nobody holds it
    lease_duration_seconds: int
    acquire_time: datetime | None
    renew_time: datetime | None
    transitions: int = 0
    resource_version: str | None = None

    def spec_key(self) -> tuple[Any, ...]:
        """What a change of leadership or a renewal changes (resourceVersion aside)."""
        return (self.holder, self.lease_duration_seconds, self.acquire_time, self.renew_time, self.transitions)


class LeaseStore(Protocol):
    """The three Lease calls the elector makes, bound to one namespace and name.

    Errors are adapters.k8s.errors': KubeConflict when the Lease exists already or changed since it
    was read (resourceVersion), KubeNotFound when it vanished, any other KubeError otherwise.
    """

    def get(self, timeout: float) -> LeaseRecord | None: ...
    def create(self, record: LeaseRecord, timeout: float) -> LeaseRecord: ...
    def replace(self, record: LeaseRecord, timeout: float) -> LeaseRecord: ...


# --- the real store ---------------------------------------------------------------------------
def wire_time(value: datetime) -> datetime:
    """The instant to send as a MicroTime: UTC, never on a whole second.

    Client 37 turns the body into a pydantic V1Lease and writes datetimes with isoformat(), which
    drops the fraction at .000000; the API server parses MicroTime as RFC3339 with exactly six
    fractional digits and rejects that (400). Such an instant is sent 1 µs later.
    """
    value = value.astimezone(timezone.utc)
    return value.replace(microsecond=1) if value.microsecond == 0 else value


class KubeLeaseStore:
    """CoordinationV1Api on a private copy of the caller's ApiClient with urllib3 retries off."""

    def __init__(self, api_client: Any, namespace: str, name: str) -> None:
        config = copy.deepcopy(api_client.configuration)
        config.retries = False  # a retried call could outlive the renew deadline
        self._client = client.ApiClient(configuration=config)
        self._client.default_headers.update(api_client.default_headers)  # User-Agent, Impersonate-User...
        self._api = client.CoordinationV1Api(self._client)
        self.namespace, self.name = namespace, name
        self._metadata: dict[str, Any] = {}  # labels/annotations of the last read, kept on replace

    def get(self, timeout: float) -> LeaseRecord | None:
        try:
            lease = self._call(self._api.read_namespaced_lease, self.name, self.namespace, timeout=timeout)
        except KubeNotFound:
            return None  # there is no lease yet
        meta = lease.metadata
        self._metadata = {"labels": meta.labels, "annotations": meta.annotations}
        return self._record(lease)

    def create(self, record: LeaseRecord, timeout: float) -> LeaseRecord:
        try:  # 409 (KubeConflict): someone created it first
            lease = self._call(self._api.create_namespaced_lease, self.namespace, self._body(record), timeout=timeout)
        except KubeNotFound as e:  # the namespace is missing: not a race
            raise KubeError(f"cannot create lease {self.namespace}/{self.name}: {e}", e.status) from e
        return self._record(lease)

    def replace(self, record: LeaseRecord, timeout: float) -> LeaseRecord:
        body = self._body(record)
        lease = self._call(self._api.replace_namespaced_lease, self.name, self.namespace, body, timeout=timeout)
        return self._record(lease)

    def close(self) -> None:
        self._client.close()

    def _call(self, method: Callable[..., Any], *args: Any, timeout: float) -> Any:
        try:
            return method(*args, _request_timeout=max(timeout, 0.001))
        except (ApiException, HTTPError, OSError) as e:
            raise translate(e) from e

    def _body(self, record: LeaseRecord) -> dict[str, Any]:
        metadata: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if record.resource_version is not None:
            metadata["resourceVersion"] = record.resource_version
            metadata.update({k: v for k, v in self._metadata.items() if v})
        spec: dict[str, Any] = {
            "holderIdentity": record.holder,
            "leaseDurationSeconds": record.lease_duration_seconds,
            "leaseTransitions": record.transitions,
        }
        if record.acquire_time is not None:
            spec["acquireTime"] = wire_time(record.acquire_time)
        if record.renew_time is not None:
            spec["renewTime"] = wire_time(record.renew_time)
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata, "spec": spec}

    @staticmethod
    def _record(lease: Any) -> LeaseRecord:
        spec = lease.spec

        def utc(value: datetime | None) -> datetime | None:
            return value.astimezone(timezone.utc) if value is not None else None

        return LeaseRecord(
            holder=(spec.holder_identity or "") if spec else "",
            lease_duration_seconds=(spec.lease_duration_seconds or 0) if spec else 0,
            acquire_time=utc(spec.acquire_time) if spec else None,
            renew_time=utc(spec.renew_time) if spec else None,
            transitions=(spec.lease_transitions or 0) if spec else 0,
            resource_version=lease.metadata.resource_version,
        )
