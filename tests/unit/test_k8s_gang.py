"""A multi-node experiment on Kubernetes: its Indexed Job, headless Service and rendezvous env, and how
the status of a gang (its Job, every pod, Kueue's Workload) becomes one AttemptStatus."""
from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from adapters.k8s import manifests, names
from adapters.k8s.config import K8sConfig
from adapters.k8s.gang import first_failure, gang_status, park_reason
from adapters.k8s.views import JobView, PodView, WorkloadView
from core.ports import AttemptPhase
from tests.unit.test_k8s_classify import (
    EID, GPU_MESSAGE, GRACE, NOW, condition, job_raw, pod_raw, running, terminated, ts,
)
from tests.unit.test_k8s_manifests import launch, spec

SHARED = K8sConfig(namespace="ml", shared_storage_class="nfs-rwx", rendezvous_port=29500)


def gang_launch(nodes: int = 2, **changes: Any) -> Any:
    return launch(spec(nodes=nodes, gpus=8, env={"NODE_RANK": "7", "WANDB_PROJECT": "x"}), **changes)


# ------------------------------------------------------------------------------ manifests
def test_a_gang_is_one_indexed_job_with_a_pod_per_node():
    job = manifests.job(gang_launch(4), SHARED)
    assert job["spec"]["completionMode"] == "Indexed"
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == 4
    assert job["spec"]["backoffLimit"] == 0
    pod = job["spec"]["template"]["spec"]
    assert pod["subdomain"] == names.service_name(eid_of(job), 3)
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "8"


def eid_of(job: dict[str, Any]) -> str:
    return job["metadata"]["labels"][names.EXPERIMENT]


def test_every_pod_gets_the_rendezvous_env_with_its_rank_from_the_completion_index():
    job = manifests.job(gang_launch(2), SHARED)
    env = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert len(env) == len(job["spec"]["template"]["spec"]["containers"][0]["env"]), "duplicate names"
    master = f"{job['metadata']['name']}-0.{job['metadata']['name']}"
    assert env["MASTER_ADDR"]["value"] == env["PET_MASTER_ADDR"]["value"] == master
    assert env["MASTER_PORT"]["value"] == "29500" and env["NNODES"]["value"] == "2"
    assert env["WORLD_SIZE"]["value"] == "16" and env["NPROC_PER_NODE"]["value"] == "8"
    index = f"metadata.annotations['{names.COMPLETION_INDEX}']"
    # The user's --env NODE_RANK cannot override the rank: one entry, from the downward API.
    for key in ("NODE_RANK", "PET_NODE_RANK"):
        assert env[key] == {"name": key, "valueFrom": {"fieldRef": {"fieldPath": index}}}
    assert env["WANDB_PROJECT"]["value"] == "x" and env["EXPBOT_ATTEMPT"]["value"] == "3"


def test_a_single_node_job_is_unchanged():
    job = manifests.job(launch(), SHARED)
    assert "completionMode" not in job["spec"] and "subdomain" not in job["spec"]["template"]["spec"]
    assert not {"MASTER_ADDR", "NODE_RANK"} & {e["name"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_the_headless_service_selects_the_attempts_pods_and_goes_with_its_job():
    svc = manifests.service(gang_launch(2), SHARED, job_uid="uid-1")
    assert svc["spec"]["clusterIP"] == "None" and svc["spec"]["publishNotReadyAddresses"] is True
    assert svc["spec"]["selector"] == {names.EXPERIMENT: svc["metadata"]["labels"][names.EXPERIMENT], names.ATTEMPT: "3"}
    [owner] = svc["metadata"]["ownerReferences"]
    assert owner["kind"] == "Job" and owner["uid"] == "uid-1" and owner["name"] == svc["metadata"]["name"]


def test_a_gangs_checkpoint_claim_is_read_write_many_on_the_shared_class():
    claim = manifests.pvc(gang_launch(2), SHARED.model_copy(update={"storage_class": "ssd"}))
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"] and claim["spec"]["storageClassName"] == "nfs-rwx"
    single = manifests.pvc(launch(), SHARED.model_copy(update={"storage_class": "ssd"}))
    assert single["spec"]["accessModes"] == ["ReadWriteOnce"] and single["spec"]["storageClassName"] == "ssd"


@pytest.mark.parametrize(("config", "shared"), [
    (K8sConfig(), False),
    (K8sConfig(storage_class="ssd"), False),
    (K8sConfig(pvc_access_modes=("ReadWriteMany",), storage_class="efs"), True),
    (K8sConfig(shared_storage_class="nfs"), True),
])
def test_shared_storage_is_known_only_when_configured(config, shared):
    assert (config.shared_storage() is not None) == shared


# ------------------------------------------------------------------------------ status
def gang_job(size: int = 2, **kw: Any) -> JobView:
    raw = job_raw(**kw)
    raw["spec"]["completions"] = size
    view = JobView.from_raw(raw)
    assert view is not None
    return view


def member(index: int, *, deleting: bool = False, **kw: Any) -> PodView:
    raw = pod_raw(suffix=f"{index}-abcde", **kw)
    raw["metadata"]["annotations"] = {names.COMPLETION_INDEX: str(index)}
    if deleting:
        raw["metadata"]["deletionTimestamp"] = ts(NOW)
    view = PodView.from_raw(raw)
    assert view is not None
    return view


def run(index: int, node: str, at=NOW - timedelta(minutes=5), **kw: Any) -> PodView:
    return member(index, phase="Running", state=running(at), node=node, **kw)


def test_the_gang_runs_once_every_pod_does_from_the_last_ones_start():
    late = NOW - timedelta(minutes=1)
    found = gang_status(gang_job(), [run(0, "n0"), run(1, "n1", at=late)], NOW, GRACE)
    assert found.phase == AttemptPhase.RUNNING and found.started_at == late.replace(microsecond=0)
    assert found.node is None  # recorded when it ends: the node of the pod that failed
    half = gang_status(gang_job(), [run(0, "n0"), member(1, node="n1")], NOW, GRACE)
    assert half.phase == AttemptPhase.STARTING


def test_exit_1_on_rank_1_is_the_users_error_naming_rank_1_and_its_node():
    crashed = member(1, phase="Failed", state=terminated(1, "Error", message="Traceback\nValueError: bad"), node="n1")
    # Rank 0 was ended by the Job controller because of it (a casualty: deleted, exit 143).
    casualty = member(0, phase="Failed", state=terminated(143, "Error", at=NOW - timedelta(seconds=1)), node="n0",
                      deleting=True)
    found = gang_status(gang_job(conditions=(condition("FailureTarget", reason="BackoffLimitExceeded"),)),
                        [casualty, crashed], NOW, GRACE)
    assert found.phase == AttemptPhase.EXITED and found.exit_code == 1 and not found.infra
    assert found.reason.startswith("rank 1 on n1:") and "ValueError: bad" in found.reason
    assert found.node == "n1" and found.needs_cleanup


def test_one_evicted_pod_ends_the_gang_as_infrastructure():
    evicted = member(0, phase="Running", state=running(NOW - timedelta(minutes=5)), node="n0", deleting=True,
                     conditions=(condition("DisruptionTarget", reason="EvictionByEvictionAPI", message="Eviction API"),))
    found = gang_status(gang_job(), [evicted, run(1, "n1")], NOW, GRACE)
    assert found.phase == AttemptPhase.LOST and found.infra and found.reason.startswith("rank 0 on n0:")
    assert "EvictionByEvictionAPI" in found.reason and found.needs_cleanup


def test_the_earliest_own_failure_wins_over_later_ones():
    first = member(1, phase="Failed", state=terminated(2, "Error", at=NOW - timedelta(seconds=9)), node="n1")
    later = member(0, phase="Failed", state=terminated(3, "Error", at=NOW), node="n0")
    assert first_failure([later, first]) is first


def test_a_pod_that_succeeded_early_does_not_end_the_gang():
    done = member(0, phase="Succeeded", state=terminated(0, "Completed"), node="n0")
    found = gang_status(gang_job(active=1), [done, run(1, "n1")], NOW, GRACE)
    assert found.phase == AttemptPhase.RUNNING
    complete = gang_status(gang_job(conditions=(condition("Complete"),), completed_at=NOW), [done], NOW, GRACE)
    assert complete.phase == AttemptPhase.EXITED and complete.exit_code == 0


def test_a_half_placed_gang_is_queued_with_the_schedulers_reason_and_taken_down_after_the_timeout():
    since = NOW - timedelta(minutes=3)
    stuck = member(1, conditions=(condition("PodScheduled", "False", "Unschedulable", GPU_MESSAGE, at=since),))
    pods = [run(0, "n0"), stuck]
    found = gang_status(gang_job(), pods, NOW, GRACE)
    assert found.phase == AttemptPhase.QUEUED and GPU_MESSAGE in found.reason and "1 of 2" in found.reason
    assert park_reason(gang_job(), pods, NOW, timedelta(minutes=5)) is None
    reason = park_reason(gang_job(), pods, NOW, timedelta(minutes=2))
    assert reason is not None and GPU_MESSAGE in reason
    # Nothing placed holds no GPU: nothing to take down.
    assert park_reason(gang_job(), [stuck], NOW, timedelta(minutes=2)) is None


def test_a_parked_gang_waits_queued_with_the_reason_it_was_taken_down_for():
    raw = job_raw(suspend=True)
    raw["metadata"]["annotations"] = {names.GANG_PARKED_AT: ts(NOW), names.GANG_PARKED_REASON: "waiting for capacity: x"}
    found = gang_status(JobView.from_raw(raw), [], NOW, GRACE)
    assert found.phase == AttemptPhase.QUEUED and found.reason == "waiting for capacity: x"


def workload(**conditions: tuple[str, str, str]) -> WorkloadView:
    raw = {"metadata": {"name": "job-x", "ownerReferences": [{"kind": "Job", "name": names.job_name(EID, 1)}]},
           "status": {"conditions": [condition(k, s, r, m) for k, (s, r, m) in conditions.items()]}}
    view = WorkloadView.from_raw(raw)
    assert view is not None
    return view


def test_a_gang_kueue_has_not_admitted_shows_kueues_reason():
    why = "couldn't assign flavors to pod set main: insufficient unused quota for nvidia.com/gpu in flavor a100"
    found = gang_status(gang_job(suspend=True), [], NOW, GRACE, workload(QuotaReserved=("False", "Pending", why)))
    assert found.phase == AttemptPhase.QUEUED and why in found.reason


def test_kueue_evicting_an_admitted_job_is_infrastructure():
    raw = job_raw(suspend=True)
    raw["status"]["startTime"] = ts(NOW - timedelta(minutes=5))
    evicted = workload(Evicted=("True", "Preempted", "Preempted to accommodate a higher priority Workload"))
    found = gang_status(JobView.from_raw(raw), [], NOW, GRACE, evicted)
    assert found.phase == AttemptPhase.LOST and found.infra and "Preempted" in found.reason and found.needs_cleanup


def test_a_restarted_gang_only_prefers_to_avoid_bad_nodes():
    pod = manifests.job(gang_launch(2, avoid_nodes=("n1", "n2,n3")), SHARED)["spec"]["template"]["spec"]
    affinity = pod["affinity"]["nodeAffinity"]
    assert "requiredDuringSchedulingIgnoredDuringExecution" not in affinity
    [rule] = affinity["preferredDuringSchedulingIgnoredDuringExecution"]
    assert rule["preference"]["matchExpressions"][0]["values"] == ["n1", "n2", "n3"]
    single = manifests.job(launch(avoid_nodes=("n1",)), SHARED)["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]
    assert "requiredDuringSchedulingIgnoredDuringExecution" in single


# ------------------------------------------------------------------------------ configuration
def test_the_gang_settings_come_from_the_kubernetes_table_in_seconds(tmp_path):
    from bot.config import load_settings

    path = tmp_path / "expbot.toml"
    path.write_text('[kubernetes]\nshared_storage_class = "nfs"\nrendezvous_port = 23456\n'
                    'gang_timeout = 90\ngang_retry = 600\n')
    config = load_settings(config_file=path, backend="kubernetes").k8s_config()
    assert config.shared_storage() == ("nfs", ("ReadWriteMany",)) and config.rendezvous_port == 23456
    assert config.gang_timeout == timedelta(seconds=90) and config.gang_retry == timedelta(minutes=10)


def test_a_bad_gang_timeout_is_one_line_naming_the_key(tmp_path):
    from bot.config import load_settings
    from core.errors import ExpbotError

    path = tmp_path / "expbot.toml"
    path.write_text('[kubernetes]\ngang_timeout = "soon"\n')
    with pytest.raises(ExpbotError) as refused:
        load_settings(config_file=path, backend="kubernetes").k8s_config()
    assert "gang_timeout" in str(refused.value) and "\n" not in str(refused.value)


# ------------------------------------------------------------------------------ the watch cache
def test_the_cache_keeps_every_pod_of_a_gang_and_kueues_workload_of_its_job():
    from adapters.k8s.cache import ClusterCache

    cache = ClusterCache()
    job = job_raw()
    job["spec"]["completions"] = 2
    cache.apply("jobs", "ADDED", job)
    for index in (1, 0):
        raw = pod_raw(suffix=f"{index}-abcde")
        raw["metadata"]["annotations"] = {names.COMPLETION_INDEX: str(index)}
        cache.apply("pods", "ADDED", raw)
    assert [p.index for p in cache.gang((EID, 1))] == [0, 1]
    cache.wait_for_change(0)
    why = "insufficient unused quota for nvidia.com/gpu in flavor a100"
    cache.apply("workloads", "ADDED", {
        "metadata": {"name": "job-x", "ownerReferences": [{"kind": "Job", "name": names.job_name(EID, 1)}]},
        "status": {"conditions": [condition("QuotaReserved", "False", "Pending", why)]}})
    assert cache.wait_for_change(0) == {EID}, "a Workload's change wakes its experiment's supervision"
    assert cache.workload(names.job_name(EID, 1)).waiting == why
    cache.replace("pods", [])  # both pods vanished between two lists: deleted, not forgotten
    assert all(p.deleted for p in cache.gang((EID, 1)))
    cache.apply("jobs", "DELETED", job)
    assert cache.gang((EID, 1)) == []
