"""The Kubernetes error boundary: ApiException (and urllib3) into expbot errors, and retries of transient ones."""
from __future__ import annotations

import json

import pytest
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import (
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)

from adapters.k8s import errors
from adapters.k8s.errors import (
    KubeConflict,
    KubeError,
    KubeForbidden,
    KubeInvalid,
    KubeNotFound,
    KubeTransient,
    WatchExpired,
    call,
    translate,
)
from core.errors import ExpbotError


def api_error(status: int, message: str | None = None, reason: str = "Reason") -> ApiException:
    body = None
    if message is not None:
        body = json.dumps({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message,
                           "reason": reason, "code": status})
    return ApiException(status=status, reason=reason, body=body)


class Script:
    """A callable that raises the given exceptions in turn, then returns `result`."""

    def __init__(self, *raises: Exception, result: object = "ok") -> None:
        self.raises, self.result, self.calls = list(raises), result, 0

    def __call__(self) -> object:
        self.calls += 1
        if self.raises:
            raise self.raises.pop(0)
        return self.result


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


# -------------------------------------------------------------------------------- translate
@pytest.mark.parametrize("status,kind", [
    (404, KubeNotFound), (409, KubeConflict), (403, KubeForbidden), (401, KubeForbidden),
    (410, WatchExpired), (422, KubeInvalid), (400, KubeInvalid), (429, KubeTransient),
    (500, KubeTransient), (503, KubeTransient), (504, KubeTransient),
])
def test_api_statuses_map_to_expbot_errors(status, kind):
    error = translate(api_error(status, f"the message for {status}"))
    assert type(error) is kind
    assert error.status == status
    assert f"the message for {status}" in str(error) and str(status) in str(error)
    assert isinstance(error, ExpbotError)


def test_an_unexpected_status_is_a_plain_kube_error():
    error = translate(api_error(418, "I'm a teapot"))
    assert type(error) is KubeError and error.status == 418 and "teapot" in str(error)


def test_status_zero_is_a_connection_failure():
    error = translate(ApiException(status=0, reason="Connection refused"))
    assert type(error) is KubeTransient and "Connection refused" in str(error)


def test_message_comes_from_the_json_body_not_the_reason():
    error = translate(api_error(422, 'Job.batch "expbot-x" is invalid: spec.template: Required value',
                                reason="Unprocessable Entity"))
    assert 'Job.batch "expbot-x" is invalid' in str(error) and "Unprocessable Entity" not in str(error)


@pytest.mark.parametrize("body", [None, "", "not json <html>", json.dumps(["a", "list"]), json.dumps({"kind": "x"})])
def test_without_a_usable_body_the_reason_is_the_message(body):
    error = translate(ApiException(status=409, reason="Conflict", body=body))
    assert type(error) is KubeConflict and "Conflict" in str(error)


def test_a_bytes_body_is_read_too():
    error = translate(ApiException(status=404, reason="Not Found",
                                   body=json.dumps({"message": 'jobs.batch "expbot-a" not found'}).encode()))
    assert 'jobs.batch "expbot-a" not found' in str(error)


@pytest.mark.parametrize("exc", [
    ProtocolError("Connection aborted.", ConnectionResetError(104, "reset")),
    MaxRetryError(None, "/apis/batch/v1/namespaces/ml/jobs", reason=NewConnectionError(None, "refused")),  # type: ignore[arg-type]
    ReadTimeoutError(None, "/api/v1/pods", "Read timed out."),  # type: ignore[arg-type]
    ConnectionRefusedError(111, "Connection refused"),
])
def test_network_errors_are_transient(exc):
    error = translate(exc)
    assert type(error) is KubeTransient and error.status is None


def test_an_expbot_error_is_left_as_it_is():
    original = KubeConflict("already there", 409)
    assert translate(original) is original


# ------------------------------------------------------------------------------------- call
def test_call_returns_the_result():
    sleeps = Sleeps()
    assert call(Script(result=42), sleep=sleeps) == 42 and sleeps == []


@pytest.mark.parametrize("status,kind", [
    (404, KubeNotFound), (409, KubeConflict), (403, KubeForbidden), (401, KubeForbidden),
    (422, KubeInvalid), (400, KubeInvalid), (410, WatchExpired),
])
def test_call_never_retries_what_retrying_cannot_fix(status, kind):
    fn, sleeps = Script(api_error(status, "no"), result="second try"), Sleeps()
    with pytest.raises(kind) as raised:
        call(fn, sleep=sleeps)
    assert fn.calls == 1 and sleeps == []
    assert isinstance(raised.value.__cause__, ApiException) and raised.value.__cause__.status == status


def test_call_retries_transient_errors_then_succeeds():
    fn = Script(api_error(503, "etcd leader changed"), api_error(429, "slow down"),
                ProtocolError("Connection aborted."), ConnectionResetError(104, "reset"), result="made")
    sleeps = Sleeps()
    assert call(fn, attempts=5, base_delay=0.2, max_delay=5.0, sleep=sleeps) == "made"
    assert fn.calls == 5 and len(sleeps) == 4


def test_call_backs_off_exponentially_with_jitter_and_a_cap():
    fn, sleeps = Script(*[api_error(500, "boom") for _ in range(7)]), Sleeps()
    with pytest.raises(KubeTransient):
        call(fn, attempts=7, base_delay=0.5, max_delay=4.0, sleep=sleeps)
    full = [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]  # base * 2^(n-1), capped
    assert len(sleeps) == len(full)
    for slept, most in zip(sleeps, full):
        assert most * 0.5 <= slept <= most


def test_call_backoff_without_jitter_is_exact(monkeypatch):
    monkeypatch.setattr(errors.random, "uniform", lambda low, high: high)
    sleeps = Sleeps()
    with pytest.raises(KubeTransient):
        call(Script(*[api_error(503, "x") for _ in range(4)]), attempts=4, base_delay=0.1, max_delay=0.3,
             sleep=sleeps)
    assert sleeps == pytest.approx([0.1, 0.2, 0.3])


def test_call_gives_up_after_its_attempts_chained_from_the_last_failure():
    last = api_error(503, "still restarting")
    fn, sleeps = Script(api_error(503, "restarting"), api_error(503, "restarting"), last), Sleeps()
    with pytest.raises(KubeTransient) as raised:
        call(fn, attempts=3, sleep=sleeps)
    assert fn.calls == 3 and len(sleeps) == 2
    assert raised.value.__cause__ is last and "still restarting" in str(raised.value)


def test_call_with_one_attempt_does_not_retry():
    fn, sleeps = Script(ConnectionResetError(104, "reset")), Sleeps()
    with pytest.raises(KubeTransient) as raised:
        call(fn, attempts=1, sleep=sleeps)
    assert fn.calls == 1 and sleeps == [] and isinstance(raised.value.__cause__, ConnectionResetError)


def test_call_lets_programming_errors_through_untouched():
    fn, sleeps = Script(ValueError("a bug")), Sleeps()
    with pytest.raises(ValueError, match="a bug"):
        call(fn, sleep=sleeps)
    assert fn.calls == 1 and sleeps == []
