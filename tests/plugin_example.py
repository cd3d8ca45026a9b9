"""The example plugin (examples/journeys-plugin-example) for the suite's tests.

``make install`` installs it (entry point). Without that, these helpers fall back to the
settings' module list with its ``src`` on the path, so the tests still see it.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from engine.registry import ActivityRegistry, load_activities

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "journeys-plugin-example"
MODULE = "journeys_plugin_example.activities"


def example_registry() -> ActivityRegistry:
    """The process registry with the example plugin's activities loaded."""
    if importlib.util.find_spec("journeys_plugin_example") is None:
        sys.path.insert(0, str(EXAMPLE / "src"))
    return load_activities([MODULE])


def subprocess_env(**extra: str) -> dict[str, str]:
    """Environment for a ``journeys`` subprocess that must see the example plugin."""
    path = os.pathsep.join(p for p in (str(EXAMPLE / "src"), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "JOURNEYS_ACTIVITY_MODULES": MODULE, **extra}
