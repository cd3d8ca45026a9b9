"""A static guard on the workflow code, which production runs outside the SDK's sandbox.

The sandboxed tests (interpreter, replay, every simulation) catch a forbidden call on the
paths they run; this catches one on any path: workflow modules import only what is known
to be deterministic, and call no clock, randomness, environment or file API.
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
#: ``module.attribute`` calls that read the clock, randomness, the environment or files.
FORBIDDEN_CALLS = frozenset({
    "datetime.now", "datetime.utcnow", "datetime.today", "date.today", "time.time", "time.monotonic",
    "time.sleep", "os.getenv", "os.environ", "uuid.uuid4", "uuid.uuid1", "random.random", "asyncio.sleep",
})  # fmt: skip
FORBIDDEN_NAMES = frozenset({"open", "input", "get_settings"})
#: Modules the workflow code runs: the workflows and the plan model they import.
WORKFLOW_CODE = [*sorted((ROOT / "workflows").glob("*.py")), ROOT / "engine" / "plan.py"]


def problems(source: str, filename: str) -> list[str]:
    """Every disallowed import and call in one module's source, as ``file:line: what``."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            names = []
        found += [f"{filename}:{node.lineno}: imports {name}" for name in names if name not in ALLOWED_IMPORTS]
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in FORBIDDEN_NAMES:
                found.append(f"{filename}:{node.lineno}: calls {func.id}")
            if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
                if f"{func.value.id}.{func.attr}" in FORBIDDEN_CALLS:
                    found.append(f"{filename}:{node.lineno}: calls {func.value.id}.{func.attr}")
    return found


def test_workflow_code_imports_and_calls_only_deterministic_things() -> None:
    found = [p for path in WORKFLOW_CODE for p in problems(path.read_text(), str(path.relative_to(ROOT)))]
    assert found == []


def test_the_guard_finds_a_clock_read_a_random_id_and_an_io_import() -> None:
    source = (
        "import os\nfrom datetime import datetime\nimport uuid\n"
        "def f():\n    return datetime.now(), uuid.uuid4(), open('x')\n"
    )
    assert problems(source, "bad.py") == [
        "bad.py:1: imports os",
        "bad.py:3: imports uuid",
        "bad.py:5: calls datetime.now",
        "bad.py:5: calls uuid.uuid4",
        "bad.py:5: calls open",
    ]
