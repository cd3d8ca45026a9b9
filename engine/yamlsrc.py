"""Read YAML into plain data while remembering the line of every key and list item.

Marketers fix errors by line number, so every problem we report must point at the line
that caused it. ruamel.yaml's round-trip loader keeps positions; this module turns its
output into plain dicts/lists plus a ``LineIndex`` from YAML path to line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from engine.errors import Problem, SpecError

PathPart = str | int


def format_path(path: Sequence[PathPart]) -> str:
    """Render a path as ``steps[1].send.channel``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


@dataclass
class LineIndex:
    """Maps YAML paths to 1-based line numbers."""

    lines: dict[tuple[PathPart, ...], int] = field(default_factory=dict)

    def line_of(self, path: Sequence[PathPart]) -> int | None:
        """Line of ``path``, or of its nearest ancestor that has one."""
        key = tuple(path)
        while key:
            if key in self.lines:
                return self.lines[key]
            key = key[:-1]
        return self.lines.get((), None)

    def problem(self, path: Sequence[PathPart], message: str) -> Problem:
        """A ``Problem`` located at ``path``."""
        return Problem(format_path(path), self.line_of(path), message)


def _plain(node: Any, path: tuple[PathPart, ...], index: LineIndex) -> Any:
    if isinstance(node, CommentedMap):
        out: dict[str, Any] = {}
        for key, value in node.items():
            child = (*path, str(key))
            try:
                index.lines[child] = node.lc.key(key)[0] + 1
            except (KeyError, TypeError, AttributeError):
                pass
            out[str(key)] = _plain(value, child, index)
        return out
    if isinstance(node, CommentedSeq):
        items = []
        for i, value in enumerate(node):
            child = (*path, i)
            try:
                index.lines[child] = node.lc.item(i)[0] + 1
            except (KeyError, TypeError, AttributeError):
                pass
            items.append(_plain(value, child, index))
        return items
    if isinstance(node, str):
        return str(node)  # ruamel's scalar string subclasses carry formatting we do not want
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    return node


def load_yaml(text: str, *, source: str) -> tuple[Any, LineIndex]:
    """Parse YAML text into plain data and a line index.

    Args:
        text: The YAML document.
        source: File name used in error messages.

    Returns:
        ``(data, index)``.

    Raises:
        SpecError: The text is not valid YAML (with the line of the fault), is empty, or
            holds more than one document.
    """
    yaml = YAML(typ="rt", pure=True)
    yaml.allow_duplicate_keys = False
    try:
        docs = list(yaml.load_all(text))
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        context = str(exc.context or "")
        if exc.context_mark is not None and exc.problem_mark is not None and exc.context_mark.line != mark.line:
            context += f" (started at line {exc.context_mark.line + 1})"
        message = " ".join(p for p in (context, str(exc.problem or "")) if p) or str(exc)
        raise SpecError(source, [Problem("", line, f"invalid YAML: {message}")]) from exc
    except YAMLError as exc:
        raise SpecError(source, [Problem("", None, f"invalid YAML: {exc}")]) from exc
    if len(docs) != 1:
        found = "no document" if not docs else f"{len(docs)} documents"
        raise SpecError(source, [Problem("", 1, f"expected exactly one YAML document, found {found}")])
    index = LineIndex()
    root = docs[0]
    # Comments before the document do not count: point at its first real line.
    index.lines[()] = root.lc.line + 1 if isinstance(root, CommentedMap | CommentedSeq) else 1
    return _plain(root, (), index), index
