"""Restarts after infrastructure failures avoid the nodes they happened on, up to a limit."""
from __future__ import annotations

from core.model import FailureClass, State

XID_79 = "NVRM: Xid (PCI:0000:3b:00): 79, pid=1234, name=python, GPU has fallen off the bus.\n"


def fail_on(world, name: str, attempt: int, node: str, code: int = 1, log: str = XID_79, **kw) -> None:
    exp = world.get(name)
    world.backend.run(exp.id, attempt, node=node)
    world.supervisor.reconcile_once()
    world.backend.write_log(exp.id, attempt, log)
    world.backend.exit(exp.id, attempt, code, **kw)
    world.supervisor.reconcile_once()
    world.clock.advance(minutes=10)  # past the backoff
    world.supervisor.reconcile_once()


def test_a_hardware_fault_sends_the_next_attempt_elsewhere_without_spending_max_restarts(world):
    world.launch("big --max-restarts 1 --max-preemptions 5 -- python train.py")
    world.supervisor.reconcile_once()
    fail_on(world, "big", 1, "gpu-a100-3")
    exp = world.get("big")
    first = exp.attempts[0]
    assert (first.node, first.failure_class) == ("gpu-a100-3", FailureClass.HARDWARE)
    assert exp.user_restarts == 0 and exp.infra_restarts == 1 and len(exp.attempts) == 2
    assert world.backend.submits[-1].avoid_nodes == ("gpu-a100-3",)
    assert "avoiding gpu-a100-3" in " ".join(world.texts("big")) and "Xid 79" in " ".join(world.texts("big"))


def test_a_user_error_excludes_no_node(world):
    world.launch("buggy --max-restarts 2 -- python train.py")
    world.supervisor.reconcile_once()
    fail_on(world, "buggy", 1, "gpu-a100-3", log="ValueError: bad shape\n")
    assert world.get("buggy").attempts[0].failure_class == FailureClass.USER
    assert world.backend.submits[-1].avoid_nodes == ()


def test_past_the_limit_expbot_stops_excluding_and_says_so(world):
    world.supervisor.reconciler.max_excluded_nodes = 2
    world.launch("unlucky --max-preemptions 9 -- python train.py")
    world.supervisor.reconcile_once()
    for attempt, node in enumerate(("n1", "n2", "n3"), start=1):
        fail_on(world, "unlucky", attempt, node, code=None, reason="Evicted", infra=True)
    exp = world.get("unlucky")
    assert [s.avoid_nodes for s in world.backend.submits] == [(), ("n1",), ("n2", "n1"), ()]
    assert exp.state == State.STARTING
    assert any("no longer avoiding any" in t for t in world.texts("unlucky"))


def test_a_node_that_failed_three_experiments_is_reported_once(world):
    names = ["one", "two", "three", "four"]
    for name in names:
        world.launch(f"{name} --max-preemptions 5 -- python train.py")
    world.supervisor.reconcile_once()
    fail_on(world, "one", 1, "gpu-a100-3")
    fail_on(world, "one", 2, "gpu-a100-3")  # one experiment twice: not yet the node's fault
    fail_on(world, "two", 1, "gpu-a100-3")
    fail_on(world, "two", 1 + 1, "gpu-b", log="ValueError: bad shape\n")  # elsewhere, and a user error
    assert not [t for n in names for t in world.texts(n) if t.startswith("node ")]
    fail_on(world, "three", 1, "gpu-a100-3")
    fail_on(world, "four", 1, "gpu-a100-3")  # still the same window: no second report
    reports = [t for n in names for t in world.texts(n) if t.startswith("node ")]
    assert reports == ["node gpu-a100-3: 4 hardware or network failures of 3 experiments in 1d, last: "
                       "hardware fault (Xid 79: GPU has fallen off the bus): "
                       "NVRM: Xid (PCI:0000:3b:00): 79, pid=1234, name=python, GPU has fallen off the bus."]
    with world.uow() as uow:
        [entry] = uow.audit.entries(action="node-unhealthy")
    assert entry["detail"]["node"] == "gpu-a100-3" and entry["detail"]["experiments"] == 3


def test_a_sick_node_is_cordoned_once_where_configured_and_audited_even_when_refused(world):
    cordoned: list[str] = []
    world.supervisor.cordon_node = cordoned.append
    for name in ("one", "two", "three"):
        world.launch(f"{name} --max-preemptions 5 -- python train.py")
    world.supervisor.reconcile_once()
    for name in ("one", "two", "three"):
        fail_on(world, name, 1, "gpu-a100-3")
    assert cordoned == ["gpu-a100-3"]

    def refuse(node: str) -> None:
        raise RuntimeError("nodes is forbidden")

    world.supervisor.cordon_node = refuse
    world.launch("four --max-preemptions 5 -- python train.py")
    world.supervisor.reconcile_once()
    fail_on(world, "four", 1, "gpu-b")
    fail_on(world, "one", 2, "gpu-b")
    fail_on(world, "two", 2, "gpu-b")
    with world.uow() as uow:
        entries = [e["detail"] for e in uow.audit.entries(action="node-cordon")]
    assert entries[0] == {"node": "gpu-a100-3", "cordoned": True}
    assert entries[1]["node"] == "gpu-b" and entries[1]["cordoned"] is False and "forbidden" in entries[1]["error"]
