"""Evaluations per second: compiled rules and templates against parsing on every call.

    .venv/bin/python -m bench.rules [--seconds 2]

Rules: ``CompiledRule.test`` (parsed once, as journeys run them) against (a) plain
``simpleeval`` parsing the text on every call and (b) our ``compile_rule`` on every call
(what a per-event compile would cost: parse, checks, then evaluate). Templates: a compiled
``CompiledTemplate.render`` against parsing the template with the same sandboxed jinja2
environment on every call. Single thread, in-process, no I/O.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import simpleeval

from bench.harness import header
from rules.evaluator import compile_rule
from rules.functions import bind_functions
from rules.templates import _ENV, compile_template

CONTEXT: dict[str, Any] = {
    "event": {"name": "order.paid", "amount": 299, "sku": "A100", "channel": "mini"},
    "customer": {
        "id": "c1",
        "tier": "gold",
        "tags": ["vip", "new"],
        "consent_marketing": True,
        "name": "王小明",
        "city": "Shanghai",
    },  # fmt: skip
    "trigger": {"name": "order.paid", "amount": 299},
    "vars": {"threshold": 100},
    "journey": {"id": "j", "version": 1},
    "steps": {},
    "now": datetime(2026, 11, 22, tzinfo=UTC),
}

RULES = [
    'event.amount >= vars.threshold and customer.tier == "gold"',
    'has_tag("vip") and customer.consent_marketing and event.channel in ["mini", "app"]',
    "(event.amount * 2 > 500 or customer.city == 'Beijing') and not has_tag('blacklist')",
]
TEMPLATES = [
    "您好 {{ customer.name }}，您的订单 {{ event.sku }} 已支付 {{ event.amount }} 元",
    "{% if customer.tier == 'gold' %}尊敬的金卡会员{% else %}您好{% endif %} {{ customer.name }}",
]


def rate(fn: Callable[[], Any], seconds: float) -> float:
    """Calls per second of ``fn`` over about ``seconds``."""
    n, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(100):
            fn()
        n += 100
        now = time.perf_counter()
        if now >= deadline:
            return n / (now - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    args = parser.parse_args()
    print(header("Rules and templates", ["python", "-m", "bench.rules", "--seconds", f"{args.seconds:g}"]))
    print("| expression | compiled /s | simpleeval parse per call /s | compile_rule per call /s | "
          "compiled ÷ simpleeval |\n|---|---|---|---|---|")  # fmt: skip
    ratios = []
    for source in RULES:
        compiled = compile_rule(source)
        assert compiled.test(CONTEXT) in (True, False)

        def plain(source: str = source) -> Any:
            # What a naive engine does: simpleeval parses the text for every evaluation. It
            # does not even copy the context read-only (ours does), so it is the faster baseline.
            return simpleeval.EvalWithCompoundTypes(names=CONTEXT, functions=bind_functions(CONTEXT)).eval(source)

        def recompile(source: str = source) -> Any:
            return compile_rule(source).test(CONTEXT)

        fast = rate(lambda compiled=compiled: compiled.test(CONTEXT), args.seconds)
        slow = rate(plain, args.seconds)
        ratios.append(fast / slow)
        print(f"| `{source}` | {fast:,.0f} | {slow:,.0f} | {rate(recompile, args.seconds):,.0f} | "
              f"{fast / slow:.1f}x |")  # fmt: skip
    names = {k: CONTEXT[k] for k in ("customer", "event", "trigger", "vars", "journey", "steps")}
    print("\n| template | compiled /s | parse per call /s | ratio |\n|---|---|---|---|")
    for source in TEMPLATES:
        template = compile_template(source)
        fast = rate(lambda template=template: template.render(CONTEXT), args.seconds)
        slow = rate(lambda source=source: _ENV.from_string(source).render(**names), args.seconds)
        ratios.append(fast / slow)
        print(f"| `{source}` | {fast:,.0f} | {slow:,.0f} | {fast / slow:.1f}x |")
    print(f"\nsmallest speed-up: {min(ratios):.1f}x (target ≥ 3x)")


if __name__ == "__main__":
    main()
