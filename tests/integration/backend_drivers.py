"""Drivers that move one ClusterBackend's attempts by hand, for the shared backend contract tests.

Each driver owns a backend and knows how to make its attempts start, end with an exit code, and
count how often an attempt really started; the contract tests say the rest through the port.
"""
from __future__ import annotations

import json
import os
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from kubernetes import client

from adapters.clock import SystemClock
from adapters.k8s import names
from adapters.k8s.backend import K8sBackend
from adapters.k8s.config import K8sConfig
from adapters.local.runner import LocalRunner
from core.ports import AttemptPhase
from tests.cluster.nodes import GPU_TOLERATIONS
from tests.cluster.provisioner import FakeProvisioner
from tests.fakes.backend import FakeBackend
from tests.k8s.cluster_helpers import FAIL_STAGE, STAGE, lifecycle
from tests.polling import wait_for

# Waits for an order file named after its experiment and attempt, prints its output, exits with its code.
CONTROLLED = r"""
import json, os, pathlib, sys, time
ctl = pathlib.Path(sys.argv[1])
key = os.environ["EXPBOT_EXPERIMENT_ID"] + "-" + os.environ["EXPBOT_ATTEMPT"]
with open(ctl / (key + ".started"), "a") as f:
    f.write("started\n")
order = ctl / (key + ".json")
while not order.exists():
    time.sleep(0.01)
o = json.loads(order.read_text())
sys.stdout.write(o["output"])
sys.stdout.flush()
sys.exit(o["code"])
"""




class FakeDriver:
    """Moves FakeBackend attempts by hand."""

    forgets_stopped = False

    def __init__(self, gpus: int) -> None:
        self.backend = FakeBackend(gpus=gpus)

    def command(self) -> tuple[str, ...]:
        return ("train",)

    def started(self, eid: str, n: int) -> None:
        self.backend.run(eid, n)

    def finish(self, eid: str, n: int, code: int, output: str = "") -> None:
        self.backend.write_log(eid, n, output)
        self.backend.exit(eid, n, code)

    def starts(self, eid: str, n: int) -> int:
        return sum(1 for s in self.backend.submits if (s.experiment_id, s.attempt) == (eid, n))

    def add_checkpoint(self, eid: str, name: str, age: float) -> None:
        self.backend.set_checkpoint(eid, f"/checkpoints/{eid}/{name}")

    def close(self) -> None:
        pass


class LocalDriver:
    """Moves LocalRunner attempts through a control directory that CONTROLLED reads."""

    forgets_stopped = False

    def __init__(self, root: Path, gpus: int) -> None:
        self.ctl = root / "ctl"
        self.ctl.mkdir(parents=True)
        self.backend = LocalRunner(root / "runs", gpus, SystemClock())

    def command(self) -> tuple[str, ...]:
        return (sys.executable, "-c", CONTROLLED, str(self.ctl))

    def started(self, eid: str, n: int) -> None:
        wait_for(lambda: (self.ctl / f"{eid}-{n}.started").exists())

    def finish(self, eid: str, n: int, code: int, output: str = "") -> None:
        order = self.ctl / f"{eid}-{n}.json"
        tmp = order.with_suffix(".tmp")
        tmp.write_text(json.dumps({"code": code, "output": output}))
        os.replace(tmp, order)
        wait_for(lambda: self.backend.status(eid, n).phase == AttemptPhase.EXITED)

    def starts(self, eid: str, n: int) -> int:
        path = self.ctl / f"{eid}-{n}.started"
        return len(path.read_text().splitlines()) if path.exists() else 0

    def add_checkpoint(self, eid: str, name: str, age: float) -> None:
        path = self.backend.checkpoint_dir(eid) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(name)
        stamp = time.time() - age
        os.utime(path, (stamp, stamp))

    def close(self) -> None:
        for launch_file in self.backend.root.glob("*/attempt-*/launch.json"):
            n = int(launch_file.parent.name.removeprefix("attempt-"))
            self.backend.stop(launch_file.parent.parent.name, n, timedelta(0))


class K8sDriver:
    """Moves K8sBackend attempts on the test control plane, where KWOK plays the pods.

    Pods run until finish() patches them: KWOK's stages match the live pod, so a label and an
    exit-code annotation make it fail with that code, and a zero completion delay succeeds it.
    KWOK writes no logs, so output is not kept.
    """

    forgets_stopped = True  # a stop deletes the Job, its pods follow: nothing is left to read

    def __init__(self, api: Any, namespace: str, gpus: int) -> None:
        labels, annotations = lifecycle(ready="200ms", complete="24h")
        config = K8sConfig(
            namespace=namespace, max_gpus_per_node=gpus, gpu_tolerations=tuple(GPU_TOLERATIONS),
            pod_labels=labels, pod_annotations=annotations, stop_grace=timedelta(seconds=1),
        )
        self.core = client.CoreV1Api(api)
        self.namespace = namespace
        self.provisioner = FakeProvisioner(api, namespace).start()  # binds each checkpoint claim
        self.backend = K8sBackend(api, config, SystemClock()).start()
        self.backend.wait_for_change(0)  # the initial lists are not changes a test made

    def command(self) -> tuple[str, ...]:
        return ("python", "train.py")

    def started(self, eid: str, n: int) -> None:
        wait_for(lambda: (s := self.backend.status(eid, n)) is not None and s.phase == AttemptPhase.RUNNING,
                 timeout=30, what=f"{eid} attempt {n} running")

    def finish(self, eid: str, n: int, code: int, output: str = "") -> None:
        [pod] = self._pods(eid, n)
        if code == 0:
            change = {"annotations": {f"pod-complete.{STAGE}/delay": "0s", f"pod-complete.{STAGE}/jitter-delay": "0s"}}
        else:
            change = {
                "labels": {f"{FAIL_STAGE}.{STAGE}": "true"},
                "annotations": {
                    f"{FAIL_STAGE}.{STAGE}/delay": "0s", f"{FAIL_STAGE}.{STAGE}/jitter-delay": "0s",
                    f"{FAIL_STAGE}.{STAGE}/reason": "Error", f"{FAIL_STAGE}.{STAGE}/exit-code": str(code),
                    f"pod-complete.{STAGE}/weight": "0",
                },
            }
        self.core.patch_namespaced_pod(pod.metadata.name, self.namespace, {"metadata": change})
        wait_for(lambda: self.backend.status(eid, n).phase == AttemptPhase.EXITED, timeout=30,
                 what=f"{eid} attempt {n} to exit {code}")

    def starts(self, eid: str, n: int) -> int:
        return len(self._pods(eid, n))  # restartPolicy Never, backoffLimit 0: a pod per start

    def close(self) -> None:
        self.backend.close()
        self.provisioner.stop()

    def _pods(self, eid: str, n: int) -> list[client.V1Pod]:
        selector = f"{names.EXPERIMENT}={eid},{names.ATTEMPT}={n}"
        return self.core.list_namespaced_pod(self.namespace, label_selector=selector).items


Driver = FakeDriver | LocalDriver | K8sDriver
