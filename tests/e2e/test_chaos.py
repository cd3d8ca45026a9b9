"""Short chaos run (``bench/chaos.py`` runs the long one): kills, restarts and WeCom faults.

Its own stack in subprocesses (dev server with a database file, Redis with an AOF, fake
WeCom, API, worker), because the worker is SIGKILLed and the servers are restarted.
"""

from __future__ import annotations

import pytest

from bench.chaos import ChaosPlan, run_chaos

pytestmark = [pytest.mark.chaos, pytest.mark.slow, pytest.mark.timeout(300)]


async def test_no_message_lost_doubled_or_falsely_recorded_under_chaos(tmp_path) -> None:
    plan = ChaosPlan(enrollments=100, rate=10.0, worker_kills=5, temporal_restarts=1, redis_restarts=1,
                     fault_rate=0.2, settle_timeout=150)  # fmt: skip
    report = await run_chaos(plan, tmp_path / "stack", log=lambda _line: None)
    summary = report.markdown()
    assert report.accepted == plan.enrollments, summary
    assert sum(1 for line in report.timeline if "SIGKILL" in line) == 5, summary
    assert report.faults and all(report.faults.get(code) for code in (-1, 45009, 42001, 0)), summary
    assert not report.lost_events, summary
    assert not report.missing, summary
    assert not report.duplicated and not report.duplicate_tasks, summary
    assert not report.false_sent, summary
    assert not report.not_sent, summary
