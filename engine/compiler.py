"""``JourneySpec`` -> ``JourneyPlan`` (layer 2: meaning).

Everything a marketer wants to know before anything runs is checked here, and all
problems are reported together: step ids and jump targets, reachability, cycles without a
wait, channel fields, and every rule and template against the names it can see.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from engine import plan as p
from engine.errors import Problem, SpecError
from engine.loader import parse_journey
from engine.spec import JourneySpec, SendStep, WaitForStep, WaitStep
from engine.yamlsrc import LineIndex, PathPart
from rules import RuleError, compile_rule, compile_template
from rules.context import suggest

#: Names visible to rules, by where the rule is written.
TRIGGER_NAMES = frozenset({"event", "customer", "vars", "journey"})
STEP_RULE_NAMES = frozenset({"event", "customer", "trigger", "vars", "journey", "steps"})
TEMPLATE_NAMES = frozenset({"customer", "trigger", "vars", "journey", "steps"})

CHANNELS = ("wecom.app", "wecom.customer")
_APP_BODIES = ("text", "markdown", "textcard")


@dataclass
class _Ctx:
    index: LineIndex
    problems: list[Problem] = field(default_factory=list)

    def add(self, path: Iterable[PathPart], message: str) -> None:
        self.problems.append(self.index.problem(tuple(path), message))

    def rule(self, source: str | None, path: tuple[PathPart, ...], names: frozenset[str]) -> None:
        if source is None:
            return
        try:
            compile_rule(source, names=names)
        except RuleError as exc:
            self.add(path, exc.message)

    def template(self, source: str | None, path: tuple[PathPart, ...]) -> None:
        if source is None:
            return
        try:
            compile_template(source, names=TEMPLATE_NAMES)
        except RuleError as exc:
            self.add(path, exc.message)


def _step_ids(spec: JourneySpec) -> list[str]:
    return [s.id or f"steps[{i}]" for i, s in enumerate(spec.steps)]


def _target(ctx: _Ctx, value: str, path: tuple[PathPart, ...], next_id: str, ids: list[str]) -> str:
    if value == "next":
        return next_id
    if value == "exit":
        return p.EXIT
    if value in ids:
        return value
    hint = suggest(value, [*ids, "next", "exit"])
    ctx.add(
        path, f"unknown step '{value}'" + (f"; did you mean '{hint}'?" if hint else "; use next, exit or a step id")
    )
    return p.END


def _send_message(ctx: _Ctx, step: SendStep, path: tuple[PathPart, ...]) -> dict[str, Any]:
    send = step.send
    where = (*path, "send")
    if send.channel not in CHANNELS:
        hint = suggest(send.channel, CHANNELS)
        ctx.add(
            (*where, "channel"),
            f"unknown channel '{send.channel}'"
            + (f"; did you mean '{hint}'?" if hint else f"; available: {', '.join(CHANNELS)}"),
        )
        return {}
    message: dict[str, Any] = {}
    if send.channel == "wecom.app":
        bodies = [b for b in _APP_BODIES if getattr(send, b) is not None]
        if len(bodies) != 1:
            ctx.add(
                where,
                "wecom.app needs exactly one of text, markdown or textcard"
                + (f" (found {', '.join(bodies)})" if bodies else ""),
            )
        for forbidden in ("sender", "attachments"):
            if getattr(send, forbidden) is not None:
                ctx.add((*where, forbidden), f"'{forbidden}' is not used by wecom.app")
        to = send.to if send.to is not None else "{{ customer.owner_userid }}"
        recipients = [to] if isinstance(to, str) else list(to)
        if not recipients:
            ctx.add((*where, "to"), "wecom.app needs at least one recipient")
        for i, r in enumerate(recipients):
            ctx.template(r, (*where, "to", i) if isinstance(send.to, list) else (*where, "to"))
        message["to"] = recipients
        if send.text is not None:
            ctx.template(send.text, (*where, "text"))
            message["text"] = send.text
        if send.markdown is not None:
            ctx.template(send.markdown, (*where, "markdown"))
            message["markdown"] = send.markdown
        if send.textcard is not None:
            card = send.textcard.model_dump(exclude_none=True)
            for key, value in card.items():
                ctx.template(value, (*where, "textcard", key))
            message["textcard"] = card
    else:  # wecom.customer
        if not send.sender:
            ctx.add(where, "wecom.customer needs 'sender' (the staff userid), e.g. \"{{ customer.owner_userid }}\"")
        if send.text is None and not send.attachments:
            ctx.add(where, "wecom.customer needs 'text' and/or 'attachments'")
        for forbidden in ("to", "markdown", "textcard"):
            if getattr(send, forbidden) is not None:
                ctx.add(
                    (*where, forbidden),
                    f"'{forbidden}' is not used by wecom.customer (it sends to the customer's external_userid)",
                )
        ctx.template(send.sender, (*where, "sender"))
        message["sender"] = send.sender or ""
        if send.text is not None:
            ctx.template(send.text, (*where, "text"))
            message["text"] = send.text
        if send.attachments:
            attachments = [a.model_dump(exclude_none=True) for a in send.attachments]
            for i, att in enumerate(attachments):
                _check_attachment_templates(ctx, att, (*where, "attachments", i))
            message["attachments"] = attachments
    return message


def _check_attachment_templates(ctx: _Ctx, value: Any, path: tuple[PathPart, ...]) -> None:
    if isinstance(value, str):
        ctx.template(value, path)
    elif isinstance(value, dict):
        for k, v in value.items():
            _check_attachment_templates(ctx, v, (*path, k))


def _check_graph(ctx: _Ctx, nodes: list[p.PlanNode], start: str, paths: dict[str, tuple[PathPart, ...]]) -> None:
    by_id = {n.id: n for n in nodes}

    def edges(node: p.PlanNode) -> list[str]:
        if isinstance(node, p.WaitForNode):
            out = [node.on_event, node.on_timeout]
        elif isinstance(node, p.SendNode):
            out = [node.next, node.on_error]
        else:
            out = [node.next]
        return [t for t in out if t in by_id]

    reachable: set[str] = set()
    todo = [start] if start in by_id else []
    while todo:
        nid = todo.pop()
        if nid not in reachable:
            reachable.add(nid)
            todo.extend(edges(by_id[nid]))
    for node in nodes:
        if node.id not in reachable:
            ctx.add(paths[node.id], f"step '{node.id}' can never be reached")
    # A loop must contain a wait, or one enrollment would spin forever: look for cycles
    # among steps that do not wait.
    waits = (p.WaitNode, p.WaitForNode)
    state: dict[str, int] = {}

    def visit(nid: str, trail: list[str]) -> None:
        state[nid] = 1
        for nxt in edges(by_id[nid]):
            if isinstance(by_id[nxt], waits):
                continue
            if state.get(nxt) == 1:
                loop = trail[trail.index(nxt) :] + [nxt] if nxt in trail else [nid, nxt]
                ctx.add(
                    paths[nxt],
                    "loop without a wait: " + " -> ".join(loop) + "; add a wait, wait_until or wait_for to it",
                )
            elif nxt not in state:
                visit(nxt, [*trail, nxt])
        state[nid] = 2

    for node in nodes:
        if node.id not in state and not isinstance(node, waits):
            visit(node.id, [node.id])


def compile_spec(spec: JourneySpec, index: LineIndex, *, source: str) -> p.JourneyPlan:
    """Check meaning and build the frozen plan.

    Args:
        spec: The shape-checked journey.
        index: Line index from the loader, to locate problems.
        source: File name for messages.

    Returns:
        The plan, stamped with its hash.

    Raises:
        SpecError: With every problem found.
    """
    ctx = _Ctx(index)
    ctx.rule(spec.trigger.when, ("trigger", "when"), TRIGGER_NAMES)
    ctx.rule(spec.trigger.key, ("trigger", "key"), TRIGGER_NAMES)
    if spec.trigger.event.count("*") > 1 or ("*" in spec.trigger.event and not spec.trigger.event.endswith("*")):
        ctx.add(("trigger", "event"), "'*' may only end an event name, as a prefix match (order.*)")

    ids = _step_ids(spec)
    seen: dict[str, int] = {}
    for i, sid in enumerate(ids):
        if sid in seen:
            ctx.add(("steps", i, "id"), f"duplicate step id '{sid}' (first used by steps[{seen[sid]}])")
        seen.setdefault(sid, i)

    nodes: list[p.PlanNode] = []
    paths: dict[str, tuple[PathPart, ...]] = {}
    for i, step in enumerate(spec.steps):
        sid = ids[i]
        path: tuple[PathPart, ...] = ("steps", i)
        paths.setdefault(sid, path)
        nxt = ids[i + 1] if i + 1 < len(ids) else p.END
        if isinstance(step, SendStep):
            on_error = p.PARK if step.on_error is None else _target(ctx, step.on_error, (*path, "on_error"), nxt, ids)
            retry = step.retry
            nodes.append(
                p.SendNode(
                    id=sid,
                    next=nxt,
                    channel=step.send.channel,
                    message=_send_message(ctx, step, path),
                    timeout_s=step.timeout.total_seconds() if step.timeout else 30.0,
                    retry=p.RetryPlan(
                        max_attempts=retry.max_attempts,
                        initial_s=retry.initial.total_seconds(),
                        backoff=retry.backoff,
                        max_interval_s=retry.max_interval.total_seconds(),
                    )
                    if retry
                    else p.RetryPlan(),
                    on_error=on_error,
                )
            )
        elif isinstance(step, WaitStep):
            nodes.append(p.WaitNode(id=sid, next=nxt, seconds=step.wait.total_seconds()))
        elif isinstance(step, WaitForStep):
            ctx.rule(step.wait_for.when, (*path, "wait_for", "when"), STEP_RULE_NAMES)
            nodes.append(
                p.WaitForNode(
                    id=sid,
                    next=nxt,
                    event=step.wait_for.event,
                    when=step.wait_for.when,
                    timeout_s=step.wait_for.timeout.total_seconds(),
                    on_event=_target(ctx, step.on_event, (*path, "on_event"), nxt, ids),
                    on_timeout=_target(ctx, step.on_timeout, (*path, "on_timeout"), nxt, ids),
                )
            )
    start = ids[0]
    if not any(pr.message.startswith("duplicate step id") for pr in ctx.problems):
        _check_graph(ctx, nodes, start, paths)
    if ctx.problems:
        raise SpecError(source, ctx.problems)
    plan = p.JourneyPlan(
        journey_id=spec.journey,
        name=spec.name or spec.journey,
        timezone=spec.timezone,
        category=spec.category,
        strict=spec.strict,
        trigger=p.TriggerPlan(event=spec.trigger.event, when=spec.trigger.when, key=spec.trigger.key),
        vars=spec.vars,
        start=start,
        nodes=tuple(nodes),
    )
    return plan.with_hash()


def compile_text(text: str, *, source: str = "<journey>") -> p.JourneyPlan:
    """Parse and compile a journey document in one call.

    Raises:
        SpecError: Any problem, located by file, YAML path and line.
    """
    spec, index = parse_journey(text, source=source)
    return compile_spec(spec, index, source=source)
