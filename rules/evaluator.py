"""Compile rule expressions once, evaluate them many times.

A rule is one Python-like expression (``event.amount >= 50 and has_tag("vip")``). It is
parsed and checked when the journey compiles: syntax, allowed constructs, and every name
against the context it will run in (with a did-you-mean). Evaluation reuses the parsed
tree with a locked-down simpleeval evaluator: no method calls, no comprehensions, no
f-strings, no powers or shifts, read-only data, and every failure a ``RuleEvaluationError``.
"""

from __future__ import annotations

import ast
import re
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import simpleeval
from simpleeval import EvalWithCompoundTypes, FeatureNotAvailable, InvalidExpression

from rules.context import RULE_NAMES, freeze, suggest
from rules.errors import RuleEvaluationError, RuleSyntaxError, UnknownSymbolError
from rules.functions import FUNCTION_NAMES, bind_functions


def _safe_mod(left: Any, right: Any) -> Any:
    # '%' on a string is printf-style formatting: '%999999999s' % 1 allocates a gigabyte.
    if isinstance(left, str | bytes):
        raise FeatureNotAvailable("string formatting with '%' is not allowed in rules")
    return left % right


_OPERATORS = {
    op: fn
    for op, fn in simpleeval.DEFAULT_OPERATORS.items()
    if op not in {ast.Pow, ast.LShift, ast.RShift, ast.BitAnd, ast.BitOr, ast.BitXor, ast.Invert}
}
_OPERATORS[ast.Mod] = _safe_mod

# Every AST node a rule may contain. Anything else (lambda, comprehension, f-string,
# walrus, starred, slices with steps...) is refused at compile time.
_ALLOWED_NODES: tuple[type[ast.AST], ...] = (
    ast.Expr,
    ast.BoolOp,
    ast.And,
    ast.Or,
    ast.UnaryOp,
    ast.Not,
    ast.USub,
    ast.UAdd,
    ast.BinOp,
    ast.Add,
    ast.Sub,
    ast.Mult,
    ast.Div,
    ast.FloorDiv,
    ast.Mod,
    ast.Compare,
    ast.Eq,
    ast.NotEq,
    ast.Lt,
    ast.LtE,
    ast.Gt,
    ast.GtE,
    ast.In,
    ast.NotIn,
    ast.Is,
    ast.IsNot,
    ast.IfExp,
    ast.Call,
    ast.keyword,
    ast.Name,
    ast.Load,
    ast.Constant,
    ast.Attribute,
    ast.Subscript,
    ast.List,
    ast.Tuple,
)


class _RuleEval(EvalWithCompoundTypes):
    """simpleeval with method calls, comprehensions and container builders removed."""

    def __init__(self, names: Mapping[str, Any], functions: dict[str, Any]) -> None:
        super().__init__(operators=dict(_OPERATORS), functions=functions, names=names)
        for fn in ("list", "tuple", "dict", "set"):
            self.functions.pop(fn, None)
        for node in (
            ast.ListComp,
            ast.GeneratorExp,
            ast.DictComp,
            ast.SetComp,
            ast.Dict,
            ast.Set,
            ast.JoinedStr,
            ast.FormattedValue,
        ):
            self.nodes.pop(node, None)

    def _eval_list(self, node: ast.List) -> Any:
        # Context lists are frozen into tuples; literals must compare equal to them.
        return tuple(self._eval(x) for x in node.elts)

    def _eval_call(self, node: ast.Call) -> Any:
        if not isinstance(node.func, ast.Name):
            raise FeatureNotAvailable("method calls are not allowed in rules")
        return super()._eval_call(node)

    def _eval_attribute(self, node: ast.Attribute) -> Any:
        # Dotted access reads mapping keys only; there is no getattr on Python objects,
        # which closes every attribute trick. A missing key is None, never an error.
        if node.attr.startswith("_"):
            raise FeatureNotAvailable(f"attribute names starting with '_' are not allowed ({node.attr})")
        base = self._eval(node.value)
        if base is None:
            return None
        if isinstance(base, Mapping):
            return base.get(node.attr)
        raise FeatureNotAvailable(f"'.{node.attr}' is not available on a {type(base).__name__}")

    def _eval_subscript(self, node: ast.Subscript) -> Any:
        container = self._eval(node.value)
        key = self._eval(node.slice)
        if container is None:
            return None
        if isinstance(container, Mapping):
            return container.get(key)
        return container[key]


@dataclass(frozen=True)
class CompiledRule:
    """A parsed, checked rule, ready to evaluate many times.

    Attributes:
        source: The expression as written.
        names: The context names it reads (``customer``, ``event``...).
    """

    source: str
    names: frozenset[str]
    _tree: ast.Expr

    def evaluate(self, context: Mapping[str, Any]) -> Any:
        """Evaluate against a context.

        Args:
            context: ``customer``, ``event``, ``trigger``, ``vars``, ``journey``, ``steps``
                as plain data, plus ``now`` (datetime) and optionally ``count_events``.

        Returns:
            The expression's value.

        Raises:
            RuleEvaluationError: The data made the expression fail (wrong types, division
                by zero, a refused construct...).
        """
        frozen = {k: freeze(v) for k, v in context.items() if k in RULE_NAMES}
        evaluator = _RuleEval(frozen, bind_functions(context))
        evaluator.expr = self.source
        try:
            return evaluator._eval(self._tree.value)
        except RuleEvaluationError:
            raise
        except (InvalidExpression, KeyError, IndexError, TypeError, ValueError, ArithmeticError, RecursionError) as exc:
            raise RuleEvaluationError(
                f"rule {self.source!r} failed: {type(exc).__name__}: {exc}", expression=self.source
            ) from exc

    def test(self, context: Mapping[str, Any]) -> bool:
        """Evaluate as a condition: the result must be a bool (or None, meaning false).

        Raises:
            RuleEvaluationError: Evaluation failed or gave a non-boolean value.
        """
        value = self.evaluate(context)
        if value is None:
            return False
        if not isinstance(value, bool):
            raise RuleEvaluationError(
                f"rule {self.source!r} must be true or false, got {type(value).__name__} {value!r}",
                expression=self.source,
            )
        return value


#: Deepest expression tree a rule may have (evaluation recurses once per level).
MAX_DEPTH = 64


_UNARY_RUN = re.compile(r"(?:(?:\bnot\s+)|[-+~]\s*){" + str(MAX_DEPTH + 1) + ",}")


def _lexically_too_deep(text: str) -> bool:
    """Cheap pre-check, before the parser spends time on hostile nesting."""
    if _UNARY_RUN.search(text):
        return True
    depth = 0
    quote: str | None = None
    for ch in text:
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
            if depth > MAX_DEPTH:
                return True
        elif ch in ")]}":
            depth -= 1
    return False


def _depth(tree: ast.AST) -> int:
    """Depth of an AST, computed without recursion (hostile input may be very deep)."""
    deepest = 0
    stack = [(tree, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))
    return deepest


def _syntax_error(source: str, message: str) -> RuleSyntaxError:
    return RuleSyntaxError(f"invalid rule {source!r}: {message}", expression=source)


def compile_rule(source: str, *, names: Iterable[str] = RULE_NAMES) -> CompiledRule:
    """Parse and check a rule expression.

    Args:
        source: The expression text.
        names: The context names available where this rule runs.

    Returns:
        The compiled rule.

    Raises:
        RuleSyntaxError: Not a single expression, or uses a construct rules forbid.
        UnknownSymbolError: Names something that is neither a context name nor a function.
    """
    if not isinstance(source, str) or not source.strip():
        raise _syntax_error(str(source), "a rule must be a non-empty expression")
    text = source.strip()
    if len(text) > 2_000:
        raise _syntax_error(text[:40] + "...", "rules are limited to 2000 characters")
    if _lexically_too_deep(text):
        raise _syntax_error(text[:40] + "...", f"nested more than {MAX_DEPTH} levels deep")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            module = ast.parse(text, mode="exec")
    except SyntaxError as exc:
        where = f" at column {exc.offset}" if exc.offset else ""
        raise _syntax_error(text, f"{exc.msg}{where}") from exc
    except (ValueError, Warning) as exc:
        raise _syntax_error(text, str(exc)) from exc
    except (RecursionError, MemoryError) as exc:
        raise _syntax_error(text[:40] + "...", "nested too deeply") from exc
    if len(module.body) != 1 or not isinstance(module.body[0], ast.Expr):
        raise _syntax_error(text, "a rule is exactly one expression (no assignments or statements)")
    tree = module.body[0]
    if _depth(tree) > MAX_DEPTH:
        raise _syntax_error(text[:40] + "...", f"nested more than {MAX_DEPTH} levels deep")
    allowed = frozenset(names)
    used: set[str] = set()
    call_targets = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED_NODES):
            raise _syntax_error(text, f"{type(node).__name__} is not allowed in rules")
        if isinstance(node, ast.Call) and not isinstance(node.func, ast.Name):
            raise _syntax_error(text, "method calls are not allowed in rules")
        if isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            raise _syntax_error(text, f"attribute names starting with '_' are not allowed ({node.attr})")
        if isinstance(node, ast.Name):
            known = FUNCTION_NAMES if id(node) in call_targets else allowed
            if node.id not in known:
                hint = suggest(node.id, known | (allowed if known is FUNCTION_NAMES else FUNCTION_NAMES))
                kind = "function" if id(node) in call_targets else "name"
                message = f"unknown {kind} '{node.id}' in rule {text!r}"
                if hint:
                    message += f"; did you mean '{hint}'?"
                else:
                    message += f"; available: {', '.join(sorted(known))}"
                raise UnknownSymbolError(message, expression=text, symbol=node.id, suggestion=hint)
            if id(node) not in call_targets:
                used.add(node.id)
    return CompiledRule(source=text, names=frozenset(used), _tree=tree)
