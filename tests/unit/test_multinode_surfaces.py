"""A multi-node experiment as people see it: the parent message, App Home, `expbot ls`/`status` (text and --json)."""
from __future__ import annotations

import json

from rich.console import Console

from bot.render import experiment_dict, experiments_table, status_tables
from bot.slack import blocks as thread_kit
from bot.slack.home import app_home
from tests.unit.test_slack_blocks import NOW, running


def _text(blocks) -> str:
    return json.dumps([b.to_dict() for b in blocks])


def _table(table) -> str:
    console = Console(width=200, record=True)
    console.print(table)
    return console.export_text()


def test_the_parent_message_and_app_home_say_nodes_x_gpus():
    gang = running("llm", nodes=4, gpus=8)
    _, parent = thread_kit.experiment_parent([gang], NOW)
    assert "4 nodes x 8 a100" in _text(parent)
    assert "4 nodes x 8 a100" in _text(app_home([gang], [], NOW, spend_text="").blocks)
    _, single = thread_kit.experiment_parent([running("bert", gpus=8)], NOW)
    assert "8x a100" in _text(single) and "nodes" not in _text(single)


def test_a_sweep_of_gangs_says_it_for_each_member():
    gangs = [running(f"g-{i}", group="g", nodes=2, gpus=1) for i in range(1, 3)]
    _, parent = thread_kit.experiment_parent(gangs, NOW)
    assert "2 nodes x 1 a100 each" in _text(parent)


def test_ls_and_status_show_the_nodes_and_json_carries_them():
    gang = running("llm", nodes=2, gpus=8)
    assert "2 nodes x 8 a100" in _table(experiments_table([gang], NOW))
    assert "2 nodes x 8 a100" in "".join(_table(t) for t in status_tables(gang, [], NOW))
    assert "3 nodes, CPU only" in _table(experiments_table([running("cpu", nodes=3, gpus=0)], NOW))
    assert "│ -" in _table(experiments_table([running("cpu", gpus=0)], NOW))
    data = experiment_dict(gang, NOW)
    assert (data["nodes"], data["gpus"]) == (2, 8)
