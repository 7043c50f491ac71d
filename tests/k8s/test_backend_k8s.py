"""Acceptance of the Kubernetes backend on a real control plane with KWOK GPU nodes."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from adapters.db.progress import SqlProgressStore
from adapters.k8s import names
from core.model import FailureClass, State
from core.ports import AttemptLaunch
from core.progress import ProgressReport
from tests.k8s.cluster_helpers import GPU_RESOURCE, GPU_TYPE_LABEL, delete_node, evict_pod, recreate_node
from tests.k8s.harness import job_env, running_expbot
from tests.polling import wait_for


def test_launch_runs_on_a_node_of_the_requested_type_and_succeeds(k8s_cluster, k8s_api, k8s_namespace, tmp_path: Path) -> None:
    behaviour = {"ready": "500ms", "complete": "3s"}
    with running_expbot(tmp_path, k8s_cluster.kubeconfig, k8s_namespace, k8s_api, pod_behaviour=behaviour) as w:
        exp = w.launch("bert --gpus 4 --gpu-type h100 --hours 2 -- python train.py")
        w.wait_state(exp.name, State.RUNNING)
        [job] = w.jobs(exp.id)
        container = job.spec.template.spec.containers[0]
        assert container.resources.requests[GPU_RESOURCE] == container.resources.limits[GPU_RESOURCE] == "4"
        assert job.spec.template.spec.restart_policy == "Never" and job.spec.backoff_limit == 0
        assert job.spec.active_deadline_seconds is None  # the pod's deadline: waiting for a node spends none
        assert 0 < job.spec.template.spec.active_deadline_seconds <= 2 * 3600
        [pod] = w.pods(exp.id)
        node = w.core.read_node(pod.spec.node_name)
        assert node.metadata.labels[GPU_TYPE_LABEL] == "h100"
        env = job_env(job)
        assert env["EXPBOT_ATTEMPT"] == "1" and not env["EXPBOT_RESUME_FROM"] and env["EXPBOT_REPORT_TOKEN"]
        done = w.wait_state(exp.name, State.SUCCEEDED, State.FAILED)
        assert done.state == State.SUCCEEDED, done.state_reason
        assert len(done.attempts) == 1
        wait_for(lambda: not w.pvc_exists(exp.id), timeout=15, what="the PVC to be deleted by policy")


def test_a_launch_while_leading_gets_its_job_at_once_not_at_the_next_resync(k8s_cluster, k8s_api, k8s_namespace, tmp_path: Path) -> None:
    behaviour = {"ready": "200ms", "complete": "1h"}
    with running_expbot(tmp_path, k8s_cluster.kubeconfig, k8s_namespace, k8s_api, pod_behaviour=behaviour,
                        k8s_resync_seconds=600) as w:
        first = w.launch("early --gpus 1 --gpu-type a100 -- python train.py")
        w.wait_state(first.name, State.RUNNING)  # the first full pass is over; the next is 10 minutes away
        late = w.launch("late --gpus 1 --gpu-type a100 -- python train.py")
        wait_for(lambda: len(w.jobs(late.id)) == 1, timeout=5, what="the late launch's Job within seconds")


def test_oom_killed_is_a_user_error_that_spends_max_restarts(k8s_cluster, k8s_api, k8s_namespace, tmp_path: Path) -> None:
    behaviour = {"ready": "200ms", "complete": "1h", "fail": "1s", "fail_reason": "OOMKilled", "fail_exit_code": 137}
    with running_expbot(tmp_path, k8s_cluster.kubeconfig, k8s_namespace, k8s_api, pod_behaviour=behaviour) as w:
        exp = w.launch("oomy --gpus 1 --gpu-type a100 --max-restarts 1 -- python train.py")
        done = w.wait_state(exp.name, State.FAILED, State.SUCCEEDED, timeout=60)
        assert done.state == State.FAILED
        assert [a.failure_class for a in done.attempts] == [FailureClass.USER, FailureClass.USER]
        assert done.user_restarts == 1 and done.infra_restarts == 0
        assert "OOMKilled" in done.attempts[-1].reason
        assert len(w.jobs(exp.id)) == 2


def test_eviction_restarts_uncounted_from_the_last_reported_checkpoint(k8s_cluster, k8s_api, k8s_namespace, tmp_path: Path) -> None:
    behaviour = {"ready": "200ms", "complete": "1h"}
    with running_expbot(tmp_path, k8s_cluster.kubeconfig, k8s_namespace, k8s_api, pod_behaviour=behaviour) as w:
        exp = w.launch("evictee --gpus 2 --gpu-type a100 --max-restarts 0 -- python train.py")
        w.wait_state(exp.name, State.RUNNING)
        store = SqlProgressStore(w.bot.session_factory)
        for step in (100, 200):
            store.record(ProgressReport(exp.id, 1, datetime.now(timezone.utc), checkpoint=f"/checkpoints/step-{step}.pt", step=step))
        [pod] = w.pods(exp.id)
        evict_pod(w.core, k8s_namespace, pod.metadata.name)
        wait_for(lambda: len(w.jobs(exp.id)) == 2, timeout=30, what="the second attempt's Job")
        second = w.jobs(exp.id)[1]
        assert job_env(second)["EXPBOT_RESUME_FROM"] == "/checkpoints/step-200.pt"
        assert job_env(second)["EXPBOT_ATTEMPT"] == "2"
        # The same claim holds the checkpoints of both attempts.
        claims = {v.persistent_volume_claim.claim_name for v in second.spec.template.spec.volumes if v.persistent_volume_claim}
        assert claims == {names.pvc_name(exp.id)}
        now = w.wait_state(exp.name, State.RUNNING)
        assert now.attempts[0].failure_class == FailureClass.INFRA
        assert now.infra_restarts == 1 and now.user_restarts == 0


def test_more_gpus_than_free_waits_queued_with_the_schedulers_reason(k8s_cluster, k8s_api, k8s_namespace, tmp_path: Path) -> None:
    behaviour = {"ready": "200ms", "complete": "1h"}
    with running_expbot(tmp_path, k8s_cluster.kubeconfig, k8s_namespace, k8s_api, pod_behaviour=behaviour) as w:
        first = [w.launch(f"big-{i} --gpus 8 --gpu-type h100 -- python train.py") for i in range(2)]
        for exp in first:
            w.wait_state(exp.name, State.RUNNING)
        waiting = w.launch("big-2 --gpus 8 --gpu-type h100 -- python train.py")
        try:
            wait_for(lambda: GPU_RESOURCE in w.get(waiting.name).state_reason, timeout=30)
        except AssertionError:
            raise AssertionError(f"no scheduler reason in {w.get(waiting.name).state_reason!r}") from None
        assert "nodes are available" in w.get(waiting.name).state_reason
        assert w.get(waiting.name).current_attempt is not None  # its Job exists and waits in the scheduler
        w.bot.bus.handle(_stop(first[0].name))
        w.wait_state(waiting.name, State.RUNNING, timeout=45)


def test_stop_removes_job_and_pods_and_keeps_the_claim_when_configured(k8s_cluster, k8s_api, k8s_namespace, tmp_path: Path) -> None:
    behaviour = {"ready": "200ms", "complete": "1h"}
    with running_expbot(tmp_path, k8s_cluster.kubeconfig, k8s_namespace, k8s_api, pod_behaviour=behaviour,
                        keep_checkpoints=True) as w:
        exp = w.launch("stoppable --gpus 1 --gpu-type a100 -- python train.py")
        w.wait_state(exp.name, State.RUNNING)
        assert w.bot.bus.handle(_stop(exp.name)).state == State.STOPPING  # the supervisor carries it out
        w.wait_state(exp.name, State.STOPPED)
        wait_for(lambda: not w.jobs(exp.id) and not w.pods(exp.id), timeout=30, what="the Job and its pods to go")
        assert w.pvc_exists(exp.id)


def test_crash_between_decision_and_job_creation_leaves_exactly_one_job(k8s_cluster, k8s_api, k8s_namespace, tmp_path: Path) -> None:
    behaviour = {"ready": "200ms", "complete": "2s"}
    with running_expbot(tmp_path, k8s_cluster.kubeconfig, k8s_namespace, k8s_api, pod_behaviour=behaviour, start=False) as w:
        exp = w.launch("crashy --gpus 1 --gpu-type a100 -- python train.py")
        stored = w.get(exp.name)
        # The first expbot created the Job, then died before recording the attempt.
        launch = AttemptLaunch(exp.id, exp.name, 1, stored.spec, stored.owner, None, stored.remaining_runtime(stored.created_at))
        w.bot.backend.submit(launch)  # type: ignore[attr-defined]
        w.thread.start()  # the restarted expbot decides again
        done = w.wait_state(exp.name, State.SUCCEEDED, State.FAILED)
        assert done.state == State.SUCCEEDED, done.state_reason
        assert [j.metadata.name for j in w.jobs(exp.id)] == [names.job_name(exp.id, 1)]


def test_watches_recover_after_the_apiserver_restarts(k8s_cluster, k8s_api, k8s_namespace, tmp_path: Path) -> None:
    behaviour = {"ready": "200ms", "complete": "8s"}
    with running_expbot(tmp_path, k8s_cluster.kubeconfig, k8s_namespace, k8s_api, pod_behaviour=behaviour) as w:
        exps = [w.launch(f"steady-{i} --gpus 1 --gpu-type a100 -- python train.py") for i in range(3)]
        for exp in exps:
            w.wait_state(exp.name, State.RUNNING)
        k8s_cluster.restart_apiserver()
        for exp in exps:
            done = w.wait_state(exp.name, State.SUCCEEDED, State.FAILED, timeout=60)
            assert done.state == State.SUCCEEDED, done.state_reason
            assert len(done.attempts) == 1  # nothing mistaken for a failure while the API was away


def _stop(name: str) -> Any:
    from core import commands

    return commands.StopExperiment(name=name, by="alice")


def test_losing_the_node_restarts_the_attempt_as_infrastructure(k8s_cluster, k8s_api, k8s_namespace, tmp_path: Path) -> None:
    behaviour = {"ready": "200ms", "complete": "1h"}
    with running_expbot(tmp_path, k8s_cluster.kubeconfig, k8s_namespace, k8s_api, pod_behaviour=behaviour) as w:
        exp = w.launch("orphan --gpus 1 --gpu-type a100 --max-restarts 0 -- python train.py")
        w.wait_state(exp.name, State.RUNNING)
        [pod] = w.pods(exp.id)
        node = pod.spec.node_name
        try:
            delete_node(w.core, node)
            # The pod garbage collector removes pods of a vanished node after its quarantine (~40s).
            wait_for(lambda: len(w.get(exp.name).attempts) == 2, timeout=150, what="a second attempt after the node loss")
            after = w.get(exp.name)
            assert after.attempts[0].failure_class == FailureClass.INFRA
            assert after.infra_restarts == 1 and after.user_restarts == 0
        finally:
            recreate_node(w.core, node)
