"""Compile rule expressions once, evaluate them many times.

A rule is one Python-like expression (``event.amount >= 50 and has_tag("vip")``). It is
parsed and checked when the journey compiles: syntax, allowed constructs, and every name
against the context it will run in (with a did-you-mean), then compiled into closures
that apply simpleeval's operator table with our restrictions: no method calls, no
comprehensions, no f-strings, no powers or shifts, read-only data, and every failure a
``RuleEvaluationError``. Nothing is parsed or dispatched per evaluation.
"""

from __future__ import annotations

import ast
import re
import types
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import simpleeval
from simpleeval import (
    DISALLOW_FUNCTIONS,
    MAX_STRING_LENGTH,
    FeatureNotAvailable,
    FunctionNotDefined,
    InvalidExpression,
    IterableTooLong,
    NameNotDefined,
)

from rules.context import RULE_NAMES, freeze, read_only, suggest
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


#: A compiled node: (frozen names, bound functions) -> value.
_Node = Callable[[Mapping[str, Any], Mapping[str, Callable[..., Any]]], Any]


def _closure(node: ast.AST, source: str) -> _Node:
    """Compile a checked rule tree into nested closures, once.

    Each closure does what ``_RuleEval`` (simpleeval with our restrictions) does for that
    node, with the same operator table, the same missing-value rules and the same
    errors, but without walking the tree and dispatching on node types per evaluation.
    ``compile_rule`` has already refused every construct outside ``_ALLOWED_NODES``.
    """
    if isinstance(node, ast.Expr):
        return _closure(node.value, source)
    if isinstance(node, ast.Constant):
        value = node.value
        if hasattr(value, "__len__") and len(value) > MAX_STRING_LENGTH:
            raise IterableTooLong(f"literal of {len(value)} characters in {source!r}")
        return lambda names, functions: value
    if isinstance(node, ast.Name):
        key = node.id

        def name(names: Mapping[str, Any], _functions: Mapping[str, Callable[..., Any]]) -> Any:
            try:
                return names[key]
            except KeyError:
                raise NameNotDefined(key, source) from None

        return name
    if isinstance(node, ast.Attribute):
        attr, base_of = node.attr, _closure(node.value, source)

        def attribute(names: Mapping[str, Any], functions: Mapping[str, Callable[..., Any]]) -> Any:
            # Mapping keys only, never getattr on Python objects; a missing key is None.
            base = base_of(names, functions)
            if base is None:
                return None
            if isinstance(base, Mapping):
                return base.get(attr)
            raise FeatureNotAvailable(f"'.{attr}' is not available on a {type(base).__name__}")

        if attr.startswith("_"):  # refused by compile_rule already; kept as a second lock
            raise FeatureNotAvailable(f"attribute names starting with '_' are not allowed ({attr})")
        return attribute
    if isinstance(node, ast.Subscript):
        container_of, key_of = _closure(node.value, source), _closure(node.slice, source)

        def subscript(names: Mapping[str, Any], functions: Mapping[str, Callable[..., Any]]) -> Any:
            container = container_of(names, functions)
            key = key_of(names, functions)
            if container is None:
                return None
            if isinstance(container, Mapping):
                return container.get(key)
            return container[key]

        return subscript
    if isinstance(node, ast.BoolOp):
        parts = [_closure(v, source) for v in node.values]
        want = not isinstance(node.op, ast.And)  # And stops at the first falsy value, Or at the first truthy

        def boolop(names: Mapping[str, Any], functions: Mapping[str, Callable[..., Any]]) -> Any:
            result: Any = False
            for part in parts:
                result = part(names, functions)
                if bool(result) is want:
                    break
            return result

        return boolop
    if isinstance(node, ast.UnaryOp):
        unary, operand_of = _OPERATORS[type(node.op)], _closure(node.operand, source)
        return lambda names, functions: unary(operand_of(names, functions))
    if isinstance(node, ast.BinOp):
        binary = _OPERATORS[type(node.op)]
        left_of, right_of = _closure(node.left, source), _closure(node.right, source)
        return lambda names, functions: binary(left_of(names, functions), right_of(names, functions))
    if isinstance(node, ast.Compare):
        first = _closure(node.left, source)
        links = [(_OPERATORS[type(o)], _closure(c, source)) for o, c in zip(node.ops, node.comparators, strict=True)]

        def compare(names: Mapping[str, Any], functions: Mapping[str, Callable[..., Any]]) -> Any:
            right = first(names, functions)
            result: Any = True
            for operator, comparator in links:
                if not result:
                    break
                left, right = right, comparator(names, functions)
                result = operator(left, right)
            return result

        return compare
    if isinstance(node, ast.IfExp):
        test, body, orelse = (_closure(n, source) for n in (node.test, node.body, node.orelse))
        return lambda names, functions: body(names, functions) if test(names, functions) else orelse(names, functions)
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name):
            raise FeatureNotAvailable("method calls are not allowed in rules")
        fname = node.func.id
        args = [_closure(a, source) for a in node.args]
        kwargs = [(k.arg, _closure(k.value, source)) for k in node.keywords]

        def call(names: Mapping[str, Any], functions: Mapping[str, Callable[..., Any]]) -> Any:
            try:
                func = functions[fname]
            except KeyError:
                raise FunctionNotDefined(fname, source) from None
            if func in DISALLOW_FUNCTIONS:
                raise FeatureNotAvailable("This function is forbidden")
            result = func(*(a(names, functions) for a in args), **{k: v(names, functions) for k, v in kwargs})
            if isinstance(result, types.ModuleType) or callable(result):
                raise FeatureNotAvailable(f"{fname}() returned something a rule may not hold")
            return result

        return call
    if isinstance(node, ast.List | ast.Tuple):
        # Context lists are frozen into tuples; literals must compare equal to them.
        items = [_closure(e, source) for e in node.elts]
        return lambda names, functions: tuple(item(names, functions) for item in items)
    raise FeatureNotAvailable(f"{type(node).__name__} is not available in rules")


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
    _fn: _Node = field(repr=False, compare=False)

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
        # Only the names this rule reads, and within them only what it reads, are frozen:
        # deep-copying the whole context (profile, event, steps) was most of the cost.
        frozen = {k: read_only(context[k]) for k in self.names if k in context}
        try:
            value = self._fn(frozen, bind_functions(context))
            # Results leave as fully frozen data (a lazy view must not escape).
            return value if isinstance(value, bool | int | float | str | None) else freeze(value)
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
    try:
        fn = _closure(tree, text)
    except InvalidExpression as exc:
        raise _syntax_error(text, str(exc)) from exc
    return CompiledRule(source=text, names=frozenset(used), _tree=tree, _fn=fn)
