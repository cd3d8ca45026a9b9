"""Replay committed histories: interpreter changes must not break running enrollments."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from workflows.confirmations import ConfirmationSweepWorkflow
from workflows.journey import JOURNEY_WORKFLOWS

HISTORIES = sorted((Path(__file__).parent / "histories").glob("*.json"))


def test_there_are_histories_to_replay() -> None:
    assert len(HISTORIES) >= 2


def test_every_registered_journey_type_has_histories_to_replay() -> None:
    # The older type stays registered for enrollments it started; the current one takes
    # patches again: both must keep replaying what they recorded.
    starts = [WorkflowHistory.from_json(p.stem, p.read_text()).events[0] for p in HISTORIES]
    types = {e.workflow_execution_started_event_attributes.workflow_type.name for e in starts}
    assert {w.__temporal_workflow_definition.name for w in JOURNEY_WORKFLOWS} <= types  # type: ignore[attr-defined]


@pytest.mark.parametrize("path", HISTORIES, ids=lambda p: p.stem)
async def test_history_replays(path: Path) -> None:
    history = WorkflowHistory.from_json(path.stem, path.read_text())
    workflows = [*JOURNEY_WORKFLOWS, ConfirmationSweepWorkflow]
    replayer = Replayer(workflows=workflows, data_converter=pydantic_data_converter)
    result = await replayer.replay_workflow(history, raise_on_replay_failure=True)
    assert result.replay_failure is None
