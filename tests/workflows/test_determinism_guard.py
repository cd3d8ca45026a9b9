"""A static guard on the workflow code, which production runs outside the SDK's sandbox.

The sandboxed tests (interpreter, replay, every simulation) catch a forbidden call in a
workflow module on the paths they run, but not in the modules the workflows import passed
through (``engine/plan.py``, ``workflows/messages.py``), which keep the real ``datetime``.
This guard covers every path of all of them: workflow code imports only what is known to be
deterministic, and neither calls nor references a clock, randomness, environment, file or
per-process-hash API, however it is imported or aliased.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: What the workflow code may import: the SDK's workflow API, pure standard modules, and
#: our own pure plan and message models.
ALLOWED_IMPORTS = frozenset({
    "__future__", "collections.abc", "dataclasses", "datetime", "hashlib", "json", "typing",
    "temporalio", "temporalio.common", "temporalio.exceptions", "pydantic",
    "engine.plan", "workflows.messages",
})  # fmt: skip
#: Fully qualified names that read the clock (the allowed modules' only non-deterministic parts).
FORBIDDEN_QUALIFIED = frozenset({
    "datetime.datetime.now", "datetime.datetime.utcnow", "datetime.datetime.today", "datetime.date.today",
})  # fmt: skip
#: Builtins that do I/O, run code, or differ between processes (``hash`` of a str, ``id``).
FORBIDDEN_BUILTINS = frozenset({"open", "input", "print", "hash", "id", "eval", "exec", "__import__", "compile"})
#: Modules the workflow code runs: the workflows and the models they import passed through.
WORKFLOW_CODE = [*sorted((ROOT / "workflows").glob("*.py")), ROOT / "engine" / "plan.py"]


def _qualified(node: ast.expr, aliases: dict[str, str]) -> str | None:
    """``a.b.c`` with its first name resolved through the module's imports, or None."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(aliases.get(node.id, node.id))
    return ".".join(reversed(parts))


def problems(source: str, filename: str) -> list[str]:
    """Every disallowed import, and every use of a forbidden name, as ``file:line: what``."""
    tree = ast.parse(source, filename)
    aliases: dict[str, str] = {}
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                # ``import a.b`` binds ``a``; ``import a.b as c`` binds ``c`` to ``a.b``.
                bound = alias.asname or alias.name.split(".")[0]
                aliases[bound] = alias.name if alias.asname else bound
                if alias.name not in ALLOWED_IMPORTS:
                    found.append((node.lineno, f"imports {alias.name}"))
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{module}.{alias.name}"
            if module not in ALLOWED_IMPORTS:
                found.append((node.lineno, f"imports {module}"))
    for node in ast.walk(tree):
        # References, not only calls: default_factory=datetime.now is a clock read too.
        if isinstance(node, ast.Attribute):
            name = _qualified(node, aliases)
            if name in FORBIDDEN_QUALIFIED:
                found.append((node.lineno, f"uses {name}"))
        elif (isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id in FORBIDDEN_BUILTINS
              and node.id not in aliases):  # fmt: skip
            found.append((node.lineno, f"uses {node.id}"))
    return [f"{filename}:{line}: {what}" for line, what in sorted(set(found))]


def test_workflow_code_imports_and_uses_only_deterministic_things() -> None:
    found = [p for path in WORKFLOW_CODE for p in problems(path.read_text(), str(path.relative_to(ROOT)))]
    assert found == []


def test_the_guard_finds_clock_reads_however_imported_and_io_and_hash_builtins() -> None:
    source = "\n".join([
        "import os",
        "import datetime",
        "from datetime import datetime as dt, date",
        "from dataclasses import field",
        "def f():",
        "    return datetime.datetime.now(), dt.utcnow(), date.today(), open('x'), hash('k')",
        "stamp = field(default_factory=dt.now)",
        "env = __import__('os').environ",
        "ok = dt.fromisoformat('2026-01-01'), datetime.timedelta(seconds=1)",
    ])  # fmt: skip
    assert problems(source, "bad.py") == [
        "bad.py:1: imports os",
        "bad.py:6: uses datetime.date.today",
        "bad.py:6: uses datetime.datetime.now",
        "bad.py:6: uses datetime.datetime.utcnow",
        "bad.py:6: uses hash",
        "bad.py:6: uses open",
        "bad.py:7: uses datetime.datetime.now",
        "bad.py:8: uses __import__",
    ]
