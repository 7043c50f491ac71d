"""The EXPBOT_* environment contract is built once (core.attempt_env) and both backends hand it out."""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from adapters.k8s import manifests
from adapters.k8s.config import K8sConfig
from adapters.local.spawn import shim_env
from core.attempt_env import AttemptPlaces, attempt_env
from core.ports import AttemptLaunch
from core.progress import attempt_token
from core.spec import ExperimentSpec

CONTRACT = ("EXPBOT_EXPERIMENT", "EXPBOT_EXPERIMENT_ID", "EXPBOT_ATTEMPT", "EXPBOT_CHECKPOINT_DIR", "EXPBOT_RESUME_FROM")


def launch(**env: str) -> AttemptLaunch:
    spec = ExperimentSpec(name="bert", command=("python", "train.py"), image="img", env=env)
    return AttemptLaunch(experiment_id="e" * 32, experiment_name="bert", attempt=3, spec=spec, owner="ana",
                         resume_from="/ckpt/step-9.pt", max_runtime=timedelta(hours=1))


def test_the_contract_names_the_attempt_and_its_places():
    env = attempt_env(launch(), AttemptPlaces(checkpoint_dir="/ckpt", heartbeat_file="/run/hb"))
    assert [env[k] for k in CONTRACT] == ["bert", "e" * 32, "3", "/ckpt", "/ckpt/step-9.pt"]
    assert env["EXPBOT_HEARTBEAT_FILE"] == "/run/hb" and "EXPBOT_REPORT_URL" not in env


def test_a_fresh_start_resumes_from_nothing_and_no_env_fakes_the_contract():
    fresh = launch(EXPBOT_ATTEMPT="99", LR="1e-3")
    env = attempt_env(AttemptLaunch(**{**fresh.__dict__, "resume_from": None}), AttemptPlaces(checkpoint_dir="/c"))
    assert env["EXPBOT_RESUME_FROM"] == "" and env["EXPBOT_ATTEMPT"] == "3" and env["LR"] == "1e-3"
    assert "EXPBOT_HEARTBEAT_FILE" not in env


def test_reports_need_both_url_and_secret():
    places = AttemptPlaces(checkpoint_dir="/c", report_url="http://expbot/report", report_secret="s3")
    env = attempt_env(launch(), places)
    assert env["EXPBOT_REPORT_URL"] == "http://expbot/report"
    assert env["EXPBOT_REPORT_TOKEN"] == attempt_token("s3", "e" * 32, 3)
    assert "EXPBOT_REPORT_URL" not in attempt_env(launch(), AttemptPlaces(checkpoint_dir="/c", report_url="http://x"))


def test_both_backends_hand_out_the_same_contract(tmp_path: Path):
    config = K8sConfig(namespace="ml", report_url="http://expbot/report", report_secret="s3")
    pod = {e["name"]: e["value"] for e in manifests.env(launch(), config)}
    local = shim_env(launch(), tmp_path / "attempt-3", tmp_path / "ckpt", [1], "token")
    for key in CONTRACT[:3] + CONTRACT[4:]:
        assert pod[key] == local[key]
    assert pod["EXPBOT_CHECKPOINT_DIR"] == config.checkpoint_mount and local["EXPBOT_CHECKPOINT_DIR"] == str(tmp_path / "ckpt")
    assert local["EXPBOT_HEARTBEAT_FILE"] == str(tmp_path / "attempt-3" / "heartbeat")
    assert pod["EXPBOT_REPORT_TOKEN"] == attempt_token("s3", "e" * 32, 3) and "EXPBOT_REPORT_TOKEN" not in local
    assert local["CUDA_VISIBLE_DEVICES"] == "1"
