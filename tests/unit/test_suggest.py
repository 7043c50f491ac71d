"""The one did-you-mean rule: case ignored, difflib's ratio of at least 0.5, or a choice the word begins."""
from __future__ import annotations

from core.suggest import closest


def test_a_close_word_a_case_slip_and_a_prefix_are_suggested():
    assert closest("lst", ["launch", "list", "logs"]) == "list"
    assert closest("europe/berlin", ["Europe/Berlin", "Europe/Bern"]) == "Europe/Berlin"
    assert closest("ttl", ["pvc_size", "ttl_after_finished"]) == "ttl_after_finished"
    assert closest("cpu_price", ["cpu_per_hour", "memory_gib_per_hour", "currency"]) == "cpu_per_hour"


def test_a_far_word_or_nothing_typed_suggests_nothing():
    assert closest("--zzzzzzzz", ["--gpus", "--image"]) is None
    assert closest("", ["launch"]) is None
    assert closest("x", []) is None
