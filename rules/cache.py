"""Process-wide caches of compiled rules and templates, keyed by source text.

Plans carry rules as text; compiling once per distinct text keeps per-event work to a
dictionary lookup plus evaluation.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from rules.context import RULE_NAMES
from rules.evaluator import CompiledRule, compile_rule
from rules.templates import CompiledTemplate, compile_template


@lru_cache(maxsize=4096)
def rule(source: str) -> CompiledRule:
    """The compiled rule for ``source`` (names were checked when the journey compiled)."""
    return compile_rule(source, names=RULE_NAMES)


@lru_cache(maxsize=4096)
def template(source: str) -> CompiledTemplate:
    """The compiled template for ``source``."""
    return compile_template(source, names=RULE_NAMES)


def render(value: Any, context: Mapping[str, Any], *, strict: bool = True) -> Any:
    """Render every string inside ``value`` (nested lists and dicts too) as a template.

    Raises:
        rules.TemplateError: A placeholder had no value.
    """
    if isinstance(value, str):
        return template(value).render(context, strict=strict)
    if isinstance(value, list):
        return [render(v, context, strict=strict) for v in value]
    if isinstance(value, dict):
        return {k: render(v, context, strict=strict) for k, v in value.items()}
    return value
