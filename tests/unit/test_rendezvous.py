"""The rendezvous environment (core.rendezvous): what every rank of a gang is told, torchrun's PET_* included."""
from __future__ import annotations

import pytest

from core.rendezvous import RENDEZVOUS_NAMES, node_size_refusal, rank_env, rendezvous_env
from core.spec import ExperimentSpec


def spec(**fields) -> ExperimentSpec:
    return ExperimentSpec(name="llm", command=("python", "t.py"), image="img", **fields)


def test_every_rank_finds_the_same_rank_zero_and_knows_its_own_rank():
    ranks = [rendezvous_env(4, rank, 8, "expbot-ab12-a1-0.expbot-ab12-a1", 29500) for rank in range(4)]
    assert {env["MASTER_ADDR"] for env in ranks} == {"expbot-ab12-a1-0.expbot-ab12-a1"}
    assert [env["NODE_RANK"] for env in ranks] == ["0", "1", "2", "3"]
    assert [env["PET_NODE_RANK"] for env in ranks] == ["0", "1", "2", "3"]
    first = ranks[0]
    assert (first["NNODES"], first["NPROC_PER_NODE"], first["WORLD_SIZE"], first["MASTER_PORT"]) == ("4", "8", "32", "29500")


def test_torchrun_needs_no_flags():
    env = rendezvous_env(2, 1, 4, "10.0.0.7", 23456)
    assert env["PET_NNODES"] == "2" and env["PET_NPROC_PER_NODE"] == "4"
    assert env["PET_MASTER_ADDR"] == "10.0.0.7" and env["PET_MASTER_PORT"] == "23456"
    assert env["PET_RDZV_BACKEND"] == "static" and env["PET_RDZV_ENDPOINT"] == "10.0.0.7:23456"
    assert set(env) == set(RENDEZVOUS_NAMES)


@pytest.mark.parametrize("nodes, rank, nproc, port", [(0, 0, 1, 1), (2, 2, 1, 1), (2, -1, 1, 1), (2, 0, 0, 1), (2, 0, 1, 0), (2, 0, 1, 70000)])
def test_impossible_gangs_are_refused(nodes, rank, nproc, port):
    with pytest.raises(ValueError):
        rendezvous_env(nodes, rank, nproc, "127.0.0.1", port)


def test_a_spec_counts_every_node_and_one_process_per_gpu():
    gang = spec(nodes=4, gpus=8)
    assert gang.total_gpus == 32 and gang.nproc_per_node == 8
    assert spec(nodes=3).nproc_per_node == 1 and spec(nodes=3).total_gpus == 0
    assert rank_env(gang, 3, "m", 1)["WORLD_SIZE"] == "32"
    assert rank_env(spec(gpus=8), 0, "m", 1) == {}  # a single-node experiment's environment is unchanged


def test_specs_stored_before_nodes_existed_read_as_one_node():
    stored = spec(gpus=2).model_dump(mode="json")
    del stored["nodes"]
    assert ExperimentSpec.model_validate(stored).nodes == 1
    with pytest.raises(ValueError):
        spec(nodes=0)


@pytest.mark.parametrize("nodes, gpus, most, says", [
    (1, 16, 8, "16 GPUs asked for, but no node has more than 8; ask for --nodes 2 --gpus 8 instead (16 GPUs in all)"),
    (1, 12, 8, "ask for --nodes 2 --gpus 6 instead (12 GPUs in all)"),
    (2, 16, 8, "16 GPUs per node asked for, but no node has more than 8; ask for --nodes 4 --gpus 8 instead"),
    (1, 7, 4, "ask for --nodes 7 --gpus 1 instead"),
    (1, 2, 0, "2 GPUs asked for, but no node has more than 0"),
])
def test_a_request_bigger_than_a_node_is_refused_with_the_same_total_over_more_nodes(nodes, gpus, most, says):
    assert says in node_size_refusal(spec(nodes=nodes, gpus=gpus), most)


def test_a_request_within_a_node_or_an_unknown_node_size_fits():
    assert node_size_refusal(spec(nodes=4, gpus=8), 8) is None
    assert node_size_refusal(spec(gpus=64), None) is None
