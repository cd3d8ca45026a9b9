"""Rules: compile-time checks, evaluation semantics and hardening."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from rules import (
    RuleEvaluationError,
    RuleSyntaxError,
    TemplateError,
    UnknownSymbolError,
    compile_rule,
    compile_template,
)

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
CTX = {
    "event": {"amount": 120, "cart_id": "K1", "tags": ["a", "b"], "content": "请问多少钱"},
    "customer": {"id": "c1", "name": "张三", "tags": ["vip"], "lead_score": 50, "signed_up": "2026-11-20T02:00:00Z"},
    "trigger": {"cart_id": "K1"},
    "vars": {"threshold": 100},
    "now": NOW,
}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("event.amount >= 50", True),
        ("event.amount >= vars.threshold and has_tag('vip')", True),
        ("event.cart_id == trigger.cart_id", True),
        ("'a' in event.tags and 'z' not in event.tags", True),
        ("event.kind in ('purchase', 'refund')", False),
        ("customer.missing is None", True),
        ("customer.missing.deeper is None", True),
        ("(customer.lead_score or 0) + 20 >= 70", True),
        ("contains_any(event.content, ['价格', '多少钱'])", True),
        ("days_since(customer.signed_up) == 3", True),
        ("hours_since(customer.signed_up) > 71", True),
        ("lower('ABC') == 'abc' and upper(customer.name) == '张三'", True),
        ("max(1, 2, 3) == 3 and round(2.6) == 3 and abs(-1) == 1 and len(event.tags) == 2", True),
        ("event.amount // 7 == 17 and event.amount % 7 == 1", True),
        ("'gold' if event.amount > 100 else 'std'", "gold"),
    ],
)
def test_evaluates(source: str, expected: object) -> None:
    assert compile_rule(source).evaluate(CTX) == expected


@pytest.mark.parametrize(
    ("source", "fragment"),
    [
        ("x = 1", "exactly one expression"),
        ("1; 2", "exactly one expression"),
        ("event.amount ** 2", "Pow is not allowed"),
        ("1 << 70", "LShift is not allowed"),
        ("[x for x in event.tags]", "ListComp is not allowed"),
        ("{k: 1 for k in event.tags}", "DictComp is not allowed"),
        ("f'{event.amount:>999999999}'", "JoinedStr is not allowed"),
        ("lambda: 1", "Lambda is not allowed"),
        ("event.tags.index('a')", "method calls are not allowed"),
        ("event.__class__", "starting with '_'"),
        ("(y := 1)", "NamedExpr is not allowed"),
        ("event.amount >", "invalid rule"),
        ("", "non-empty"),
    ],
)
def test_rejects_unsafe_or_invalid_syntax(source: str, fragment: str) -> None:
    with pytest.raises(RuleSyntaxError) as info:
        compile_rule(source)
    assert fragment in str(info.value)


def test_unknown_names_get_a_suggestion() -> None:
    with pytest.raises(UnknownSymbolError) as info:
        compile_rule("custmer.tier == 'gold'")
    assert info.value.symbol == "custmer" and info.value.suggestion == "customer"
    assert "did you mean 'customer'" in str(info.value)
    with pytest.raises(UnknownSymbolError) as info:
        compile_rule("rand() < 0.5")
    assert "unknown function 'rand'" in str(info.value)
    with pytest.raises(UnknownSymbolError):
        compile_rule("trigger.x == 1", names={"event", "customer"})


@pytest.mark.parametrize(
    "source", ["event.amount / 0 > 1", "event.cart_id > 1", "int(event.cart_id) > 1", "event.tags[9] == 'a'"]
)
def test_data_errors_become_rule_evaluation_errors(source: str) -> None:
    with pytest.raises(RuleEvaluationError) as info:
        compile_rule(source).evaluate(CTX)
    assert source in str(info.value)


def test_conditions_must_be_boolean() -> None:
    with pytest.raises(RuleEvaluationError, match="must be true or false"):
        compile_rule("event.amount").test(CTX)
    assert compile_rule("customer.missing").test(CTX) is False


def test_context_is_read_only_and_not_mutated() -> None:
    ctx = {"event": {"tags": ["a"]}, "customer": {}}
    with pytest.raises(RuleSyntaxError):
        compile_rule("event.tags.append('x')")
    compile_rule("event.tags == ['a']").evaluate(ctx)
    assert ctx == {"event": {"tags": ["a"]}, "customer": {}}


def test_huge_strings_are_stopped_quickly() -> None:
    started = time.monotonic()
    with pytest.raises(RuleEvaluationError):
        compile_rule("event.content * 100000 == ''").evaluate(CTX)
    assert time.monotonic() - started < 1.0


def test_time_helpers_use_the_context_clock_not_the_wall_clock() -> None:
    rule = compile_rule("days_since(event.ts) >= 1")
    assert rule.test({"event": {"ts": (NOW - timedelta(days=2)).isoformat()}, "now": NOW})
    assert not rule.test({"event": {"ts": (NOW - timedelta(hours=2)).isoformat()}, "now": NOW})


def test_templates_render_and_fail_loudly_on_missing_values() -> None:
    tpl = compile_template("{{ customer.name }}，优惠码 {{ vars.coupon }}")
    assert tpl.render({"customer": {"name": "张三"}, "vars": {"coupon": "SAVE10"}}) == "张三，优惠码 SAVE10"
    with pytest.raises(TemplateError, match="missing value"):
        tpl.render({"customer": {}, "vars": {"coupon": "SAVE10"}})
    with pytest.raises(TemplateError, match="missing value"):
        tpl.render({"customer": {"name": None}, "vars": {"coupon": "SAVE10"}})
    assert compile_template("纯文本").render({}) == "纯文本"


def test_templates_check_names_and_syntax_at_compile_time() -> None:
    with pytest.raises(UnknownSymbolError, match="did you mean 'customer'"):
        compile_template("{{ customr.name }}")
    with pytest.raises(TemplateError, match="invalid template"):
        compile_template("{{ customer.name ")


def test_templates_are_sandboxed() -> None:
    tpl = compile_template("{{ customer.__class__.__mro__ }}")
    with pytest.raises(TemplateError):
        tpl.render({"customer": {"name": "x"}})


def test_lenient_templates_render_missing_values_as_empty() -> None:
    tpl = compile_template("您好{{ customer.name }}，{{ customer.address.city }}")
    assert tpl.render({"customer": {}}, strict=False) == "您好，"
    assert tpl.render({"customer": {"name": "张三", "address": {"city": "上海"}}}, strict=False) == "您好张三，上海"
    with pytest.raises(TemplateError):
        tpl.render({"customer": {}})
