"""ClusterBackend on Kubernetes: one Job per attempt, a PVC per experiment, status from a watch."""
from __future__ import annotations

import fnmatch
import logging
import posixpath
import threading
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any

from kubernetes import client

from adapters.k8s import manifests, names
from adapters.k8s.classify import attempt_status
from adapters.k8s.config import K8sConfig
from adapters.k8s.errors import KubeConflict, KubeError, KubeNotFound, call
from adapters.k8s.gang import gang_status, park_reason
from adapters.k8s.nodes import NodeHealth, with_node_evidence
from adapters.k8s.views import JobView
from adapters.k8s.watch import ClusterCache, Watcher, stop_all
from core.ports import AttemptLaunch, AttemptPhase, AttemptStatus, Clock, SubmitResult
from core.progress import ProgressStore
from core.rendezvous import node_size_refusal
from core.spec import ExperimentSpec

log = logging.getLogger(__name__)
_HEARTBEAT_REFRESH = timedelta(seconds=5)
# Older reports cannot matter: an attempt silent that long has stalled by any sane stall timeout,
# and without a report the supervisor counts from the attempt's start, which is older still.
_HEARTBEAT_WINDOW = timedelta(days=1)
# The supervisor reads a failed attempt's log on its only thread: one try, bounded in time. A
# kubelet that cannot serve it (node gone, log rotated) must cost seconds at most, never a backoff.
_LOG_READ_TIMEOUT = (3.0, 5.0)  # (connect, read) seconds
# Open streams are shut at once; only a list call in flight can hold a watch thread (a daemon) longer,
# and shutdown must not wait for it: `expbot serve` has 2 s to exit.
_WATCH_STOP_TIMEOUT = 1.0


class K8sBackend:
    """Runs attempts as Jobs in one namespace. Call start() (the leader does) before status()."""

    def __init__(
        self, api_client: client.ApiClient, config: K8sConfig, clock: Clock,
        progress: ProgressStore | None = None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.progress = progress
        self.batch = client.BatchV1Api(api_client)
        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self.cache = ClusterCache()
        self.nodes = NodeHealth(clock.now) if config.watch_nodes else None
        self._watchers: list[Watcher] = []
        self._watchers_lock = threading.Lock()  # close() may come from serve's stop thread and its lead()
        self._heartbeats: dict[tuple[str, int], datetime] = {}
        self._heartbeats_at: datetime | None = None

    # --- lifecycle ---------------------------------------------------------------------------
    def start(self, sync_timeout: float = 60.0) -> "K8sBackend":
        """List and watch Jobs and Pods; returns once both lists are in (status() depends on them)."""
        ns = self.config.namespace
        watchers = [
            Watcher("jobs", self.batch.list_namespaced_job, ns, self.cache).start(),
            Watcher("pods", self.core.list_namespaced_pod, ns, self.cache).start(),
        ]
        if self.config.queue_name:
            # Kueue's reason for a waiting Job, and its eviction of an admitted one, are on the Workload.
            self.cache.synced["workloads"] = threading.Event()
            watchers.append(Watcher("workloads", self._list_workloads, ns, self.cache, selector=None).start())
        if self.nodes is not None:
            # Not waited for: node evidence is extra, and a missing ClusterRole must not stop expbot
            # (the watcher says so in the log at every retry).
            watchers.append(Watcher("nodes", lambda _ns, **kw: self.core.list_node(**kw), ns, self.nodes,
                                    selector=None).start())
        with self._watchers_lock:
            self._watchers = watchers
        for kind, synced in self.cache.synced.items():
            if not synced.wait(sync_timeout):
                self.close()
                raise KubeError(f"could not list {kind} in namespace {ns} within {sync_timeout:g}s")
        return self

    def close(self) -> None:
        """Stop watching (open streams are shut at once) and end a wait_for_change in progress."""
        with self._watchers_lock:
            watchers, self._watchers = self._watchers, []
        self.cache.interrupt()  # the supervisor's pump must not wait on a watch that is gone
        stop_all(watchers, _WATCH_STOP_TIMEOUT)

    def relists(self) -> dict[str, int]:
        """How often each watch had to list again, by resource (serve's /metrics reads it)."""
        with self._watchers_lock:
            return {w.kind: w.relists for w in self._watchers}

    # --- ClusterBackend ----------------------------------------------------------------------
    def check_fits(self, spec: ExperimentSpec) -> str | None:
        """Why the spec can never be placed (more GPUs than any node has), or None."""
        if (why := node_size_refusal(spec, self.config.max_gpus_per_node)) is not None:
            return why  # suggesting the same total over more nodes (--nodes 2 --gpus 8)
        if spec.nodes > 1 and self.config.shared_storage() is None:
            return (f"a {spec.nodes}-node experiment needs a checkpoint volume every node can mount: set "
                    "[kubernetes] shared_storage_class to a ReadWriteMany storage class")
        return None

    def submit(self, launch: AttemptLaunch) -> SubmitResult:
        """Create the attempt's PVC (first attempt) and Job; both exist already after a crash: fine."""
        if (why := self.check_fits(launch.spec)) is not None:
            return SubmitResult(False, why)
        ns = self.config.namespace
        self._create_if_absent(lambda: self.core.create_namespaced_persistent_volume_claim(
            ns, manifests.pvc(launch, self.config)))
        body = manifests.job(launch, self.config)
        created = self._create_if_absent(lambda: self.batch.create_namespaced_job(ns, body))
        key = (launch.experiment_id, launch.attempt)
        if created is not None and self.cache.get(key)[0] is None:
            # Seen at once as STARTING, before the watch delivers it: never "vanished".
            view = JobView.from_raw(self.batch.api_client.sanitize_for_serialization(created))
            if view is not None:
                self.cache.put_job(view)
        if launch.spec.nodes > 1:
            # Owned by the Job: deleting the Job (stop) or its TTL removes it too.
            uid = created.metadata.uid if created is not None else getattr(self.cache.get(key)[0], "uid", "")
            service = manifests.service(launch, self.config, uid)
            self._create_if_absent(lambda: self.core.create_namespaced_service(ns, service))
        return SubmitResult(True)

    def status(self, experiment_id: str, attempt: int) -> AttemptStatus | None:
        """From the watch cache; last_progress_at from reported heartbeats. No API call, except to take a
        half-placed gang down (gang_timeout) or put it up again (gang_retry)."""
        key = (experiment_id, attempt)
        job, pod = self.cache.get(key)
        now = self.clock.now()
        if (job is not None and (job.size > 1 or job.suspended)) or (pod is not None and pod.index > 0):
            gang = self.cache.gang(key)
            workload = self.cache.workload(job.name) if job is not None and self.config.queue_name else None
            found = gang_status(job, gang, now, self.config.image_pull_grace, workload)
            if job is not None and not self.config.queue_name:
                found = self._tend_gang(job, gang, found, now)
            pod = next((p for p in gang if found is not None and found.node == p.node), pod)
        else:
            found = attempt_status(job, pod, now, self.config.image_pull_grace)
        if found is not None and self.nodes is not None and pod is not None:
            # The pod's creation bounds the attempt from below (a finished container no longer says when it started).
            found = with_node_evidence(found, self.nodes, pod.created_at)
        if found is None or self.progress is None:
            return found
        heard = self._last_heartbeat(experiment_id, attempt, now)
        return found if heard is None else _with_progress(found, heard)

    def stop(self, experiment_id: str, attempt: int, grace: timedelta) -> None:
        """Delete the attempt's Job and, through propagation, its pods (they get `grace` to exit)."""
        name = names.job_name(experiment_id, attempt)
        # Its pods get the template's terminationGracePeriodSeconds (the configured stop grace).
        body = client.V1DeleteOptions(propagation_policy="Background")
        try:
            call(lambda: self.batch.delete_namespaced_job(name, self.config.namespace, body=body))
        except KubeNotFound:
            pass

    def cordon_node(self, node: str) -> None:
        """Mark a node unschedulable (as `kubectl cordon`); KubeError when it cannot be patched."""
        call(lambda: self.core.patch_node(node, {"spec": {"unschedulable": True}}))

    def release(self, experiment_id: str) -> None:
        """Delete the experiment's checkpoint volume claim, unless the policy keeps checkpoints."""
        if self.config.keep_checkpoints:
            return
        try:
            call(lambda: self.core.delete_namespaced_persistent_volume_claim(
                names.pvc_name(experiment_id), self.config.namespace))
        except KubeNotFound:
            pass

    def latest_checkpoint(self, experiment_id: str, pattern: str) -> str | None:
        """The newest checkpoint the attempts reported (None: the job finds its own in EXPBOT_CHECKPOINT_DIR)."""
        if self.progress is None:
            return None
        path = self.progress.latest_checkpoint(experiment_id)
        if path is None or pattern in ("", "*", "**"):
            return path
        relative = posixpath.relpath(path, self.config.checkpoint_mount) if path.startswith("/") else path
        return path if fnmatch.fnmatch(relative, pattern) or fnmatch.fnmatch(posixpath.basename(path), pattern) else None

    def logs(self, experiment_id: str, attempt: int, tail_lines: int | None = None) -> str:
        """The tail of the attempt's pod log ("" when the pod or its log is gone or cannot be read at once)."""
        kwargs: dict[str, Any] = {"container": manifests.CONTAINER, "_request_timeout": _LOG_READ_TIMEOUT}
        if tail_lines is not None:
            kwargs["tail_lines"] = max(0, tail_lines)
        _job, pod = self.cache.get((experiment_id, attempt))
        try:
            pod_name = pod.name if pod else self._find_pod(experiment_id, attempt)
            if not pod_name:
                return ""
            text = call(lambda: self.core.read_namespaced_pod_log(pod_name, self.config.namespace, **kwargs), attempts=1)
        except KubeError as e:
            log.info("no log for %s attempt %d: %s", experiment_id, attempt, e)
            return ""
        return text if isinstance(text, str) else str(text)

    def process_info(self, experiment_id: str, attempt: int) -> dict | None:
        """Where an attempt runs, for `expbot status`: each pod of it with its node and phase (None: no pod)."""
        selector = f"{names.EXPERIMENT}={experiment_id},{names.ATTEMPT}={attempt}"
        try:
            pods = call(lambda: self.core.list_namespaced_pod(
                self.config.namespace, label_selector=selector, _request_timeout=_LOG_READ_TIMEOUT), attempts=1)
        except KubeError as e:
            log.info("no pods listed for %s attempt %d: %s", experiment_id, attempt, e)
            return None
        found = [{"name": p.metadata.name, "node": p.spec.node_name, "phase": p.status.phase if p.status else None}
                 for p in sorted(pods.items, key=lambda p: p.metadata.name)]
        return {"namespace": self.config.namespace, "pods": found} if found else None

    def wait_for_change(self, timeout: float) -> set[str] | None:
        """Block until the watch sees a change (or timeout); the experiments it touched."""
        return self.cache.wait_for_change(timeout)

    # --- internals ---------------------------------------------------------------------------
    def _tend_gang(self, job: JobView, gang: list[Any], found: AttemptStatus | None, now: datetime) -> AttemptStatus | None:
        """Without Kueue: take a half-placed gang down after gang_timeout (suspend: its pods go, no GPU is
        held) and try it whole again gang_retry later. The Job's annotations keep this across restarts."""
        if job.suspended and job.parked_at is not None and now - job.parked_at >= self.config.gang_retry:
            self._patch_job(job.name, {"metadata": {"annotations": {names.GANG_PARKED_AT: None, names.GANG_PARKED_REASON: None}},
                                       "spec": {"suspend": False}})
            return found
        reason = park_reason(job, gang, now, self.config.gang_timeout)
        if reason is None:
            return found
        stamp = now.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        if self._patch_job(job.name, {"metadata": {"annotations": {names.GANG_PARKED_AT: stamp, names.GANG_PARKED_REASON: reason}},
                                      "spec": {"suspend": True}}):
            log.info("gang %s: part of it unschedulable for %s, taken down: %s", job.name, self.config.gang_timeout, reason)
            return AttemptStatus(AttemptPhase.QUEUED, reason=reason)
        return found

    def _patch_job(self, name: str, body: dict[str, Any]) -> bool:
        try:
            call(lambda: self.batch.patch_namespaced_job(name, self.config.namespace, body), attempts=1)
            return True
        except KubeError as e:  # tried again at the next pass
            log.warning("could not patch Job %s: %s", name, e)
            return False

    def _list_workloads(self, namespace: str, **kwargs: Any) -> Any:
        return self.custom.list_namespaced_custom_object("kueue.x-k8s.io", "v1beta2", namespace, "workloads", **kwargs)

    def _create_if_absent(self, create: Any) -> Any:
        try:
            return call(create)
        except KubeConflict:
            return None  # made by an earlier pass that died before recording it: the same object

    def _find_pod(self, experiment_id: str, attempt: int) -> str | None:
        selector = f"{names.EXPERIMENT}={experiment_id},{names.ATTEMPT}={attempt}"
        pods = call(lambda: self.core.list_namespaced_pod(
            self.config.namespace, label_selector=selector, _request_timeout=_LOG_READ_TIMEOUT), attempts=1)
        newest = max(pods.items, key=lambda p: p.metadata.creation_timestamp, default=None)
        return newest.metadata.name if newest else None

    def _last_heartbeat(self, experiment_id: str, attempt: int, now: datetime) -> datetime | None:
        # One query for every attempt every few seconds, not one per attempt per pass.
        if self._heartbeats_at is None or now - self._heartbeats_at >= _HEARTBEAT_REFRESH:
            assert self.progress is not None
            try:
                self._heartbeats = self.progress.heartbeats(now - _HEARTBEAT_WINDOW)
                self._heartbeats_at = now
            except Exception:
                log.exception("could not read progress reports")
        return self._heartbeats.get((experiment_id, attempt))


def _with_progress(status: AttemptStatus, heard: datetime) -> AttemptStatus:
    newest = max(heard, status.last_progress_at) if status.last_progress_at else heard
    return replace(status, last_progress_at=newest)
