"""Errors raised by rule and template compilation and evaluation."""

from __future__ import annotations


class RuleError(Exception):
    """Root of rule and template errors.

    Attributes:
        expression: The source text of the rule or template.
    """

    def __init__(self, message: str, *, expression: str) -> None:
        super().__init__(message)
        self.message = message
        self.expression = expression


class RuleSyntaxError(RuleError):
    """The expression is not valid in the rule language."""


class UnknownSymbolError(RuleError):
    """The expression names something that does not exist in its context.

    Attributes:
        symbol: The unknown name.
        suggestion: The closest known name, if one is close enough.
    """

    def __init__(self, message: str, *, expression: str, symbol: str, suggestion: str | None):
        super().__init__(message, expression=expression)
        self.symbol = symbol
        self.suggestion = suggestion


class RuleEvaluationError(RuleError):
    """Evaluating a valid expression failed on the data it was given."""


class TemplateError(RuleError):
    """A template could not be compiled or rendered (for example, a missing value)."""
