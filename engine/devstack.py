"""``journeys up``: the whole stack on embedded defaults, in one process tree.

Temporal's dev server and Redis run as child processes; the fake WeCom, the API and the
worker run in this process's event loop. SIGINT/SIGTERM stops everything in reverse order.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import secrets
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

from engine import routing
from engine.compiler import compile_text
from engine.config import Settings
from engine.embedded import ChildProcess, free_port, redis_process, temporal_process
from engine.errors import JourneyError, SpecError
from engine.fake_wecom import FakeConfig, FakeWeCom
from engine.fake_wecom import create_app as create_fake_app
from engine.lifecycle import Lifecycle
from engine.loader import read_source
from engine.runtime import Runtime
from engine.servers import RunningServer, serve
from engine.temporal import connect


@dataclass
class StackOptions:
    """Flags of ``journeys up``."""

    data_dir: Path
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    fake_port: int = 8100
    temporal_port: int = 7233
    temporal_ui_port: int = 8233
    redis_port: int = 0
    journeys_dir: Path | None = None


def admin_key(settings: Settings, data_dir: Path) -> str:
    """``JOURNEYS_ADMIN_KEY``, else the key stored in the data dir (generated once)."""
    if settings.journeys_admin_key:
        return settings.journeys_admin_key
    path = data_dir / "admin.key"
    if path.exists():
        return path.read_text().strip()
    key = "jk_" + secrets.token_urlsafe(32)
    path.write_text(key + "\n")
    path.chmod(0o600)
    return key


def _stored_secret(path: Path) -> str:
    if path.exists():
        return path.read_text().strip()
    secret = secrets.token_urlsafe(32)
    path.write_text(secret + "\n")
    path.chmod(0o600)
    return secret


def callback_secrets(settings: Settings, data_dir: Path) -> tuple[str, str]:
    """WeCom callback token and EncodingAESKey: from settings, else generated once."""
    path = data_dir / "callback.json"
    stored = json.loads(path.read_text()) if path.exists() else {}
    token = settings.wecom_callback_token or stored.get("token") or secrets.token_urlsafe(24)
    aes = (
        settings.wecom_callback_aes_key
        or stored.get("aes_key")
        or (base64.b64encode(secrets.token_bytes(32)).decode().rstrip("="))
    )
    if not path.exists():
        path.write_text(json.dumps({"token": token, "aes_key": aes}) + "\n")
        path.chmod(0o600)
    return token, aes


async def load_journeys(rt: Runtime, directory: Path, *, out: object = sys.stdout) -> list[str]:
    """Compile, store (when changed) and activate every journey file in ``directory``.

    Returns:
        Ids of the journeys activated; invalid files are reported and skipped.
    """
    activated = []
    for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
        try:
            text = read_source(path)
            plan = compile_text(text, source=str(path))
            try:
                row = await rt.store.offload(rt.store.get_journey, plan.journey_id)
                latest = await rt.store.offload(rt.store.get_version, plan.journey_id, row.latest_version)
                unchanged = latest.plan_hash == plan.plan_hash
            except JourneyError:
                unchanged = False
            if not unchanged:
                await rt.store.offload(rt.store.create_version, yaml_text=text, plan=plan, author="journeys up")
            await Lifecycle(rt.store, rt.redis, rt.temporal, task_queue=rt.settings.temporal_task_queue).activate(
                plan.journey_id
            )
            activated.append(plan.journey_id)
        except SpecError as exc:
            print(f"skipped invalid journey:\n{exc}", file=out)  # type: ignore[call-overload]  # noqa: T201
        except JourneyError as exc:
            print(f"skipped {path}: {exc}", file=out)  # type: ignore[call-overload]  # noqa: T201
    await routing.bump_plans_epoch(rt.redis)
    return activated


async def run_stack(opts: StackOptions, *, ready: asyncio.Event | None = None) -> None:
    """Start everything, print where it is, and run until SIGINT/SIGTERM."""
    from api.main import create_app  # the API depends on engine, not the reverse
    from engine.worker import build_worker, confirmation_sweep_watch

    data_dir = opts.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    env = os.environ
    overrides: dict[str, object] = {"journeys_data_dir": data_dir}
    children: list[ChildProcess] = []
    servers: list[RunningServer] = []
    rt: Runtime | None = None
    background = contextlib.AsyncExitStack()  # what runs beside the worker, stopped before rt closes
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        if not env.get("TEMPORAL_ADDRESS"):
            temporal = temporal_process(data_dir, port=opts.temporal_port, ui_port=opts.temporal_ui_port)
            children.append(await asyncio.to_thread(temporal.start, ready_timeout=60))
            overrides["temporal_address"] = f"127.0.0.1:{opts.temporal_port}"
        if not env.get("REDIS_URL"):
            redis = redis_process(data_dir / "redis", port=opts.redis_port or free_port())
            children.append(await asyncio.to_thread(redis.start, ready_timeout=20))
            overrides["redis_url"] = f"redis://127.0.0.1:{redis.port}/0"
        if not env.get("WECOM_BASE_URL"):
            # Staff "confirm" customer mass sends at once, so demos show delivered messages.
            fake = FakeWeCom(config=FakeConfig(auto_confirm=True))
            servers.append(await serve(create_fake_app(fake), host="127.0.0.1", port=opts.fake_port))
            overrides["wecom_base_url"] = servers[-1].url
        settings = Settings().model_copy(update=overrides)
        key = admin_key(settings, data_dir)
        token, aes_key = callback_secrets(settings, data_dir)
        settings = settings.model_copy(update={
            "wecom_callback_token": token, "wecom_callback_aes_key": aes_key,
            "journeys_webhook_secret": settings.journeys_webhook_secret or _stored_secret(data_dir / "webhook.secret"),
        })  # fmt: skip
        client = await _connect_with_retry(settings)
        rt = await Runtime.open(settings, temporal=client)
        worker = build_worker(rt)
        await background.enter_async_context(confirmation_sweep_watch(rt).running())
        worker_task = asyncio.create_task(worker.run())
        api = await serve(create_app(rt, admin_key=key), host=opts.api_host, port=opts.api_port)
        servers.append(api)
        loaded = await load_journeys(rt, opts.journeys_dir) if opts.journeys_dir else []
        _banner(opts, settings, api, key, loaded)
        if ready is not None:
            ready.set()
        await stop.wait()
        print("stopping...", flush=True)  # noqa: T201
        await api.stop()
        servers.remove(api)
        await worker.shutdown()
        with contextlib.suppress(Exception):
            await worker_task
    finally:
        for srv in reversed(servers):
            with contextlib.suppress(Exception):
                await srv.stop()
        await background.aclose()
        if rt is not None:
            await rt.close()
        for child in reversed(children):
            await asyncio.to_thread(child.stop)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _connect_with_retry(settings: Settings, attempts: int = 60):  # type: ignore[no-untyped-def]
    for attempt in range(attempts):
        try:
            return await connect(settings.temporal_address, settings.temporal_namespace)
        except RuntimeError:
            if attempt == attempts - 1:
                raise
            await asyncio.sleep(0.5)
    return None


def _banner(opts: StackOptions, settings: Settings, api: RunningServer, key: str, loaded: list[str]) -> None:
    lines = [
        "Journeys is up.",
        f"  API           {api.url}   (docs: {api.url}/docs)",
        f"  Admin key     {key}",
        f"  Fake WeCom    {settings.wecom_base_url}   (received: {settings.wecom_base_url}/_fake/messages)",
        f"  Temporal      {settings.temporal_address}"
        + (f"   (web UI: http://127.0.0.1:{opts.temporal_ui_port})" if not os.environ.get("TEMPORAL_ADDRESS") else ""),
        f"  Redis         {settings.redis_url}",
        f"  Database      {settings.resolved_database_url()}",
        f"  Data dir      {opts.data_dir.resolve()}",
    ]
    if loaded:
        lines.append(f"  Journeys      {', '.join(loaded)} (active)")
    lines.append("Press Ctrl-C to stop.")
    print("\n".join(lines), flush=True)  # noqa: T201
