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


class _JourneyEnvironment(SandboxedEnvironment):
    """Sandbox where ``a.b`` on a mapping means its key ``b``.

    Jinja tries Python attributes first, so ``trigger.items`` (a cart's items) would
    give the dict method instead of the data. Journey data is plain mappings: keys win.
    """

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

    def render(self, context: Mapping[str, Any]) -> str:
        """Render with the given names.

        Raises:
            TemplateError: A placeholder had no value, or the template failed.
        """
        if self._template is None:
            return self.source
        try:
            return self._template.render(**{k: context[k] for k in RULE_NAMES if k in context})
        except jinja2.UndefinedError as exc:
            raise TemplateError(f"template {self.source!r}: {exc}", expression=self.source) from exc
        except jinja2.TemplateError as exc:
            raise TemplateError(f"template {self.source!r} failed: {exc}", expression=self.source) from exc
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
    allowed = frozenset(names)
    for name in sorted(meta.find_undeclared_variables(parsed)):
        if name not in allowed:
            hint = suggest(name, allowed)
            message = f"unknown name '{name}' in template {text!r}"
            message += f"; did you mean '{hint}'?" if hint else f"; available: {', '.join(sorted(allowed))}"
            raise UnknownSymbolError(message, expression=text, symbol=name, suggestion=hint)
    return CompiledTemplate(source=text, is_static=False, _template=_ENV.from_string(text))
