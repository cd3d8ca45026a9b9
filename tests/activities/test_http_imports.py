"""Outbound HTTP (WeCom calls, webhooks) does not search the import path on every request."""

from __future__ import annotations

import importlib.abc
import sys
from typing import Any

import httpx

from tests.conftest import Stack


class _Lookups(importlib.abc.MetaPathFinder):
    """Records every module name the import system searches for (and finds nothing itself)."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> None:
        self.names.append(fullname)


async def test_a_request_imports_nothing(stack: Stack) -> None:
    # httpcore imports sniffio inside each request; without it installed, every request
    # searched sys.path about four times (5% of a busy worker's CPU, bench/RESULTS.md).
    async with httpx.AsyncClient(base_url=stack.fake.url) as client:
        (await client.get("/_fake/messages")).raise_for_status()  # first use may import lazily
        lookups = _Lookups()
        sys.meta_path.insert(0, lookups)
        try:
            for _ in range(3):
                (await client.get("/_fake/messages")).raise_for_status()
        finally:
            sys.meta_path.remove(lookups)
    assert lookups.names == []
