"""The ``journeys`` command line."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Annotated

import httpx
import typer

from engine import cli_ops, eventloop
from engine.apiclient import api_client, report
from engine.errors import SpecError

app = typer.Typer(
    help="Journeys: customer-journey automation for WeCom.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _err(message: str) -> None:
    typer.echo(message, err=True)


@app.command()
def up(
    data_dir: Annotated[Path, typer.Option(envvar="JOURNEYS_DATA_DIR", help="Where embedded state lives.")] = Path(
        ".journeys"
    ),
    journeys: Annotated[Path | None, typer.Option("--journeys", help="Load and activate every journey in DIR.")] = None,
    host: Annotated[str, typer.Option(help="API bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="API port.")] = 8000,
    fake_wecom_port: Annotated[int, typer.Option(help="Fake WeCom port.")] = 8100,
    temporal_port: Annotated[int, typer.Option(help="Embedded Temporal gRPC port.")] = 7233,
    temporal_ui_port: Annotated[int, typer.Option(help="Embedded Temporal web UI port (0: headless).")] = 8233,
    redis_port: Annotated[int, typer.Option(help="Embedded Redis port (0: any free port).")] = 0,
) -> None:
    """Run the whole stack on embedded defaults (Temporal, Redis, SQLite, fake WeCom, API, worker)."""
    from engine.config import get_settings
    from engine.devstack import StackOptions, run_stack

    get_settings().setup_logging("text")
    if journeys is not None and not journeys.is_dir():
        _err(f"--journeys {journeys}: not a directory")
        raise typer.Exit(2)
    opts = StackOptions(
        data_dir=data_dir,
        api_host=host,
        api_port=port,
        fake_port=fake_wecom_port,
        temporal_port=temporal_port,
        temporal_ui_port=temporal_ui_port,
        redis_port=redis_port,
        journeys_dir=journeys,
    )
    try:
        eventloop.run(run_stack(opts))
    except RuntimeError as exc:
        _err(f"journeys up failed: {exc}")
        raise typer.Exit(1) from exc


@app.command()
def worker() -> None:
    """Run a worker against TEMPORAL_ADDRESS, DATABASE_URL, REDIS_URL and WECOM_BASE_URL."""
    from engine.config import get_settings
    from engine.runtime import Runtime
    from engine.worker import build_worker, confirmation_sweep_watch

    settings = get_settings()
    settings.setup_logging("json")

    async def main() -> None:
        rt = await Runtime.open(settings)
        try:
            worker = build_worker(rt)
            async with confirmation_sweep_watch(rt).running():
                await worker.run()
        finally:
            await rt.close()

    eventloop.run(main())


@app.command()
def api(
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8000,
) -> None:
    """Run the HTTP API against the configured Temporal, database and Redis."""
    import uvicorn

    from api.main import create_app
    from engine.config import get_settings
    from engine.runtime import Runtime
    from engine.servers import api_server_config

    settings = get_settings()
    if not settings.journeys_admin_key:
        _err("JOURNEYS_ADMIN_KEY is not set")
        raise typer.Exit(2)
    settings.setup_logging("json")

    async def main() -> None:
        rt = await Runtime.open(settings)
        try:
            app_ = create_app(rt, admin_key=settings.journeys_admin_key)
            server = uvicorn.Server(api_server_config(app_, settings, host=host, port=port))
            await server.serve()
        finally:
            await rt.close()

    eventloop.run(main())


@app.command()
def validate(files: Annotated[list[Path], typer.Argument(help="Journey YAML files.")]) -> None:
    """Check journey files; print every problem with file, line and YAML path."""
    from engine.compiler import compile_journey
    from engine.loader import read_source

    failed = 0
    for path in files:
        try:
            compiled = compile_journey(read_source(path), source=str(path))
        except SpecError as exc:
            failed += 1
            _err(str(exc))
            continue
        plan = compiled.plan
        typer.echo(f"{path}: ok ({plan.journey_id}, {len(plan.nodes)} steps, plan {plan.plan_hash[:12]})")
    if failed:
        raise typer.Exit(1)


@app.command()
def graph(file: Annotated[Path, typer.Argument(help="Journey YAML file.")]) -> None:
    """Print the journey as a Mermaid flowchart (paste into any Mermaid viewer)."""
    from engine.compiler import compile_text
    from engine.graph import to_mermaid
    from engine.loader import read_source

    try:
        plan = compile_text(read_source(file), source=str(file))
    except SpecError as exc:
        _err(str(exc))
        raise typer.Exit(1) from exc
    typer.echo(to_mermaid(plan), nl=False)


@app.command()
def schema(
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write to FILE instead of stdout.")] = None,
    builtin: Annotated[bool, typer.Option("--builtin", help="Built-in activities only (the committed file).")] = False,
) -> None:
    """Print the journey JSON Schema (for editor autocomplete and validation), installed plugins included."""
    from engine.registry import load_activities
    from engine.schema import render_schema

    text = render_schema(None if builtin else load_activities())
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text)


@app.command()
def simulate(
    scenario: Annotated[Path, typer.Argument(help="Scenario YAML file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the JSON contract only.")] = False,
) -> None:
    """Run journeys against scripted customers on a simulated clock."""
    import logging

    from engine.simulate import simulate_file

    # The test server lacks capabilities a production server has; the SDK warns about
    # them on every simulation, which says nothing about the user's journey.
    logging.getLogger("temporalio.core").setLevel(logging.ERROR)
    # Failed sends are part of the report (status and reason); their tracebacks are not news.
    logging.getLogger("temporalio.activity").setLevel(logging.ERROR)
    try:
        result = asyncio.run(simulate_file(scenario))
    except SpecError as exc:
        _err(str(exc))
        raise typer.Exit(1) from exc
    if as_json:
        typer.echo(json.dumps(result, ensure_ascii=False))
        return
    for send in result["sends"]:
        typer.echo(
            f"{send['at']}  {send['customer']:<10} {send['journey']}/{send['step']:<16} "
            f"{send['channel']:<15} {send['status']:<8} {send['reason'] or ''} {send['text'] or ''}"
        )
    for enr in result["enrollments"]:
        typer.echo(
            f"{enr['customer']:<10} {enr['journey']:<24} key={enr['key']} {enr['status']} "
            f"({enr['exit_reason']}) path={' > '.join(enr['path'])}"
        )


@app.command("activities")
def list_activities(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (as the API does).")] = False,
) -> None:
    """List every journey activity (built-ins and plugins) with its description and input JSON Schema."""
    from engine.activity_listing import render_json, render_listing
    from engine.registry import RegistryError, load_activities

    try:
        registry = load_activities()
    except RegistryError as exc:
        _err(str(exc))
        raise typer.Exit(1) from exc
    typer.echo((render_json if as_json else render_listing)(registry), nl=False)


@app.command("fake-wecom")
def fake_wecom(
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8100,
) -> None:
    """Serve the local fake WeCom on its own."""
    import uvicorn

    from engine.fake_wecom import create_app

    uvicorn.run(create_app(), host=host, port=port, log_level="warning")


@app.command()
def deploy(
    file: Annotated[Path, typer.Argument(help="Journey YAML file.")],
    activate_it: Annotated[bool, typer.Option("--activate", help="Activate the new version.")] = False,
) -> None:
    """Upload a journey file as a new version (API at JOURNEYS_API_URL)."""
    with api_client() as client:
        resp = client.post(
            "/v1/journeys",
            params={"filename": file.name},
            content=file.read_bytes(),
            headers={"Content-Type": "application/yaml"},
        )
        if resp.status_code >= 400 or not activate_it:
            report(resp)
            return
        created = resp.json()
        report(client.post(f"/v1/journeys/{created['journey']}/activate", json={"version": created["version"]}))


@app.command()
def activate(
    journey_id: Annotated[str, typer.Argument(help="Journey id.")],
    version: Annotated[int | None, typer.Option(help="Version (default: latest).")] = None,
) -> None:
    """Start admitting customers to a journey."""
    with api_client() as client:
        report(client.post(f"/v1/journeys/{journey_id}/activate", json={"version": version}))


keys_app = typer.Typer(help="API keys (admin).", no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@keys_app.command("create")
def keys_create(
    role: Annotated[str, typer.Option(help="viewer, marketer, operator or admin.")],
    name: Annotated[str, typer.Option(help="What the key is for.")],
) -> None:
    """Create a key; it is printed once."""
    with api_client() as client:
        report(client.post("/v1/keys", json={"name": name, "role": role}))


@keys_app.command("list")
def keys_list() -> None:
    """List keys (never their secrets)."""
    with api_client() as client:
        report(client.get("/v1/keys"))


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="Key id.")]) -> None:
    """Revoke a key; it stops working at once."""
    with api_client() as client:
        report(client.delete(f"/v1/keys/{key_id}"))


cli_ops.register(app)


def main() -> None:
    """Entry point of the ``journeys`` script."""
    from engine.registry import RegistryError

    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
    except RegistryError as exc:
        # A plugin that fails to import or declares an activity wrongly: its message, not a traceback.
        _err(f"journeys: {exc}")
        sys.exit(1)
    except httpx.TransportError as exc:
        url = os.environ.get("JOURNEYS_API_URL", "http://127.0.0.1:8000")
        _err(f"journeys: cannot reach the API at {url} ({exc}); is it running? (JOURNEYS_API_URL)")
        sys.exit(1)
