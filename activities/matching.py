"""Rule matching for events that reach a running enrollment (a local activity)."""

from __future__ import annotations

from temporalio import activity

from activities.context import rule_context
from engine.store import Store
from rules import RuleError
from rules import cache as rule_cache
from workflows.messages import MATCH, MatchInput


class MatchActivities:
    """Evaluates ``wait_for`` / goal / exit rules against the customer's fresh profile.

    Args:
        store: SQL store (for the profile and event history).
    """

    def __init__(self, store: Store) -> None:
        self._store = store

    @activity.defn(name=MATCH)
    async def match(self, inp: MatchInput) -> bool:
        """True when the rule holds for this event."""
        return await self._store.offload(self._match, inp)

    def _match(self, inp: MatchInput) -> bool:
        rule = rule_cache.rule(inp.rule)
        customer_id = inp.context.customer_id
        customer = self._store.get_customer(customer_id) if "customer" in rule.names else None
        context = rule_context(self._store, inp.context, customer=customer or {"id": customer_id},
                               event=inp.event.as_context())  # fmt: skip
        try:
            return rule.test(context)
        except RuleError as exc:
            # A rule that cannot be evaluated on this event's data does not match it;
            # ending the enrollment over one malformed event would be worse.
            activity.logger.warning("rule did not evaluate, treating as no match: %s", exc.message)
            return False
