"""Pure rule expressions and message templates.

This package has no I/O: it compiles marketer-written expressions once and evaluates
them many times against a read-only context. simpleeval's security limits are
process-wide globals, so they are set here, in exactly one place.
"""

import simpleeval

# simpleeval's defaults allow a 25 s `4000000 ** 4000000` and 100 kB strings; a shared
# worker must not be stalled by one journey's rule.
simpleeval.MAX_STRING_LENGTH = 10_000
simpleeval.MAX_COMPREHENSION_LENGTH = 1_000
simpleeval.MAX_POWER = 100

from rules.errors import (  # noqa: E402  (limits must be set before anything evaluates)
    RuleError,
    RuleEvaluationError,
    RuleSyntaxError,
    TemplateError,
    UnknownSymbolError,
)
from rules.evaluator import CompiledRule, compile_rule  # noqa: E402
from rules.templates import CompiledTemplate, compile_template  # noqa: E402

__all__ = [
    "CompiledRule",
    "CompiledTemplate",
    "RuleError",
    "RuleEvaluationError",
    "RuleSyntaxError",
    "TemplateError",
    "UnknownSymbolError",
    "compile_rule",
    "compile_template",
]
