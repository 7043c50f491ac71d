"""Audit trail and budget store: the same contract on the fake, SQLite and PostgreSQL."""
from __future__ import annotations

from tests.integration.conftest import Store, at, new_experiment


def test_audit_entries_commit_with_the_unit_of_work_or_not_at_all(store: Store) -> None:
    exp = new_experiment("audited")
    store.save(exp)
    with store.new_uow() as uow:
        uow.audit.record(at=at(1), actor="UAPPROVER", action="approve", experiment_id=exp.id,
                         detail={"projected": 120.0})
        # leaving without commit: nothing is written
    with store.new_uow() as uow:
        assert uow.audit.entries() == []
        uow.audit.record(at=at(2), actor="UAPPROVER", action="approve", experiment_id=exp.id,
                         detail={"projected": 120.0})
        uow.audit.record(at=at(3), actor="expbot", action="idle-stop", experiment_id=None, detail={})
        uow.commit()
    with store.new_uow() as uow:
        entries = uow.audit.entries()
        assert [e["action"] for e in entries] == ["approve", "idle-stop"]
        assert entries[0]["actor"] == "UAPPROVER" and entries[0]["detail"] == {"projected": 120.0}
        assert entries[0]["at"] == at(2)
        assert [e["action"] for e in uow.audit.entries(experiment_id=exp.id)] == ["approve"]
        assert [e["actor"] for e in uow.audit.entries(action="idle-stop")] == ["expbot"]


def test_budgets_set_at_runtime_replace_earlier_values(store: Store) -> None:
    with store.new_uow() as uow:
        assert uow.budgets.overrides() == {}
        uow.budgets.set(scope="project", name="nlp", monthly_limit=1000.0, by="UADMIN", at=at(0))
        uow.commit()
    with store.new_uow() as uow:
        uow.budgets.set(scope="project", name="nlp", monthly_limit=2500.0, by="UADMIN", at=at(1))
        uow.budgets.set(scope="user", name="UANA", monthly_limit=300.0, by="UADMIN", at=at(1))
        uow.commit()
    with store.new_uow() as uow:
        assert uow.budgets.overrides() == {("project", "nlp"): 2500.0, ("user", "UANA"): 300.0}


def test_each_alert_is_claimed_once_per_month_and_threshold(store: Store) -> None:
    with store.new_uow() as uow:
        assert uow.budgets.claim_alert(scope="project", name="nlp", month="2026-11", threshold=50, at=at(0))
        assert not uow.budgets.claim_alert(scope="project", name="nlp", month="2026-11", threshold=50, at=at(1))
        assert uow.budgets.claim_alert(scope="project", name="nlp", month="2026-11", threshold=80, at=at(1))
        assert uow.budgets.claim_alert(scope="project", name="nlp", month="2026-12", threshold=50, at=at(2))
    with store.new_uow() as uow:  # another replica, later
        assert not uow.budgets.claim_alert(scope="project", name="nlp", month="2026-11", threshold=80, at=at(3))
