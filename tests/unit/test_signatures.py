"""Failure signatures: each shipped one against real-looking log lines, team entries, and refusals."""
from __future__ import annotations

import random
from datetime import datetime, timezone
from pathlib import Path

import pytest

from bot.config import load_settings
from core.errors import ExpbotError
from core.model import Experiment, FailureClass
from core.policy import Action, AttemptOutcome, classify, decide
from core.signatures import DEFAULT_SIGNATURES, Catalog, SignatureClass, signature_from_entry
from core.spec import ExperimentSpec

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=timezone.utc)

# (log line as drivers, CUDA, NCCL and PyTorch print it, the class it must mean, the label's start)
REAL_LINES = [
    ("[Fri Apr 12 10:01:02 2024] NVRM: Xid (PCI:0000:b7:00): 48, pid=9876, name=python3, An uncorrectable "
     "double bit error (DBE) has been detected on GPU in the framebuffer at partition 6", "hardware", "Xid 48"),
    ("NVRM: Xid (PCI:0000:ca:00): 64, pid='<unknown>', name=<unknown>, Row Remapper Error: failed to remap",
     "hardware", "Xid 64"),
    ("NVRM: Xid (PCI:0000:07:00): 74, pid=1200, name=python, NVLink: fatal error detected on link 3",
     "hardware", "Xid 74"),
    ("NVRM: Xid (PCI:0000:3b:00): 79, pid=1234, name=python, GPU has fallen off the bus.", "hardware", "Xid 79"),
    ("dcgmi: GPU 3 reported Xid 79", "hardware", "Xid 79"),
    ("NVRM: Xid (PCI:0000:41:00): 94, pid=2881, name=python, Contained: SM (0x1). RST: No, D-RST: No",
     "hardware", "Xid 94"),
    ("NVRM: Xid (PCI:0000:41:00): 95, pid=2881, name=python, Uncontained: FBHUB. RST: Yes, D-RST: No",
     "hardware", "Xid 95"),
    ("RuntimeError: CUDA error: uncorrectable ECC error encountered", "hardware", "uncorrectable ECC"),
    ("RuntimeError: CUDA error: uncorrectable NVLink error detected during the execution", "hardware",
     "uncorrectable NVLink"),
    ("torch.distributed.DistBackendError: NCCL error in: ../torch/csrc/distributed/c10d/ProcessGroupNCCL.cpp:1275, "
     "unhandled system error (run with NCCL_DEBUG=INFO for details), NCCL version 2.18.1", "network", "NCCL system"),
    ("NCCL error in: ProcessGroupNCCL.cpp:1970, remote process exited or there was a network error, "
     "NCCL version 2.19.3", "network", "NCCL peer lost"),
    ("[Rank 3] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=1234, OpType=ALLREDUCE, "
     "Timeout(ms)=600000) ran for 600031 milliseconds before timing out.", "network", "NCCL watchdog"),
    ("gpu-7:1234:1299 [3] NCCL WARN NET/IB : Got completion from peer 10.0.0.2<44522> with error 12, opcode 0",
     "network", "InfiniBand"),
    # What the supervisor adds to the log tail when DCGM_FI_DEV_XID_ERRORS rose (core.metrics.XidError.line).
    ("DCGM reported Xid 119 on GPU 3 of gpu-node-7 during the attempt", "hardware", "Xid reported by DCGM"),
    ("DCGM reported Xid 79 on GPU 0 during the attempt", "hardware", "Xid 79"),
]
# Ambiguous: the code may well be at fault. They stay user errors.
AMBIGUOUS = [
    "RuntimeError: CUDA error: an illegal memory access was encountered",
    "RuntimeError: CUDA error: unknown error",
    "NVRM: Xid (PCI:0000:3b:00): 13, pid=1234, Graphics SM Warp Exception on (GPC 0, TPC 1)",
    "NVRM: Xid (PCI:0000:3b:00): 31, pid=1234, MMU Fault: ENGINE GRAPHICS",
    "loss went to nan at step 7900 (Xid 790 mentioned in a comment)",
    # Xids an application can cause (an illegal access, a killed process): DCGM seeing them proves nothing.
    "DCGM reported Xid 13 on GPU 1 during the attempt",
    "DCGM reported Xid 31 on GPU 2 of gpu-node-7 during the attempt",
    "DCGM reported Xid 45 on GPU 0 during the attempt",
]


def make() -> Experiment:
    spec = ExperimentSpec(name="exp", command=("python", "train.py"), image="img", max_restarts=1)
    exp = Experiment(id="e1", spec=spec, owner="u", created_at=NOW)
    exp.start_attempt(None, NOW)
    exp.mark_running(NOW)
    return exp


def tail(line: str) -> str:
    return f"step 1200 loss 2.31\nstep 1210 loss 2.30\n{line}\nTraceback (most recent call last):\n"


@pytest.mark.parametrize("line,kind,label", REAL_LINES)
def test_each_shipped_signature_knows_its_real_log_line(line: str, kind: str, label: str) -> None:
    found = Catalog().match(tail(line), 1)
    assert found is not None and found.signature.failure_class == SignatureClass(kind)
    assert found.signature.label.startswith(label) and found.evidence == line.strip()


def test_every_shipped_signature_is_tested_and_sourced() -> None:
    matched = {Catalog().match(tail(line), 1).signature for line, _kind, _label in REAL_LINES}
    assert matched == set(DEFAULT_SIGNATURES)
    assert all(s.source for s in DEFAULT_SIGNATURES)


@pytest.mark.parametrize("line", AMBIGUOUS)
def test_ambiguous_errors_stay_user_errors(line: str) -> None:
    assert Catalog().match(tail(line), 1) is None
    assert classify(make(), AttemptOutcome(exit_code=1, log_tail=tail(line)))[0] == FailureClass.USER


def test_a_hardware_fault_restarts_as_infrastructure_and_says_why() -> None:
    exp = make()
    line = "NVRM: Xid (PCI:0000:3b:00): 79, pid=1234, name=python, GPU has fallen off the bus."
    decision = decide(exp, AttemptOutcome(exit_code=1, log_tail=tail(line)), NOW, random.Random(1))
    assert decision.action == Action.RESTART and decision.budget == "infra"
    assert decision.failure_class == FailureClass.HARDWARE
    assert decision.reason == f"hardware fault (Xid 79: GPU has fallen off the bus): {line}"


def test_network_faults_spend_max_preemptions_not_max_restarts() -> None:
    exp = make()
    exp.infra_restarts = exp.spec.max_preemptions
    line = "Watchdog caught collective operation timeout: WorkNCCL(SeqNum=9) ran for 600031 milliseconds"
    decision = decide(exp, AttemptOutcome(exit_code=1, log_tail=line), NOW, random.Random(1))
    assert decision.action == Action.FAIL and "max-preemptions" in decision.reason


def test_team_entries_come_first_and_may_name_an_exit_code() -> None:
    own = [signature_from_entry({"label": "flaky storage", "pattern": r"Input/output error", "class": "hardware"}),
           signature_from_entry({"exit_code": 86, "class": "give-up", "label": "bad dataset"})]
    catalog = Catalog(own)
    assert classify(make(), AttemptOutcome(exit_code=1, log_tail="OSError: [Errno 5] Input/output error"),
                    catalog)[0] == FailureClass.HARDWARE
    failure, reason = classify(make(), AttemptOutcome(exit_code=86), catalog)
    assert failure == FailureClass.GIVE_UP and "bad dataset" in reason
    assert classify(make(), AttemptOutcome(exit_code=86))[0] == FailureClass.USER  # not a default


@pytest.mark.parametrize("entry,words", [
    ({"pattern": "Xid (", "class": "hardware"}, "not a valid regular expression"),
    ({"pattern": "boom", "class": "cosmic-ray"}, "expected one of hardware, network, user, give-up"),
    ({"class": "hardware"}, "needs a pattern"),
    ({"pattern": "boom", "class": "user", "severity": 3}, "unknown key 'severity'"),
    ({"exit_code": 300, "class": "user"}, "from 0 to 255"),
])
def test_malformed_entries_are_refused_with_one_clear_line(entry: dict, words: str) -> None:
    with pytest.raises(ValueError, match=words.replace("(", r"\(")):
        signature_from_entry(entry)


def test_a_malformed_failures_table_is_refused_at_start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXPBOT_DATA_DIR", str(tmp_path / "data"))
    path = tmp_path / "expbot.toml"
    path.write_text('[failures.dead-nic]\npattern = "mlx5.*("\nclass = "network"\n')
    with pytest.raises(ExpbotError) as caught:
        load_settings(config_file=path)
    message = str(caught.value)
    assert message.startswith(f"{path}: [failures.dead-nic] pattern=") and "\n" not in message
    path.write_text('[failures.dead-nic]\npattern = "mlx5_core.*link down"\nclass = "network"\n')
    catalog = load_settings(config_file=path).failure_catalog()
    assert catalog.signatures[0].label == "dead-nic" and len(catalog.signatures) == len(DEFAULT_SIGNATURES) + 1
