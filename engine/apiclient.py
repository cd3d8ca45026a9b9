"""The CLI's side of the HTTP API: a client from the environment, error reports, tables."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import typer


def api_client() -> httpx.Client:
    """A client for the API at ``JOURNEYS_API_URL`` with the key from the environment.

    The key is ``JOURNEYS_API_KEY``, else ``JOURNEYS_ADMIN_KEY``, else the admin key that
    ``journeys up`` wrote into the data directory.
    """
    base = os.environ.get("JOURNEYS_API_URL", "http://127.0.0.1:8000")
    key = os.environ.get("JOURNEYS_API_KEY") or os.environ.get("JOURNEYS_ADMIN_KEY")
    if not key:
        key_file = Path(os.environ.get("JOURNEYS_DATA_DIR", ".journeys")) / "admin.key"
        key = key_file.read_text().strip() if key_file.exists() else ""
    return httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def fail_on_error(resp: httpx.Response) -> Any:
    """The response's JSON body; on a 4xx/5xx, print the API's error (with YAML lines) and exit 1."""
    try:
        body = resp.json()
    except ValueError:
        body = resp.text
    if resp.status_code >= 400:
        err = body.get("error", {}) if isinstance(body, dict) else {}
        typer.echo(f"HTTP {resp.status_code}: {err.get('message', body)}", err=True)
        details = err.get("details")
        for detail in details if isinstance(details, list) else []:
            typer.echo(f"  line {detail.get('line')}: {detail.get('path')}: {detail.get('message')}", err=True)
        raise typer.Exit(1)
    return body


def report(resp: httpx.Response) -> None:
    """Print the response as indented JSON (or its error, exiting 1)."""
    body = fail_on_error(resp)
    typer.echo(json.dumps(body, ensure_ascii=False, indent=2, default=str))


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table with aligned columns (numbers right-aligned)."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    numeric = [all(isinstance(row[i], int | float) for row in rows) and bool(rows) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)]
        return "  ".join(parts).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *(line(r) for r in cells)])


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
