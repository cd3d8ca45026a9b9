"""YAML text -> validated ``JourneySpec`` (layer 1), with every error located."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from engine import spec as spec_models
from engine.errors import Problem, SpecError
from engine.yamlsrc import LineIndex, PathPart, load_yaml
from rules.context import suggest


def _known_keys() -> set[str]:
    keys: set[str] = set()
    for obj in vars(spec_models).values():
        if isinstance(obj, type) and issubclass(obj, BaseModel):
            for name, info in obj.model_fields.items():
                keys.add(info.alias or name)
    return keys


_KNOWN_KEYS = _known_keys()


def _clean_loc(loc: tuple[Any, ...]) -> tuple[PathPart, ...]:
    return tuple(p for p in loc if not (isinstance(p, str) and p.startswith(spec_models.TAG_PREFIX)))


def _message(err: Any) -> str:
    kind = err["type"]
    loc = err["loc"]
    if kind == "extra_forbidden":
        key = str(loc[-1])
        hint = suggest(key, _KNOWN_KEYS)
        return f"unknown key '{key}'" + (f"; did you mean '{hint}'?" if hint else "")
    if kind == "missing":
        return f"required key '{loc[-1]}' is missing"
    if kind == "step_action":
        raw = err.get("input")
        if isinstance(raw, dict):
            actions = [k for k in raw if k in spec_models.STEP_MODELS]
            if len(actions) > 1:
                return f"a step has exactly one action, found {len(actions)}: {', '.join(actions)}"
            for key in raw:
                hint = suggest(str(key), spec_models.STEP_MODELS)
                if key not in ("id", "name") and hint:
                    return f"unknown step action '{key}'; did you mean '{hint}'?"
        return str(err["msg"])
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")


def parse_journey(text: str, *, source: str) -> tuple[spec_models.JourneySpec, LineIndex]:
    """Parse and shape-check one journey document.

    Args:
        text: The YAML text.
        source: File name for messages.

    Returns:
        The spec and the line index for later (compiler) problems.

    Raises:
        SpecError: Invalid YAML or an invalid shape; lists every problem found.
    """
    data, index = load_yaml(text, source=source)
    if not isinstance(data, dict):
        raise SpecError(source, [index.problem((), "a journey file is a mapping (journey:, trigger:, steps: ...)")])
    try:
        return spec_models.JourneySpec.model_validate(data), index
    except ValidationError as exc:
        problems: list[Problem] = []
        for err in exc.errors():
            path = _clean_loc(err["loc"])
            problems.append(index.problem(path, _message(err)))
        raise SpecError(source, _dedupe(problems)) from exc


def _dedupe(problems: list[Problem]) -> list[Problem]:
    seen: set[tuple[str, str]] = set()
    out = []
    for p in problems:
        if (p.path, p.message) not in seen:
            seen.add((p.path, p.message))
            out.append(p)
    return out


def read_source(path: str | Path) -> str:
    """Read a journey file as UTF-8, turning I/O failures into ``SpecError``."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(str(path), [Problem("", None, f"cannot read file: {exc}")]) from exc
