"""Activities behind the language's non-sending steps: branch, wait_until, tag, update."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.context import rule_context
from activities.wecom import WeComClient, WeComError
from engine.store import Store
from rules import RuleError
from rules import cache as rule_cache
from rules.context import thaw
from workflows.messages import (
    BRANCH,
    NEXT_TIME,
    TAG,
    UPDATE,
    BranchInput,
    BranchResult,
    NextTimeInput,
    TagInput,
    UpdateInput,
)

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def customer_zone(profile: dict[str, Any] | None, default: str) -> ZoneInfo:
    """The customer's own ``timezone`` when valid, else the journey's."""
    name = (profile or {}).get("timezone")
    if isinstance(name, str) and name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return ZoneInfo(default)


def next_local_time(now: datetime, hhmm: str, days: list[str] | None, zone: ZoneInfo) -> datetime:
    """The first instant strictly after ``now`` whose local time in ``zone`` is ``hhmm``.

    On a day when the local time does not exist (a DST gap) the wall clock is normalised
    forward, which is what a marketer expects of "10:00 every day".
    """
    hour, minute = (int(x) for x in hhmm.split(":"))
    local_now = now.astimezone(zone)
    day: date = local_now.date()
    for _ in range(8 * 7):
        candidate = datetime.combine(day, time(hour, minute), tzinfo=zone)
        candidate = candidate.astimezone(zone)  # normalise a nonexistent wall time
        if candidate > local_now and (not days or WEEKDAYS[candidate.weekday()] in days):
            return candidate
        day += timedelta(days=1)
    raise ValueError(f"no {hhmm} on {days} within 8 weeks")  # unreachable for valid input


class StepActivities:
    """Local activities for ``branch``, ``wait_until``, ``tag`` and ``update`` steps.

    Args:
        store: SQL store (profiles, event history).
        wecom: When given, ``tag`` steps also mark the tags in WeCom.
    """

    def __init__(self, store: Store, wecom: WeComClient | None = None) -> None:
        self._store = store
        self._wecom = wecom

    @activity.defn(name=BRANCH)
    async def branch(self, inp: BranchInput) -> BranchResult:
        """Index of the first case whose rule holds (-1 for else), on the fresh profile."""
        return await self._store.offload(self._branch, inp)

    def _branch(self, inp: BranchInput) -> BranchResult:
        customer = self._store.ensure_customer(inp.context.customer_id)
        ctx = rule_context(self._store, inp.context, customer=customer)
        errors = []
        for i, source in enumerate(inp.rules):
            try:
                if rule_cache.rule(source).test(ctx):
                    return BranchResult(index=i, errors=errors)
            except RuleError as exc:
                # A case whose rule cannot be evaluated (e.g. a missing score compared
                # with a number) does not match; the error is kept in the step result.
                errors.append(exc.message)
        return BranchResult(index=-1, errors=errors)

    @activity.defn(name=NEXT_TIME)
    async def next_time(self, inp: NextTimeInput) -> str:
        """When the next ``time`` on ``days`` is, in the customer's time zone (§6a.10)."""
        profile = await self._store.offload(self._store.get_customer, inp.customer_id)
        zone = customer_zone(profile, inp.default_timezone)
        return next_local_time(datetime.fromisoformat(inp.now), inp.time, inp.days, zone).isoformat()

    @activity.defn(name=TAG)
    async def tag(self, inp: TagInput) -> list[str]:
        """Add and remove tags on the profile, and in WeCom when the customer is a WeCom contact.

        Corp tags are created on first use. Returns the resulting local tags.
        """

        def change(profile: dict[str, Any]) -> dict[str, Any]:
            tags = [t for t in profile.get("tags") or [] if t not in inp.remove]
            tags += [t for t in inp.add if t not in tags]
            return {**profile, "tags": tags}

        profile = await self._store.offload(self._store.update_customer, inp.customer_id, change)
        external, owner = profile.get("external_userid"), profile.get("owner_userid")
        if self._wecom is not None and external and owner:
            try:
                # Idempotent in WeCom too: marking a tag twice leaves it marked once.
                await self._wecom.mark_tag(str(owner), str(external), list(inp.add), list(inp.remove))
            except WeComError as exc:
                if exc.retryable:
                    raise
                activity.logger.warning("WeCom refused the tags of %s: %s", inp.customer_id, exc)
        return list(profile["tags"])

    @activity.defn(name=UPDATE)
    async def update(self, inp: UpdateInput) -> dict[str, Any]:
        """Evaluate every rule on the same fresh profile, then write all the attributes.

        Raises:
            ApplicationError: Non-retryable when a rule cannot be evaluated (the step parks).
        """
        return await self._store.offload(self._update, inp)

    def _update(self, inp: UpdateInput) -> dict[str, Any]:
        def compute(customer: dict[str, Any]) -> dict[str, Any]:
            ctx = rule_context(self._store, inp.context, customer=customer)
            values: dict[str, Any] = {}
            for attr, source in inp.updates.items():
                try:
                    values[attr] = thaw(rule_cache.rule(source).evaluate(ctx))
                except RuleError as exc:
                    raise ApplicationError(
                        f"{attr}: {exc.message}", type="RuleEvaluationError", non_retryable=True
                    ) from exc
            return values

        # Local activities run at least once: apply each step visit's changes once.
        key = inp.idempotency_key or f"update:{inp.context.customer_id}:{inp.context.now}"
        return self._store.apply_once(key, inp.context.customer_id, compute)
