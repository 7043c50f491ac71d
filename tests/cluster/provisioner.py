"""A stand-in volume provisioner for the test control plane: every new claim gets a matching PV.

The test cluster has no storage driver; real clusters provision a volume per claim, and the
controller-manager's PV controller binds them, exactly as it does here.
"""
from __future__ import annotations

import logging
import threading
from typing import Any

from kubernetes import client, watch
from kubernetes.client.rest import ApiException

log = logging.getLogger(__name__)


class FakeProvisioner:
    """Watches claims in one namespace and creates a pre-bound hostPath PV for each."""

    def __init__(self, api: Any, namespace: str) -> None:
        self.core = client.CoreV1Api(api)
        self.namespace = namespace
        self.created: list[str] = []
        self._watch = watch.Watch()
        self._thread = threading.Thread(target=self._run, name=f"provisioner-{namespace}", daemon=True)

    def start(self) -> "FakeProvisioner":
        """Provision in the background."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop watching and delete the PVs it made."""
        self._watch.stop()
        self._thread.join(timeout=5)
        for name in self.created:
            try:
                self.core.delete_persistent_volume(name)
            except ApiException:
                pass

    def _run(self) -> None:
        while True:
            try:
                for event in self._watch.stream(self.core.list_namespaced_persistent_volume_claim, self.namespace,
                                                timeout_seconds=60):
                    claim = event["object"]
                    if event["type"] == "ADDED" and not claim.spec.volume_name:
                        self._provision(claim)
            except Exception:  # the API restarting under a test: watch again
                log.info("provisioner watch ended; watching again", exc_info=True)
            if self._watch._stop:  # noqa: SLF001 - the library's own stop flag
                return

    def _provision(self, claim: client.V1PersistentVolumeClaim) -> None:
        name = f"pv-{claim.metadata.uid}"
        pv = client.V1PersistentVolume(
            metadata=client.V1ObjectMeta(name=name),
            spec=client.V1PersistentVolumeSpec(
                capacity={"storage": claim.spec.resources.requests["storage"]},
                access_modes=claim.spec.access_modes,
                host_path=client.V1HostPathVolumeSource(path=f"/tmp/expbot-test-pv/{name}"),
                persistent_volume_reclaim_policy="Retain",
                storage_class_name=claim.spec.storage_class_name or "",
                claim_ref=client.V1ObjectReference(
                    namespace=claim.metadata.namespace, name=claim.metadata.name, uid=claim.metadata.uid),
            ),
        )
        try:
            self.core.create_persistent_volume(pv)
            self.created.append(name)
        except ApiException as e:
            if e.status != 409:
                log.warning("could not provision %s: %s", name, e)
