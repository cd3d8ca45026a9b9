"""Message templates: ``{{ ... }}`` placeholders rendered in a Jinja2 sandbox.

A missing value is an error, not an empty string: a marketer would rather see a send
fail with "customer.name is missing" than have customers read "您好 ，".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jinja2
from jinja2 import meta
from jinja2.sandbox import SandboxedEnvironment

from rules.context import RULE_NAMES, suggest
from rules.errors import TemplateError, UnknownSymbolError


class _StrictUndefined(jinja2.StrictUndefined):
    """Undefined that names the missing value in its error."""

    def _fail_with_undefined_error(self, *args: Any, **kwargs: Any) -> Any:
        name = self._undefined_name
        owner = self._undefined_obj
        if owner is not jinja2.utils.missing and isinstance(owner, Mapping):
            raise jinja2.UndefinedError(f"missing value: '{name}' is not set")
        raise jinja2.UndefinedError(f"missing value: '{name}' is undefined")

    __str__ = _fail_with_undefined_error  # type: ignore[assignment]


#: Longest text a template may produce (WeCom's largest message body is 4000 bytes).
MAX_OUTPUT = 20_000
#: Largest string or list an operator inside a template may build.
MAX_VALUE = 10_000
#: How deeply ``{% for %}`` loops may nest (each level multiplies the work).
MAX_LOOP_DEPTH = 2


class _JourneyEnvironment(SandboxedEnvironment):
    """Jinja's sandbox, tightened for untrusted message templates.

    - ``a.b`` on a mapping means its key ``b``: Jinja tries Python attributes first, so
      ``trigger.items`` (a cart's items) would give the dict method instead of the data.
    - ``*``, ``**`` and ``+`` are checked so no template can build a huge value.
    """

    intercepted_binops = frozenset({"*", "**", "+"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            if isinstance(right, int | float) and abs(right) > 100:
                raise jinja2.exceptions.SecurityError("exponent too large in template")
            return left**right
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, str | list | tuple) and isinstance(times, int) and len(seq) * times > MAX_VALUE:
                    raise jinja2.exceptions.SecurityError(f"template value longer than {MAX_VALUE}")
            return left * right
        result = left + right
        if isinstance(result, str | list | tuple) and len(result) > MAX_VALUE:
            raise jinja2.exceptions.SecurityError(f"template value longer than {MAX_VALUE}")
        return result

    def getattr(self, obj: Any, attribute: str) -> Any:
        if isinstance(obj, Mapping):
            if attribute in obj:
                return obj[attribute]
            return self.undefined(obj=obj, name=attribute)
        return super().getattr(obj, attribute)


_ENV = _JourneyEnvironment(undefined=_StrictUndefined, autoescape=False, keep_trailing_newline=True)


def _none_is_missing(value: Any) -> Any:
    # An attribute that exists but is null must not print "None" to a customer.
    if value is None:
        raise jinja2.UndefinedError("missing value: a placeholder rendered as null")
    return value


_ENV.finalize = _none_is_missing
# No globals at all (range, lipsum, cycler...): loops may only walk the journey's own data.
_ENV.globals.clear()

#: For journeys with ``strict: false``: a missing value renders as an empty string.
_LENIENT = _JourneyEnvironment(undefined=jinja2.ChainableUndefined, autoescape=False, keep_trailing_newline=True)
_LENIENT.finalize = lambda value: "" if value is None else value
_LENIENT.globals.clear()


_N = jinja2.nodes
#: Template constructs a message may use: output, data access, conditions, loops over
#: data, arithmetic (size-checked) and safe filters. No assignments, macros or calls.
_ALLOWED_NODES: tuple[type[jinja2.nodes.Node], ...] = (
    _N.Template, _N.Output, _N.TemplateData, _N.Name, _N.Getattr, _N.Getitem, _N.Const, _N.Filter, _N.Test,
    _N.For, _N.If, _N.Compare, _N.Operand, _N.And, _N.Or, _N.Not, _N.Neg, _N.Pos, _N.CondExpr, _N.Concat,
    _N.Add, _N.Sub, _N.Mul, _N.Div, _N.FloorDiv, _N.Mod, _N.Pow, _N.List, _N.Tuple, _N.Slice, _N.Keyword,
)  # fmt: skip
#: Filters that cannot amplify their input.
SAFE_FILTERS = frozenset({
    "default", "d", "upper", "lower", "title", "capitalize", "trim", "join", "length", "count", "round", "int",
    "float", "string", "first", "last", "truncate", "abs", "sum", "min", "max", "unique", "sort", "reverse",
    "list", "striptags", "escape", "e",
})  # fmt: skip


def _check_constructs(tree: jinja2.nodes.Template, text: str) -> None:
    for node in tree.find_all(jinja2.nodes.Node):
        if not isinstance(node, _ALLOWED_NODES):
            kind = type(node).__name__.lower()
            raise TemplateError(f"template {text!r}: '{kind}' is not allowed in message templates", expression=text)
        if isinstance(node, jinja2.nodes.Name) and node.name == "self":
            raise TemplateError(f"template {text!r}: 'self' is not available in message templates", expression=text)
        if isinstance(node, jinja2.nodes.Filter) and node.name not in SAFE_FILTERS:
            allowed = ", ".join(sorted(SAFE_FILTERS))
            raise TemplateError(f"template {text!r}: filter '{node.name}' is not allowed; use one of {allowed}",
                                expression=text)  # fmt: skip


def _loop_depth(node: jinja2.nodes.Node, depth: int = 0) -> int:
    deepest = depth
    for child in node.iter_child_nodes():
        inner = depth + 1 if isinstance(child, jinja2.nodes.For) else depth
        deepest = max(deepest, _loop_depth(child, inner))
    return deepest


@dataclass(frozen=True)
class CompiledTemplate:
    """A checked template, compiled once.

    Attributes:
        source: The template text.
        is_static: True when the text has no placeholders (rendering returns it as is).
    """

    source: str
    is_static: bool
    _template: jinja2.Template | None = field(repr=False, compare=False)
    _lenient: jinja2.Template | None = field(default=None, repr=False, compare=False)

    def render(self, context: Mapping[str, Any], *, strict: bool = True) -> str:
        """Render with the given names.

        Args:
            context: The names (customer, trigger, vars, journey, steps).
            strict: A missing value is an error (default); if false it renders as "".

        Raises:
            TemplateError: A placeholder had no value (strict), or the template failed.
        """
        template = self._template if strict else self._lenient
        if template is None:
            return self.source
        try:
            names = {k: context[k] for k in RULE_NAMES if k in context}
            out: list[str] = []
            size = 0
            # Stream, so a runaway template is stopped as soon as it is too long.
            for chunk in template.generate(**names):
                size += len(chunk)
                if size > MAX_OUTPUT:
                    raise TemplateError(
                        f"template {self.source!r} renders more than {MAX_OUTPUT} characters", expression=self.source
                    )
                out.append(chunk)
            return "".join(out)
        except jinja2.UndefinedError as exc:
            raise TemplateError(f"template {self.source!r}: {exc}", expression=self.source) from exc
        except jinja2.TemplateError as exc:
            raise TemplateError(f"template {self.source!r} failed: {exc}", expression=self.source) from exc
        except TemplateError:
            raise
        except (TypeError, ValueError, ArithmeticError, KeyError, IndexError) as exc:
            raise TemplateError(
                f"template {self.source!r} failed: {type(exc).__name__}: {exc}", expression=self.source
            ) from exc


def compile_template(source: str, *, names: Iterable[str] = RULE_NAMES) -> CompiledTemplate:
    """Parse a template and check the names it uses.

    Args:
        source: The template text.
        names: The context names available where it renders.

    Returns:
        The compiled template.

    Raises:
        TemplateError: The template does not parse.
        UnknownSymbolError: It uses a name that does not exist there.
    """
    text = str(source)
    if "{{" not in text and "{%" not in text and "{#" not in text:
        return CompiledTemplate(source=text, is_static=True, _template=None)
    try:
        parsed = _ENV.parse(text)
    except jinja2.TemplateSyntaxError as exc:
        raise TemplateError(f"invalid template {text!r}: {exc.message}", expression=text) from exc
    except RecursionError as exc:
        raise TemplateError(f"invalid template {text[:40]!r}...: nested too deeply", expression=text) from exc
    if len(text) > MAX_VALUE:
        raise TemplateError(f"templates are limited to {MAX_VALUE} characters", expression=text[:40])
    _check_constructs(parsed, text)
    if _loop_depth(parsed) > MAX_LOOP_DEPTH:
        raise TemplateError(f"template {text!r}: loops may nest at most {MAX_LOOP_DEPTH} deep", expression=text)
    allowed = frozenset(names)
    for name in sorted(meta.find_undeclared_variables(parsed)):
        if name not in allowed:
            hint = suggest(name, allowed)
            message = f"unknown name '{name}' in template {text!r}"
            message += f"; did you mean '{hint}'?" if hint else f"; available: {', '.join(sorted(allowed))}"
            raise UnknownSymbolError(message, expression=text, symbol=name, suggestion=hint)
    return CompiledTemplate(
        source=text, is_static=False, _template=_ENV.from_string(text), _lenient=_LENIENT.from_string(text)
    )
