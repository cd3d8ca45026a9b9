"""The bench harness's pure parts: the latency timeline and the one-process stack's shape."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.harness import BenchStack, Proc, timeline_ms
from bench.latency import latencies


def test_timeline_windows_by_submit_time_with_median_and_max() -> None:
    pairs = [(100.0, 0.010), (101.0, 0.030), (105.0, 0.020), (112.0, 2.0), (119.9, 4.0), (131.0, 0.05)]

    assert timeline_ms(pairs) == [(0.0, 20.0, 30.0), (10.0, 2000.0, 4000.0), (30.0, 50.0, 50.0)]


def test_timeline_of_nothing_is_empty() -> None:
    assert timeline_ms([]) == []


def _started_pieces(stack: BenchStack, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Start the stack with every piece's start recorded instead of run (a pure unit test)."""
    started: list[str] = []
    monkeypatch.setattr(Proc, "start", lambda self, **_: started.append(self.name) or self)
    for child in (stack.temporal, stack.redis):
        monkeypatch.setattr(child, "start", lambda *, _name=child.name, **__: started.append(_name))
    stack.start()
    return started


def test_one_process_stack_runs_journeys_up_and_no_separate_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stack = BenchStack(tmp_path, one_process=True)

    assert stack.api.argv[1:3] == ["up", "--port"]
    assert str(stack.api_port) in stack.api.argv
    assert "worker" not in _started_pieces(stack, monkeypatch)
    with pytest.raises(RuntimeError, match="inside the API's process"):
        stack.restart_worker()


def test_split_stack_runs_api_and_worker_apart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stack = BenchStack(tmp_path)

    assert stack.api.argv[1] == "api"
    assert stack.worker.argv[1] == "worker"
    assert _started_pieces(stack, monkeypatch)[-2:] == ["api", "worker"]


def test_latencies_count_from_submit_and_from_the_answer_and_what_never_arrived() -> None:
    submitted = {0: 100.0, 1: 101.0, 2: 102.0}
    answered = {0: 100.5, 1: 101.1, 2: 102.2}
    received = {"lat r 0": 101.0, "lat r 1": 101.6, "other 2": 103.0}  # event 2's message never came

    figures = latencies(received, "lat r ", [0, 1, 2], submitted, answered)

    assert (figures["from_submit"]["n"], figures["from_submit"]["max"]) == (2.0, 1000.0)
    assert figures["from_202"]["max"] == pytest.approx(500.0)
    assert figures["api_ms"]["n"] == 3.0, "every submitted event's answer counts, arrived or not"
    assert figures["lost"] == 1
    assert figures["timeline"] == [(0.0, pytest.approx(600.0), pytest.approx(1000.0))]
