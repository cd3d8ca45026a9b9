"""Journey stats: funnel per step, sends by outcome, split arms with intervals, conversions.

Built from the exact counters in ``journey_counters`` (see ``engine.counters``) and the
plan's step order; nothing here scans the message log or the enrollments.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence

from pydantic import BaseModel, Field

from engine import counters
from engine.models import CounterRow
from engine.plan import JourneyPlan, SplitNode
from engine.store import Store

#: Each arm needs this many enrollments before a significance verdict is shown.
MIN_PER_ARM = 200
#: Two-sided level of the significance flag and of the intervals.
ALPHA = 0.05
_Z = 1.959963984540054  # the normal quantile for a 95% two-sided interval


class StepStats(BaseModel):
    """One step of the funnel."""

    step: str
    kind: str
    entered: int = Field(description="Visits that reached the step (a loop counts each visit).")
    completed: int = Field(description="Visits that finished the step and moved on.")
    sends: dict[str, int] = Field(
        default_factory=dict, description="Send attempts by status (sent, skipped, failed, deferred, ...)."
    )
    reasons: dict[str, int] = Field(
        default_factory=dict,
        description="Send attempts by `status:reason` for those with a reason (skipped:quiet_hours, ...).",
    )


class ArmStats(BaseModel):
    """One arm of a split."""

    arm: str
    enrolled: int
    converted: int
    rate: float | None = Field(description="converted / enrolled (null before anyone enrolled).")
    ci95: tuple[float, float] | None = Field(description="Wilson 95% interval of the rate.")
    p_value: float | None = Field(
        default=None, description="Two-proportion z-test against the first arm; shown once every arm has 200."
    )
    significant: bool | None = Field(
        default=None, description="p < 0.05 against the first arm; null until every arm has 200 enrollments."
    )


class SplitStats(BaseModel):
    """A split step: its arms, the first one being the control."""

    step: str
    arms: list[ArmStats]
    ready: bool = Field(description=f"Every arm has at least {MIN_PER_ARM} enrollments (significance is shown).")


class EnrollmentStats(BaseModel):
    """Enrollments of the journey."""

    entered: int
    running: int = Field(description="Entered and not yet exited (including held or parked ones).")
    exited: dict[str, int] = Field(description="Exits by reason (completed, goal, exit_when, operator, ...).")
    converted: int = Field(description="Goal conversions within the goal's window.")
    conversion_rate: float | None


class JourneyStats(BaseModel):
    """``GET /v1/journeys/{id}/stats``."""

    journey: str
    versions: list[int] = Field(description="The versions counted (all, unless one was asked for).")
    enrollments: EnrollmentStats
    steps: list[StepStats]
    sends: dict[str, int] = Field(description="Send attempts by status over all steps.")
    reasons: dict[str, int] = Field(description="Send attempts by `status:reason` over all steps.")
    splits: list[SplitStats]


def wilson_interval(successes: int, n: int) -> tuple[float, float] | None:
    """The Wilson score 95% interval of a proportion (well-behaved at 0 and n, unlike the normal one)."""
    if n <= 0:
        return None
    p = min(max(successes, 0), n) / n
    z2 = _Z * _Z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = _Z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


def two_proportion_p_value(x1: int, n1: int, x2: int, n2: int) -> float:
    """Two-sided p-value of the pooled two-proportion z-test."""
    x1, x2 = min(x1, n1), min(x2, n2)
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 1.0
    z = (x1 / n1 - x2 / n2) / se
    return math.erfc(abs(z) / math.sqrt(2))


def build_stats(journey_id: str, plans: Sequence[JourneyPlan], rows: Iterable[CounterRow],
                versions: list[int]) -> JourneyStats:  # fmt: skip
    """Assemble the stats of a journey from its counters.

    Args:
        journey_id: The journey.
        plans: Plans of the counted versions, newest first: the newest gives the step order,
            steps only older versions had follow it.
        rows: The counters of the counted versions.
        versions: The version numbers counted.
    """
    total = _totals(rows)
    steps = [_step_stats(step, kind, total) for step, kind in _step_order(plans, total)]
    sends: dict[str, int] = defaultdict(int)
    reasons: dict[str, int] = defaultdict(int)
    for s in steps:
        for status, n in s.sends.items():
            sends[status] += n
        for reason, n in s.reasons.items():
            reasons[reason] += n
    return JourneyStats(
        journey=journey_id,
        versions=versions,
        enrollments=_enrollments(total),
        steps=steps,
        sends=dict(sends),
        reasons=dict(reasons),
        splits=_split_stats(plans, total),
    )


def _totals(rows: Iterable[CounterRow]) -> dict[tuple[str, str, str], int]:
    total: dict[tuple[str, str, str], int] = defaultdict(int)
    for row in rows:
        total[(row.metric, row.step, row.label)] += row.value
    return total


def _enrollments(total: dict[tuple[str, str, str], int]) -> EnrollmentStats:
    entered = total.get((counters.ENROLLED, "", ""), 0)
    exited = {label: n for (metric, _, label), n in total.items() if metric == counters.EXITED and n}
    converted = total.get((counters.CONVERTED, "", ""), 0)
    return EnrollmentStats(
        entered=entered, running=max(0, entered - sum(exited.values())), exited=exited, converted=converted,
        conversion_rate=converted / entered if entered else None,
    )  # fmt: skip


def _step_order(plans: Sequence[JourneyPlan], total: dict[tuple[str, str, str], int]) -> list[tuple[str, str]]:
    order: dict[str, str] = {}
    for plan in plans:
        for node in plan.nodes:
            order.setdefault(node.id, node.kind)
    for metric, step, _ in total:  # counted steps of versions whose plan was not given
        if step and metric != counters.ARM_CONVERTED:
            order.setdefault(step, "unknown")
    return list(order.items())


def _step_stats(step: str, kind: str, total: dict[tuple[str, str, str], int]) -> StepStats:
    sends: dict[str, int] = defaultdict(int)
    reasons: dict[str, int] = defaultdict(int)
    for (metric, at, label), n in total.items():
        if metric != counters.SEND or at != step or not n:
            continue
        status, _, reason = label.partition("|")
        sends[status] += n
        if reason:
            reasons[f"{status}:{reason}"] += n
    return StepStats(
        step=step, kind=kind,
        entered=total.get((counters.STEP_ENTERED, step, ""), 0),
        completed=total.get((counters.STEP_COMPLETED, step, ""), 0),
        sends=dict(sends), reasons=dict(reasons),
    )  # fmt: skip


def _split_stats(plans: Sequence[JourneyPlan], total: dict[tuple[str, str, str], int]) -> list[SplitStats]:
    arms_of: dict[str, list[str]] = {}
    for plan in plans:
        for node in plan.nodes:
            if isinstance(node, SplitNode):
                known = arms_of.setdefault(node.id, [])
                known.extend(a.arm for a in node.arms if a.arm not in known)
    for metric, step, label in total:
        if metric in (counters.ARM_ENROLLED, counters.ARM_CONVERTED):
            known = arms_of.setdefault(step, [])
            if label not in known:
                known.append(label)
    out = []
    for step, arms in arms_of.items():
        rows = []
        for arm in arms:
            n = total.get((counters.ARM_ENROLLED, step, arm), 0)
            x = total.get((counters.ARM_CONVERTED, step, arm), 0)
            # Conversions commit at once, arm assignments with the enrollment's next step
            # batch: for a moment an arm can count a conversion before its enrollment.
            rows.append(ArmStats(arm=arm, enrolled=n, converted=x, rate=min(x, n) / n if n else None,
                                 ci95=wilson_interval(x, n)))  # fmt: skip
        ready = len(rows) >= 2 and all(r.enrolled >= MIN_PER_ARM for r in rows)
        if ready:
            control = rows[0]
            for r in rows[1:]:
                r.p_value = two_proportion_p_value(r.converted, r.enrolled, control.converted, control.enrolled)
                r.significant = r.p_value < ALPHA
        out.append(SplitStats(step=step, arms=rows, ready=ready))
    return out


def journey_stats(store: Store, journey_id: str, version: int | None = None) -> JourneyStats:
    """Read a journey's counters and plans and build its stats (all versions, or one).

    Raises:
        NotFoundError: No such journey or version.
    """
    journey = store.get_journey(journey_id)
    numbers = [version] if version is not None else list(range(journey.latest_version, 0, -1))
    plans = [JourneyPlan.model_validate(store.get_version(journey_id, v).plan) for v in numbers]
    return build_stats(journey_id, plans, store.counters(journey_id, version), sorted(numbers))


def enrollment_counts(store: Store, journey_id: str) -> EnrollmentStats:
    """Entered, running, exited by reason and converted enrollments of a journey (all versions)."""
    return _enrollments(_totals(store.counters(journey_id)))
