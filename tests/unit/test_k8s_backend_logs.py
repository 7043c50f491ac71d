"""K8sBackend.logs: one bounded try, "" on any failure (the supervisor reads it on its only thread)."""
from __future__ import annotations

from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from adapters.k8s.backend import K8sBackend
from adapters.k8s.config import K8sConfig
from tests.fakes.clock import FakeClock
from tests.unit.test_k8s_cache import A, pod


class StubCore:
    """CoreV1Api stand-in: answers read_namespaced_pod_log from `answers`, recording each call."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)
        self.calls: list[dict[str, Any]] = []

    def read_namespaced_pod_log(self, name: str, namespace: str, **kwargs: Any) -> str:
        self.calls.append({"name": name, "namespace": namespace, **kwargs})
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def backend_with(core: StubCore) -> K8sBackend:
    backend = K8sBackend(client.ApiClient(), K8sConfig(namespace="ml"), FakeClock())
    backend.core = core  # type: ignore[assignment]
    backend.cache.apply("pods", "ADDED", pod(A, 1, phase="Failed", exit_code=1))
    return backend


def test_reads_the_tail_of_the_attempts_pod_with_a_time_limit():
    core = StubCore("step 9\nCUDA out of memory\n")
    assert backend_with(core).logs(A, 1, tail_lines=200) == "step 9\nCUDA out of memory\n"
    [call] = core.calls
    assert call["namespace"] == "ml" and call["tail_lines"] == 200 and call["container"] == "train"
    assert call["_request_timeout"]  # a kubelet that hangs must not hang the supervisor


def test_a_server_error_is_not_retried_and_reads_as_no_log():
    core = StubCore(ApiException(status=500, reason="no logs"), "never asked for")
    assert backend_with(core).logs(A, 1, tail_lines=200) == ""
    assert len(core.calls) == 1  # no backoff-and-retry on the supervisor's thread


def test_an_unreachable_api_reads_as_no_log():
    core = StubCore(ApiException(status=0, reason="connection refused"))
    assert backend_with(core).logs(A, 1) == ""
    assert len(core.calls) == 1
