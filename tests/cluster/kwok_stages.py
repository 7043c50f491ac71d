"""KWOK Stage documents: which pod and node lifecycle the fake nodes play, and how fast.

Upstream documents come from ``<bin>/../stages`` (a copy of kwok's kustomize/stage), plus two of
ours, see ``EXPBOT_STAGES``. Every delay can be set per pod with an annotation
``<stage>.stage.kwok.x-k8s.io/delay`` (Go duration, e.g. "3s"); the defaults below replace
upstream's random jitter with fixed, short delays (``DEFAULT_STAGE_DELAYS_MS``):

  bound pod --pod-create--> Pending (podIP, ContainerCreating) --pod-ready--> Running, Ready
  Running Job pod --pod-complete--> Succeeded (exit 0)               [only pods owned by a Job]
  Running pod labelled pod-container-running-failed.stage.kwok.x-k8s.io=true
      --pod-container-running-failed (ours)--> Failed, container terminated with the annotated
        reason/exit-code (e.g. OOMKilled/137) and message (what a kubelet puts there with
        terminationMessagePolicy FallbackToLogsOnError: the log tail; none when not annotated)
  deleted Pending/Running pod --pod-terminate (ours)--> Failed, containers terminated
      reason Error exit 143 (what a kubelet does after SIGTERM); Job controllers then drop the
      batch.kubernetes.io/job-tracking finalizer
  deleted terminal pod without finalizers --pod-delete (ours)--> gone
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

STAGE_ANNOTATION_PREFIX = "stage.kwok.x-k8s.io"

# Upstream KWOK stage documents used, relative to the stages dir (a copy of kwok's kustomize/stage).
UPSTREAM_STAGES = {
    "node-initialize": "node/fast/node-initialize.yaml",
    "node-heartbeat": "node/heartbeat/node-heartbeat.yaml",
    "node-not-ready": "node/chaos/node-not-ready.yaml",
    "pod-create": "pod/general/pod-create.yaml",
    "pod-init-container-running": "pod/general/pod-init-container-running.yaml",
    "pod-init-container-completed": "pod/general/pod-init-container-completed.yaml",
    "pod-ready": "pod/general/pod-ready.yaml",
    "pod-complete": "pod/general/pod-complete.yaml",
}

# (delay, max delay) defaults in ms per stage; None drops upstream's jitter so that an annotated
# `/delay` alone is exact. Annotations on the object still win.
DEFAULT_STAGE_DELAYS_MS: dict[str, tuple[int, int | None]] = {
    "node-heartbeat": (10_000, 15_000),
    "node-not-ready": (500, None),
    "pod-create": (100, None),
    "pod-init-container-running": (100, None),
    "pod-init-container-completed": (500, None),
    "pod-ready": (500, None),
    "pod-complete": (1_000, None),
    "pod-container-running-failed": (1_000, None),
    "pod-terminate": (500, None),
    "pod-delete": (200, None),
}


def _annotation(stage: str, key: str) -> str:
    return f'.metadata.annotations["{stage}.{STAGE_ANNOTATION_PREFIX}/{key}"]'


_POD_TERMINATE_TEMPLATE = """\
{{ $now := Now }}
{{ $annotations := or .metadata.annotations dict }}
{{ $exitCode := or ( index $annotations "pod-terminate.stage.kwok.x-k8s.io/exit-code" ) "143" }}
{{ $reason := or ( index $annotations "pod-terminate.stage.kwok.x-k8s.io/reason" ) "Error" }}
conditions:
- lastProbeTime: null
  lastTransitionTime: {{ $now | Quote }}
  status: "False"
  reason: PodCompleted
  type: Ready
- lastProbeTime: null
  lastTransitionTime: {{ $now | Quote }}
  status: "False"
  reason: PodCompleted
  type: ContainersReady
containerStatuses:
{{ range .spec.containers }}
- image: {{ .image | Quote }}
  name: {{ .name | Quote }}
  ready: false
  restartCount: 0
  started: false
  state:
    terminated:
      exitCode: {{ $exitCode }}
      finishedAt: {{ $now | Quote }}
      reason: {{ $reason | Quote }}
      startedAt: {{ $now | Quote }}
{{ end }}
{{ if eq ( printf "%v" $exitCode ) "0" }}
phase: Succeeded
{{ else }}
phase: Failed
{{ end }}
"""

# Upstream's chaos stage of the same name writes the message unquoted (a log line such as
# "NVRM: Xid (PCI:0000:3b:00): 79, ..." breaks its YAML) and invents "container failed" when none is
# annotated; ours quotes reason and message (JSON, so several lines work) and leaves an absent one out.
_FAILED = "pod-container-running-failed.stage.kwok.x-k8s.io"
_POD_FAILED_TEMPLATE = """\
{{ $now := Now }}
{{ $annotations := or .metadata.annotations dict }}
{{ $reason := or ( index $annotations "%(p)s/reason" ) "Error" }}
{{ $message := or ( index $annotations "%(p)s/message" ) "" }}
{{ $exitCode := or ( index $annotations "%(p)s/exit-code" ) "1" }}
conditions:
- lastProbeTime: null
  lastTransitionTime: {{ $now | Quote }}
  status: "False"
  reason: PodFailed
  type: Ready
- lastProbeTime: null
  lastTransitionTime: {{ $now | Quote }}
  status: "False"
  reason: PodFailed
  type: ContainersReady
containerStatuses:
{{ range .spec.containers }}
- image: {{ .image | Quote }}
  name: {{ .name | Quote }}
  ready: false
  restartCount: 0
  started: false
  state:
    terminated:
      exitCode: {{ $exitCode }}
      finishedAt: {{ $now | Quote }}
      reason: {{ $reason | Quote }}
{{ if $message }}
      message: {{ $message | Quote }}
{{ end }}
      startedAt: {{ $now | Quote }}
{{ end }}
phase: Failed
""" % {"p": _FAILED}


def _pod_stage(name: str, match: list[dict[str, Any]], then: dict[str, Any], weight: int = 1) -> dict[str, Any]:
    """One pod Stage of ours; its delay comes from DEFAULT_STAGE_DELAYS_MS or the pod's annotations."""
    stage: dict[str, Any] = {
        "apiVersion": "kwok.x-k8s.io/v1alpha1",
        "kind": "Stage",
        "metadata": {"name": name},
        "spec": {
            "resourceRef": {"apiGroup": "v1", "kind": "Pod"},
            "selector": {"matchExpressions": match},
            "weight": weight,
            "delay": {  # durationMilliseconds is filled in by kwok_stages()
                "durationFrom": {"expressionFrom": _annotation(name, "delay")},
                "jitterDurationFrom": {"expressionFrom": _annotation(name, "jitter-delay")},
            },
            "next": then,
        },
    }
    if weight != 1:  # a pod may still choose otherwise with an annotation, as upstream allows
        stage["spec"]["weightFrom"] = {"expressionFrom": _annotation(name, "weight")}
    return stage


_DELETED = {"key": ".metadata.deletionTimestamp", "operator": "Exists"}
# Our stages: a kubelet moves a deleted pod to a terminal phase before it goes away (since 1.27),
# which is what lets the Job controller drop its job-tracking finalizer. Upstream's general
# pod-delete waits for finalizers to vanish (a deleted running Job pod would then hang forever),
# upstream's fast pod-delete ignores them (the pod hangs Terminating just the same).
EXPBOT_STAGES: list[dict[str, Any]] = [
    _pod_stage("pod-terminate", [
        _DELETED, {"key": ".status.phase", "operator": "In", "values": ["Pending", "Running", "Unknown"]},
    ], {"statusTemplate": _POD_TERMINATE_TEMPLATE}),
    _pod_stage("pod-delete", [
        _DELETED, {"key": ".metadata.finalizers", "operator": "DoesNotExist"},
        {"key": ".status.phase", "operator": "In", "values": ["Succeeded", "Failed"]},
    ], {"delete": True}),
    _pod_stage("pod-container-running-failed", [
        {"key": f'.metadata.labels["{_FAILED}"]', "operator": "In", "values": ["true"]},
        {"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"},
        {"key": ".status.phase", "operator": "In", "values": ["Running"]},
    # A pod labelled to fail fails rather than completes (upstream's weight; pod-complete has 1).
    ], {"statusTemplate": _POD_FAILED_TEMPLATE}, weight=10_000),
]


def kwok_stages(stages_dir: Path, delays_ms: dict[str, tuple[int, int | None]] | None = None) -> list[dict[str, Any]]:
    """The Stage documents given to kwok: upstream ones read from stages_dir, then ours, with default delays applied."""
    delays = {**DEFAULT_STAGE_DELAYS_MS, **(delays_ms or {})}
    docs: list[dict[str, Any]] = []
    for name, rel in UPSTREAM_STAGES.items():
        path = stages_dir / rel
        if not path.is_file():
            raise FileNotFoundError(f"kwok stage {name!r} not found at {path}")
        (doc,) = [d for d in yaml.safe_load_all(path.read_text()) if d]
        if doc["metadata"]["name"] != name:
            raise ValueError(f"{path} defines stage {doc['metadata']['name']!r}, expected {name!r}")
        docs.append(doc)
    docs.extend(copy.deepcopy(EXPBOT_STAGES))
    for doc in docs:
        name = doc["metadata"]["name"]
        if name not in delays:
            continue
        delay, jitter = delays[name]
        spec_delay = doc["spec"].setdefault("delay", {})
        spec_delay["durationMilliseconds"] = delay
        if jitter is None:
            spec_delay.pop("jitterDurationMilliseconds", None)
        else:
            spec_delay["jitterDurationMilliseconds"] = jitter
    return docs
