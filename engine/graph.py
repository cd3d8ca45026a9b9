"""Journey diagrams: a compiled plan as a Mermaid flowchart."""

from __future__ import annotations

from datetime import timedelta

from engine import plan as p
from engine.durations import format_duration

_MAX_LABEL = 48


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _MAX_LABEL else text[: _MAX_LABEL - 1] + "…"


def _escape(text: str) -> str:
    # Mermaid labels sit inside double quotes; these characters would end or break them.
    return text.replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;")


def _seconds(value: float) -> str:
    return format_duration(timedelta(seconds=value))


def _label(node: p.PlanNode) -> list[str]:
    if isinstance(node, p.SendNode):
        body = node.message.get("text") or node.message.get("markdown") or ""
        return [node.id, f"send {node.channel}", *([_clip(str(body))] if body else [])]
    if isinstance(node, p.ActivityNode):
        return [node.id, f"activity {node.activity}"]
    if isinstance(node, p.WaitNode):
        return [node.id, f"wait {_seconds(node.seconds)}"]
    if isinstance(node, p.WaitUntilNode):
        days = f" on {', '.join(node.days)}" if node.days else ""
        return [node.id, f"wait until {node.time}{days}"]
    if isinstance(node, p.WaitForNode):
        return [node.id, f"wait for {node.event}", f"at most {_seconds(node.timeout_s)}"]
    if isinstance(node, p.BranchNode):
        return [node.id, "branch"]
    if isinstance(node, p.SplitNode):
        return [node.id, "A/B split"]
    if isinstance(node, p.TagNode):
        parts = [f"+{t}" for t in node.add] + [f"-{t}" for t in node.remove]
        return [node.id, f"tag {_clip(' '.join(parts))}"]
    if isinstance(node, p.UpdateNode):
        return [node.id, f"update {_clip(', '.join(node.updates))}"]
    if isinstance(node, p.GotoNode):
        return [node.id, f"go to {node.next}"]
    if isinstance(node, p.ExitNode):
        return [node.id, "exit" + (f": {_clip(node.reason)}" if node.reason else "")]
    return [node.id]  # pragma: no cover - the union is closed


def _shape(node: p.PlanNode, ref: str, label: list[str]) -> str:
    text = '"' + "<br/>".join(_escape(line) for line in label) + '"'
    if isinstance(node, p.BranchNode | p.SplitNode):
        return f"{ref}{{{text}}}"
    if node.kind in p.WAITING_KINDS:
        return f"{ref}([{text}])"
    if isinstance(node, p.ExitNode):
        return f"{ref}[/{text}/]"
    return f"{ref}[{text}]"


def _edges(node: p.PlanNode) -> list[tuple[str, str | None]]:
    if isinstance(node, p.WaitForNode):
        return [(node.on_event, "event"), (node.on_timeout, "timeout")]
    if isinstance(node, p.SendNode | p.ActivityNode):
        out: list[tuple[str, str | None]] = [(node.next, None)]
        if node.on_error != p.PARK:
            out.append((node.on_error, "on error"))
        return out
    if isinstance(node, p.BranchNode):
        return [*((c.target, _clip(c.when)) for c in node.cases), (node.else_target, "else")]
    if isinstance(node, p.SplitNode):
        total = sum(a.weight for a in node.arms)
        return [(a.target, f"{a.arm} {a.weight / total:.0%}") for a in node.arms]
    if isinstance(node, p.ExitNode):
        return [(p.EXIT, None)]
    return [(node.next, None)]


def to_mermaid(plan: p.JourneyPlan) -> str:
    """A Mermaid ``flowchart TD`` of the plan: every step, jump and exit, labelled."""
    refs = {n.id: f"n{i}" for i, n in enumerate(plan.nodes)}
    refs[p.END] = "done"
    refs[p.EXIT] = "exited"
    title = f"{_escape(_clip(plan.name))}<br/>on {_escape(plan.trigger.event)}"
    lines = ["flowchart TD", f'    start(("{title}"))']
    for node in plan.nodes:
        lines.append("    " + _shape(node, refs[node.id], _label(node)))
    lines.append('    done(("completed"))')
    lines.append('    exited(("exit"))')
    lines.append(f"    start --> {refs[plan.start]}")
    for node in plan.nodes:
        for target, label in _edges(node):
            arrow = f' -->|"{_escape(label)}"| ' if label else " --> "
            lines.append(f"    {refs[node.id]}{arrow}{refs[target]}")
    endings = []
    if plan.goal is not None:
        endings.append(f"goal: {plan.goal.event}" + (" (ends)" if plan.goal.exit else ""))
    endings.extend(f"exit when: {m.event}" for m in plan.exit_when)
    if endings:
        lines.append(f'    any{{{{"{_escape(" / ".join(endings))}"}}}} -.-> exited')
    return "\n".join(lines) + "\n"
