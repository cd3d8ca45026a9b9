"""``JourneySpec`` -> ``JourneyPlan`` (layer 2: meaning).

Everything a marketer wants to know before anything runs is checked here, and all
problems are reported together: step ids and jump targets, reachability, loops without a
wait, channel fields, activity inputs, times and durations, and every rule and template
against the names it can see where it is written.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from engine import plan as p
from engine import spec as s
from engine.cron import parse_cron
from engine.errors import Problem, SpecError
from engine.loader import parse_journey
from engine.registry import REGISTRY, ActivityDefinition, ActivityRegistry, load_activities
from engine.yamlsrc import LineIndex, PathPart
from rules import RuleError, compile_rule, compile_template
from rules.context import suggest

#: Names visible to rules, by where the rule is written.
TRIGGER_NAMES = frozenset({"event", "customer", "vars", "journey"})
AUDIENCE_NAMES = frozenset({"event", "trigger", "customer", "vars", "journey"})
EVENT_RULE_NAMES = frozenset({"event", "customer", "trigger", "vars", "journey", "steps"})
STEP_RULE_NAMES = frozenset({"customer", "trigger", "vars", "journey", "steps"})
TEMPLATE_NAMES = STEP_RULE_NAMES

CHANNELS = ("wecom.app", "wecom.customer", "wecom.welcome", "wecom.group_bot", "webhook")
STAFF_CHANNELS = frozenset({"wecom.app", "wecom.group_bot"})
_TIME = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
_ATTR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
#: Attributes an ``update`` step may not overwrite.
PROTECTED_ATTRIBUTES = frozenset({"id"})


@dataclass
class Compiled:
    """A compiled journey (room for non-fatal notes to the author when there are any)."""

    plan: p.JourneyPlan


@dataclass
class _Ctx:
    index: LineIndex
    registry: ActivityRegistry
    problems: list[Problem] = field(default_factory=list)
    ids: dict[str, tuple[PathPart, ...]] = field(default_factory=dict)

    def add(self, path: Iterable[PathPart], message: str) -> None:
        self.problems.append(self.index.problem(tuple(path), message))

    def rule(self, source: str | None, path: tuple[PathPart, ...], names: frozenset[str]) -> None:
        if source is None:
            return
        try:
            compile_rule(source, names=names)
        except RuleError as exc:
            self.add(path, exc.message)

    def template(self, source: Any, path: tuple[PathPart, ...]) -> None:
        if isinstance(source, str):
            try:
                compile_template(source, names=TEMPLATE_NAMES)
            except RuleError as exc:
                self.add(path, exc.message)
        elif isinstance(source, list):
            for i, item in enumerate(source):
                self.template(item, (*path, i))
        elif isinstance(source, dict):
            for key, value in source.items():
                self.template(value, (*path, key))

    def target(self, value: str, path: tuple[PathPart, ...], next_id: str) -> str:
        if value == "next":
            return next_id
        if value == "exit":
            return p.EXIT
        if value in self.ids:
            return value
        hint = suggest(value, [*self.ids, "next", "exit"])
        self.add(
            path, f"unknown step '{value}'" + (f"; did you mean '{hint}'?" if hint else "; use next, exit or a step id")
        )
        return p.END


# -- ids ------------------------------------------------------------------------------


def _children(step: Any, sid: str, path: tuple[PathPart, ...]) -> list[tuple[str, tuple[PathPart, ...], list[Any]]]:
    """(id prefix, yaml path, steps) of every nested step list of a branch or split."""
    if isinstance(step, s.BranchStep):
        return [
            (f"{sid}.branch[{k}]", (*path, "branch", k, "steps" if isinstance(c, s.BranchCase) else "else"),
             c.steps if isinstance(c, s.BranchCase) else c.else_)
            for k, c in enumerate(step.branch)
        ]  # fmt: skip
    if isinstance(step, s.SplitStep):
        return [(f"{sid}.split[{k}]", (*path, "split", k, "steps"), arm.steps) for k, arm in enumerate(step.split)]
    return []


def _assign_ids(ctx: _Ctx, steps: list[Any], prefix: str, path: tuple[PathPart, ...], out: dict[int, str]) -> None:
    for i, step in enumerate(steps):
        here = (*path, i)
        sid = step.id or (f"{prefix}.steps[{i}]" if prefix else f"steps[{i}]")
        if sid in ctx.ids:
            first = ctx.ids[sid]
            ctx.add((*here, "id"), f"duplicate step id '{sid}' (first used at line {ctx.index.line_of(first)})")
        else:
            ctx.ids[sid] = here
        out[id(step)] = sid
        for child_prefix, child_path, child_steps in _children(step, sid, here):
            _assign_ids(ctx, child_steps, child_prefix, child_path, out)


# -- steps ----------------------------------------------------------------------------


def _retry(retry: s.RetrySpec | None, default: p.RetryPlan | None = None) -> p.RetryPlan:
    """The step's retry policy: the fields it writes, the default (an activity's declaration) for the rest."""
    default = default or p.RetryPlan()
    if retry is None:
        return default
    given = retry.model_fields_set
    return p.RetryPlan(
        max_attempts=retry.max_attempts if "max_attempts" in given else default.max_attempts,
        initial_s=retry.initial.total_seconds() if "initial" in given else default.initial_s,
        backoff=retry.backoff if "backoff" in given else default.backoff,
        max_interval_s=retry.max_interval.total_seconds() if "max_interval" in given else default.max_interval_s,
    )


def _declared_retry(definition: ActivityDefinition) -> p.RetryPlan:
    r = definition.retry
    return p.RetryPlan(max_attempts=r.max_attempts, initial_s=r.initial.total_seconds(), backoff=r.backoff,
                       max_interval_s=r.max_interval.total_seconds())  # fmt: skip


def _compile_list(ctx: _Ctx, spec: s.JourneySpec, steps: list[Any], path: tuple[PathPart, ...], after: str,
                  ids: dict[int, str], nodes: list[p.PlanNode]) -> str:  # fmt: skip
    """Compile a step list whose last step continues at ``after``; returns its entry id."""
    for i, step in enumerate(steps):
        here = (*path, i)
        sid = ids[id(step)]
        nxt = ids[id(steps[i + 1])] if i + 1 < len(steps) else after
        # Reserve the slot so nodes stay in document order (nested steps follow their parent).
        slot = len(nodes)
        nodes.append(p.GotoNode(id=sid, next=nxt))
        nodes[slot] = _compile_step(ctx, spec, step, sid, here, nxt, ids, nodes)
    return ids[id(steps[0])] if steps else after


def _compile_step(ctx: _Ctx, spec: s.JourneySpec, step: Any, sid: str, path: tuple[PathPart, ...], nxt: str,
                  ids: dict[int, str], nodes: list[p.PlanNode]) -> p.PlanNode:  # fmt: skip
    if isinstance(step, s.SendStep):
        message, customer_facing = _send_message(ctx, spec, step, path)
        on_error = p.PARK if step.on_error is None else ctx.target(step.on_error, (*path, "on_error"), nxt)
        return p.SendNode(
            id=sid, next=nxt, channel=step.send.channel, message=message, customer_facing=customer_facing,
            timeout_s=step.timeout.total_seconds() if step.timeout else 30.0, retry=_retry(step.retry),
            on_error=on_error,
        )  # fmt: skip
    if isinstance(step, s.ActivityStep):
        return _activity(ctx, step, sid, path, nxt)
    if isinstance(step, s.WaitStep):
        return p.WaitNode(id=sid, next=nxt, seconds=step.wait.total_seconds())
    if isinstance(step, s.WaitUntilStep):
        if not _TIME.match(step.wait_until.time):
            ctx.add(
                (*path, "wait_until", "time"), f'{step.wait_until.time!r} is not a time of day; use "HH:MM" (24-hour)'
            )
        days = tuple(dict.fromkeys(step.wait_until.days)) if step.wait_until.days else None
        return p.WaitUntilNode(id=sid, next=nxt, time=step.wait_until.time, days=days)
    if isinstance(step, s.WaitForStep):
        ctx.rule(step.wait_for.when, (*path, "wait_for", "when"), EVENT_RULE_NAMES)
        _check_event_name(ctx, step.wait_for.event, (*path, "wait_for", "event"))
        return p.WaitForNode(
            id=sid, next=nxt, event=step.wait_for.event, when=step.wait_for.when,
            timeout_s=step.wait_for.timeout.total_seconds(),
            on_event=ctx.target(step.on_event, (*path, "on_event"), nxt),
            on_timeout=ctx.target(step.on_timeout, (*path, "on_timeout"), nxt),
        )  # fmt: skip
    if isinstance(step, s.BranchStep):
        cases: list[p.BranchCase] = []
        else_target = nxt
        for k, case in enumerate(step.branch):
            if isinstance(case, s.BranchElse):
                if k != len(step.branch) - 1:
                    ctx.add((*path, "branch", k), "'else' must be the last case of a branch")
                else_target = _compile_list(ctx, spec, case.else_, (*path, "branch", k, "else"), nxt, ids, nodes)
            else:
                ctx.rule(case.when, (*path, "branch", k, "when"), STEP_RULE_NAMES)
                target = _compile_list(ctx, spec, case.steps, (*path, "branch", k, "steps"), nxt, ids, nodes)
                cases.append(p.BranchCase(when=case.when, target=target))
        if not cases:
            ctx.add((*path, "branch"), "a branch needs at least one case with 'when'")
        return p.BranchNode(id=sid, next=nxt, cases=tuple(cases), else_target=else_target)
    if isinstance(step, s.SplitStep):
        seen: set[str] = set()
        arms = []
        for k, arm in enumerate(step.split):
            if arm.arm in seen:
                ctx.add((*path, "split", k, "arm"), f"duplicate arm name '{arm.arm}'")
            seen.add(arm.arm)
            target = _compile_list(ctx, spec, arm.steps, (*path, "split", k, "steps"), nxt, ids, nodes)
            arms.append(p.SplitArm(arm=arm.arm, weight=arm.weight, target=target))
        return p.SplitNode(id=sid, next=nxt, arms=tuple(arms))
    if isinstance(step, s.TagStep):
        for key in ("add", "remove"):
            for k, tag in enumerate(getattr(step.tag, key)):
                if not tag.strip() or len(tag) > 64:
                    ctx.add((*path, "tag", key, k), "a tag is 1-64 characters")
        if not step.tag.add and not step.tag.remove:
            ctx.add((*path, "tag"), "a tag step needs 'add' or 'remove'")
        both = set(step.tag.add) & set(step.tag.remove)
        if both:
            ctx.add((*path, "tag"), f"tag(s) both added and removed: {', '.join(sorted(both))}")
        return p.TagNode(id=sid, next=nxt, add=tuple(step.tag.add), remove=tuple(step.tag.remove))
    if isinstance(step, s.UpdateStep):
        for attr, rule in step.update.items():
            if not _ATTR.match(attr):
                ctx.add((*path, "update", attr), f"attribute name {attr!r} must be letters, digits and '_'")
            elif attr in PROTECTED_ATTRIBUTES:
                ctx.add((*path, "update", attr), f"'{attr}' cannot be changed by a journey")
            ctx.rule(rule, (*path, "update", attr), STEP_RULE_NAMES)
        return p.UpdateNode(id=sid, next=nxt, updates=dict(step.update))
    if isinstance(step, s.GotoStep):
        return p.GotoNode(id=sid, next=ctx.target(step.goto, (*path, "goto"), nxt))
    if isinstance(step, s.ExitStep):
        return p.ExitNode(id=sid, next=p.EXIT, reason=step.exit.reason if step.exit else None)
    raise AssertionError(f"unhandled step {type(step).__name__}")  # pragma: no cover - the union is closed


def _activity(ctx: _Ctx, step: s.ActivityStep, sid: str, path: tuple[PathPart, ...], nxt: str) -> p.ActivityNode:
    definition = ctx.registry.get(step.activity)
    on_error = p.PARK if step.on_error is None else ctx.target(step.on_error, (*path, "on_error"), nxt)
    if definition is None:
        known = ctx.registry.names()
        hint = suggest(step.activity, known)
        more = f"; did you mean '{hint}'?" if hint else f"; registered: {', '.join(known)}"
        ctx.add((*path, "activity"), f"unknown activity '{step.activity}'{more}")
        return p.ActivityNode(id=sid, next=nxt, activity=step.activity, with_=step.with_, on_error=on_error)
    ctx.template(step.with_, (*path, "with"))
    try:
        definition.input_model.model_validate(step.with_)
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(err["loc"])
            if _is_template_at(step.with_, loc):
                continue  # checked after rendering, at run time
            message = str(err["msg"]).removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                fields = list(definition.input_model.model_fields)
                hint = suggest(str(loc[-1]), fields)
                message = f"unknown input '{loc[-1]}' for {step.activity}" + (
                    f"; did you mean '{hint}'?" if hint else ""
                )
            elif err["type"] == "missing":
                message = f"{step.activity} needs '{loc[-1]}'"
            ctx.add((*path, "with", *loc), message)
    return p.ActivityNode(
        id=sid, next=nxt, activity=step.activity, with_=step.with_,
        timeout_s=step.timeout.total_seconds() if step.timeout else definition.timeout.total_seconds(),
        retry=_retry(step.retry, _declared_retry(definition)), on_error=on_error,
    )  # fmt: skip


def _is_template_at(data: Any, loc: tuple[Any, ...]) -> bool:
    value = data
    for part in loc:
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and isinstance(part, int) and part < len(value):
            value = value[part]
        else:
            return False
    return isinstance(value, str) and "{{" in value


def _check_event_name(ctx: _Ctx, pattern: str, path: tuple[PathPart, ...]) -> None:
    if pattern.count("*") > 1 or ("*" in pattern and not pattern.endswith("*")):
        ctx.add(path, "'*' may only end an event name, as a prefix match (order.*)")


def _send_message(ctx: _Ctx, spec: s.JourneySpec, step: s.SendStep,
                  path: tuple[PathPart, ...]) -> tuple[dict[str, Any], bool]:  # fmt: skip
    """Channel checks; returns the plan's message fields and whether policies govern it."""
    send = step.send
    where = (*path, "send")
    if send.channel not in CHANNELS:
        hint = suggest(send.channel, CHANNELS)
        ctx.add((*where, "channel"), f"unknown channel '{send.channel}'"
                + (f"; did you mean '{hint}'?" if hint else f"; available: {', '.join(CHANNELS)}"))  # fmt: skip
        return {}, False
    allowed = {
        "wecom.app": {"to", "text", "markdown", "textcard"},
        "wecom.customer": {"sender", "text", "attachments"},
        "wecom.welcome": {"text", "attachments"},
        "wecom.group_bot": {"webhook_key", "text", "markdown"},
        "webhook": {"url", "body", "customer_facing"},
    }[send.channel]
    present = {k for k, v in send.model_dump(exclude={"channel"}).items() if v is not None}
    for extra in sorted(present - allowed):
        ctx.add((*where, extra), f"'{extra}' is not used by {send.channel}; it takes {', '.join(sorted(allowed))}")
    message: dict[str, Any] = {k: v for k, v in send.model_dump(exclude={"channel"}, exclude_none=True).items()
                               if k in allowed}  # fmt: skip
    ctx.template({k: v for k, v in message.items() if k != "customer_facing"}, where)
    channel = send.channel
    if channel in ("wecom.app", "wecom.group_bot"):
        bodies = [b for b in ("text", "markdown", "textcard") if b in message]
        choices = "text, markdown or textcard" if channel == "wecom.app" else "text or markdown"
        if len(bodies) != 1:
            ctx.add(
                where, f"{channel} needs exactly one of {choices}" + (f" (found {', '.join(bodies)})" if bodies else "")
            )
    if channel == "wecom.app":
        to = message.get("to", "{{ customer.owner_userid }}")
        message["to"] = [to] if isinstance(to, str) else list(to)
        if not message["to"]:
            ctx.add((*where, "to"), "wecom.app needs at least one recipient")
    elif channel == "wecom.customer":
        if not send.sender:
            ctx.add(where, "wecom.customer needs 'sender' (the staff userid), e.g. \"{{ customer.owner_userid }}\"")
        if send.text is None and not send.attachments:
            ctx.add(where, "wecom.customer needs 'text' and/or 'attachments'")
    elif channel == "wecom.welcome":
        if send.text is None and not send.attachments:
            ctx.add(where, "wecom.welcome needs 'text' and/or 'attachments'")
        if spec.trigger.event != "wecom.contact_added":
            ctx.add((*where, "channel"), "wecom.welcome replies with the welcome_code of the triggering add; "
                    "the journey's trigger must be 'event: wecom.contact_added'")  # fmt: skip
    elif channel == "wecom.group_bot":
        if not send.webhook_key:
            ctx.add(where, "wecom.group_bot needs 'webhook_key' (the robot's key)")
    elif channel == "webhook":
        if not send.url:
            ctx.add(where, "webhook needs 'url'")
        elif not str(send.url).startswith(("http://", "https://", "{{")):
            ctx.add((*where, "url"), "webhook url must start with http:// or https://")
    if channel == "webhook":
        customer_facing = bool(send.customer_facing)
    else:
        customer_facing = channel == "wecom.customer"
    message.pop("customer_facing", None)
    return message, customer_facing


# -- graph ----------------------------------------------------------------------------


def _check_graph(ctx: _Ctx, nodes: list[p.PlanNode], start: str) -> None:
    by_id = {n.id: n for n in nodes}
    reachable: set[str] = set()
    todo = [start] if start in by_id else []
    while todo:
        nid = todo.pop()
        if nid in reachable:
            continue
        reachable.add(nid)
        todo.extend(t for t in p.edges(by_id[nid]) if t in by_id)
    for node in nodes:
        if node.id not in reachable:
            ctx.add(ctx.ids[node.id], f"step '{node.id}' can never be reached")
    # A loop must contain a wait, or one enrollment would spin forever: look for cycles
    # among steps that do not wait (iteratively: journeys may have hundreds of steps).
    state: dict[str, int] = {}
    reported: set[str] = set()
    for root in (n.id for n in nodes if n.kind not in p.WAITING_KINDS):
        if root in state:
            continue
        stack: list[tuple[str, list[str]]] = [(root, [t for t in p.edges(by_id[root]) if t in by_id])]
        trail = [root]
        state[root] = 1
        while stack:
            nid, pending = stack[-1]
            if not pending:
                state[nid] = 2
                stack.pop()
                trail.pop()
                continue
            nxt = pending.pop()
            if by_id[nxt].kind in p.WAITING_KINDS:
                continue
            if state.get(nxt) == 1:
                if nxt not in reported:
                    reported.add(nxt)
                    loop = [*trail[trail.index(nxt) :], nxt]
                    ctx.add(ctx.ids[nxt], "loop without a wait: " + " -> ".join(loop)
                            + "; add a wait, wait_until or wait_for to it")  # fmt: skip
            elif nxt not in state:
                state[nxt] = 1
                trail.append(nxt)
                stack.append((nxt, [t for t in p.edges(by_id[nxt]) if t in by_id]))


# -- journey --------------------------------------------------------------------------


def _header(ctx: _Ctx, spec: s.JourneySpec) -> dict[str, Any]:
    trig = spec.trigger
    if trig.event is None and trig.schedule is None:
        ctx.add(("trigger",), "a trigger needs 'event' (or 'schedule')")
    if trig.event is not None and trig.schedule is not None:
        ctx.add(("trigger",), "a trigger has exactly one of 'event' or 'schedule'")
    if trig.schedule is not None:
        try:
            parse_cron(trig.schedule)
        except ValueError as exc:
            ctx.add(("trigger", "schedule"), f"invalid schedule: {exc}")
        for key in ("when", "key"):
            if getattr(trig, key) is not None:
                ctx.add(("trigger", key), f"a scheduled trigger has no event, so no '{key}'; filter with 'audience'")
    if trig.event is not None:
        _check_event_name(ctx, trig.event, ("trigger", "event"))
    ctx.rule(trig.when, ("trigger", "when"), TRIGGER_NAMES)
    ctx.rule(trig.key, ("trigger", "key"), TRIGGER_NAMES)
    ctx.rule(spec.audience, ("audience",), AUDIENCE_NAMES)
    goal = None
    if spec.goal is not None:
        _check_event_name(ctx, spec.goal.event, ("goal", "event"))
        ctx.rule(spec.goal.when, ("goal", "when"), EVENT_RULE_NAMES)
        goal = p.GoalPlan(event=spec.goal.event, when=spec.goal.when, exit=spec.goal.exit,
                          within_s=spec.goal.within.total_seconds() if spec.goal.within else None)  # fmt: skip
    exit_when = []
    for i, cond in enumerate(spec.exit_when):
        _check_event_name(ctx, cond.event, ("exit_when", i, "event"))
        ctx.rule(cond.when, ("exit_when", i, "when"), EVENT_RULE_NAMES)
        exit_when.append(p.MatcherPlan(event=cond.event, when=cond.when))
    if isinstance(spec.reentry, s.CooldownSpec):
        reentry = p.ReentryPlan(mode="cooldown", cooldown_s=spec.reentry.cooldown.total_seconds())
    else:
        reentry = p.ReentryPlan(mode=spec.reentry)
    policy = None
    if spec.policy is not None:
        pol = spec.policy
        quiet = None
        if pol.quiet_hours is not None:
            for key in ("start", "end"):
                value = getattr(pol.quiet_hours, key)
                if not _TIME.match(value):
                    ctx.add(("policy", "quiet_hours", key), f'{value!r} is not a time of day; use "HH:MM" (24-hour)')
            if pol.quiet_hours.start == pol.quiet_hours.end:
                ctx.add(("policy", "quiet_hours"), "quiet hours start and end at the same time")
            quiet = p.QuietHoursPlan(
                start=pol.quiet_hours.start, end=pol.quiet_hours.end, action=pol.quiet_hours.action
            )
        policy = p.PolicyPlan(
            quiet_hours=quiet, on_capped=pol.on_capped, priority=pol.priority,
            frequency_caps=tuple(p.CapPlan(max=c.max, per_s=c.per.total_seconds()) for c in pol.frequency_caps),
        )  # fmt: skip
    return {"goal": goal, "exit_when": tuple(exit_when), "reentry": reentry, "policy": policy}


def compile_spec(spec: s.JourneySpec, index: LineIndex, *, source: str,
                 registry: ActivityRegistry | None = None) -> Compiled:  # fmt: skip
    """Check meaning and build the frozen plan.

    Args:
        spec: The shape-checked journey.
        index: Line index from the loader, to locate problems.
        source: File name for messages.
        registry: Activities ``activity:`` steps may name (default: every discovered
            activity, ``engine.registry.load_activities``).

    Returns:
        The plan, stamped with its hash.

    Raises:
        SpecError: With every problem found.
    """
    ctx = _Ctx(index, registry or load_activities())
    header = _header(ctx, spec)
    ids: dict[int, str] = {}
    _assign_ids(ctx, spec.steps, "", ("steps",), ids)
    nodes: list[p.PlanNode] = []
    start = _compile_list(ctx, spec, spec.steps, ("steps",), p.END, ids, nodes)
    if not any(pr.message.startswith("duplicate step id") for pr in ctx.problems):
        _check_graph(ctx, nodes, start)
    if ctx.problems:
        raise SpecError(source, ctx.problems)
    plan = p.JourneyPlan(
        journey_id=spec.journey, name=spec.name or spec.journey, timezone=spec.timezone, category=spec.category,
        strict=spec.strict, trigger=p.TriggerPlan(event=spec.trigger.event or "", when=spec.trigger.when,
                                                  key=spec.trigger.key, schedule=spec.trigger.schedule),
        audience=spec.audience, vars=spec.vars, start=start, nodes=tuple(nodes), **header,
    )  # fmt: skip
    return Compiled(plan=plan.with_hash())


def compile_journey(text: str, *, source: str = "<journey>", registry: ActivityRegistry | None = None) -> Compiled:
    """Parse and compile a journey document.

    Raises:
        SpecError: Any problem, located by file, YAML path and line.
    """
    spec, index = parse_journey(text, source=source)
    return compile_spec(spec, index, source=source, registry=registry)


def compile_text(text: str, *, source: str = "<journey>", registry: ActivityRegistry | None = None) -> p.JourneyPlan:
    """Parse and compile a journey document and return just the plan.

    Raises:
        SpecError: Any problem, located by file, YAML path and line.
    """
    return compile_journey(text, source=source, registry=registry).plan


__all__ = ["REGISTRY", "Compiled", "compile_journey", "compile_spec", "compile_text"]
