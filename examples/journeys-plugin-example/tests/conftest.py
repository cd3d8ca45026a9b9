"""Fixtures of the example plugin's tests: the local CRM + SMS gateway on a free port."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from journeys_plugin_example.gateway import Gateway


@pytest.fixture
def gateway(monkeypatch: pytest.MonkeyPatch) -> Iterator[Gateway]:
    server = Gateway(port=0).start()
    # The activities read their settings when the worker builds them, after this is set.
    monkeypatch.setenv("JOURNEYS_EXAMPLE_GATEWAY_URL", server.url)
    yield server
    server.stop()
