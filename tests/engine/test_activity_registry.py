"""Declaring, discovering and compiling against journey activities (pure unit tests, no servers)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict

from activities.custom import _bind
from engine.compiler import compile_text
from engine.errors import SpecError
from engine.plugin import ActivityRetry, RegistryError, journey_activity
from engine.registry import ActivityRegistry, load_activities
from tests.plugin_example import example_registry, subprocess_env


class Ping(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str


async def ping(inp: Ping, ctx: Any) -> dict[str, str]:
    """Answer pong."""
    return {"pong": inp.text}


@pytest.mark.parametrize("name", ["ping", "Crm.ping", "crm.", "crm..ping", "crm.Ping", "crm-x.ping", "1crm.ping"])
def test_malformed_names_fail_at_declaration(name: str) -> None:
    with pytest.raises(RegistryError, match="namespaced"):
        journey_activity(name, input=Ping, registry=ActivityRegistry())(ping)


def test_a_duplicate_name_names_both_declarations() -> None:
    reg = ActivityRegistry()
    journey_activity("crm.ping", input=Ping, registry=reg)(ping)
    journey_activity("crm.ping", input=Ping, registry=reg)(ping)  # the same declaration again (re-import) is fine

    async def other(inp: Ping, ctx: Any) -> None:
        """Another."""

    with pytest.raises(RegistryError) as info:
        journey_activity("crm.ping", input=Ping, registry=reg)(other)
    message = str(info.value)
    assert "declared twice" in message and "test_activity_registry.ping" in message and "other" in message


def _declare(fn: Any, **kwargs: Any) -> None:
    journey_activity("crm.thing", **{"input": Ping, "registry": ActivityRegistry(), **kwargs})(fn)


def test_malformed_declarations_fail_with_a_clear_message() -> None:
    def sync(inp: Ping, ctx: Any) -> None:
        """Not async."""

    async def one_arg(inp: Ping) -> None:
        """No ctx."""

    async def undocumented(inp: Ping, ctx: Any) -> None:
        pass

    cases: list[tuple[Any, dict[str, Any], str]] = [
        (sync, {}, "must be 'async def'"),
        (one_arg, {}, "must take (input, ctx)"),
        (undocumented, {}, "docstring or description="),
        (ping, {"input": dict}, "pydantic model class"),
        (ping, {"timeout": 0}, "timeout must be more than 0"),
        (ping, {"timeout": timedelta(days=2)}, "at most 24h"),
        (ping, {"retry": 0}, "1-100 max_attempts"),
        (ping, {"retry": ActivityRetry(backoff=0.5)}, "backoff >= 1"),
    ]
    for fn, kwargs, fragment in cases:
        with pytest.raises(RegistryError) as info:
            _declare(fn, **kwargs)
        assert fragment in str(info.value), (fn.__name__, kwargs, str(info.value))
    _declare(undocumented, description="Documented here instead.")


def test_the_journeys_namespace_is_reserved_for_built_ins() -> None:
    with pytest.raises(RegistryError, match="reserved for built-in"):
        journey_activity("journeys.ping", input=Ping, registry=ActivityRegistry())(ping)


def test_methods_are_bound_to_an_instance_built_from_injected_clients() -> None:
    reg = ActivityRegistry()

    class Crm:
        def __init__(self, http: Any, settings: Any, retries: int = 2) -> None:
            self.http, self.settings, self.retries = http, settings, retries

        @journey_activity("crm.ping", input=Ping, timeout=5, retry=3, registry=reg)
        async def ping(self, inp: Ping, ctx: Any) -> dict[str, Any]:
            """Ping through the injected client."""
            return {"via": self.http, "text": inp.text}

        @journey_activity("crm.pong", input=Ping, registry=reg)
        async def pong(self, inp: Ping, ctx: Any) -> str:
            """Pong."""
            return "pong"

    reg.check()
    definition = reg.get("crm.ping")
    assert definition is not None and definition.owner is Crm and definition.is_method
    assert definition.timeout == timedelta(seconds=5) and definition.retry.max_attempts == 3
    assert definition.description == "Ping through the injected client."
    services = SimpleNamespace(http="HTTP", redis="R", settings="S", store="DB")
    instances: dict[type, object] = {}
    bound = _bind(definition, services, instances)  # type: ignore[arg-type]
    other = _bind(reg.get("crm.pong"), services, instances)  # type: ignore[arg-type]
    assert bound.__self__ is other.__self__, "one instance per class"  # type: ignore[attr-defined]
    assert instances[Crm].settings == "S"  # type: ignore[attr-defined]


def test_a_class_asking_for_what_cannot_be_injected_fails_discovery() -> None:
    reg = ActivityRegistry()

    class Crm:
        def __init__(self, client: Any) -> None:
            self.client = client

        @journey_activity("crm.ping", input=Ping, registry=reg)
        async def ping(self, inp: Ping, ctx: Any) -> None:
            """Ping."""

    with pytest.raises(RegistryError) as info:
        reg.check()
    assert "asks for 'client'" in str(info.value) and "http, redis, settings, store, services" in str(info.value)


def test_self_outside_a_class_fails_discovery() -> None:
    reg = ActivityRegistry()

    async def loose(self: Any, inp: Ping, ctx: Any) -> None:
        """Loose."""

    journey_activity("crm.loose", input=Ping, registry=reg)(loose)
    with pytest.raises(RegistryError, match="not a method of a class"):
        reg.check()


def _module(tmp_path: Path, source: str) -> str:
    """Write a module named uniquely (``NAME`` in ``source`` becomes the name)."""
    name = f"plugin_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(source).replace("NAME", name))
    return name


def test_the_module_list_setting_adds_modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    name = _module(
        tmp_path,
        '''
        from pydantic import BaseModel
        from engine.plugin import journey_activity

        class In(BaseModel):
            n: int

        @journey_activity("NAME.double", input=In)
        async def double(inp, ctx):
            """Double n."""
            return inp.n * 2
    ''',
    )
    registry = load_activities(f" {name} , ")
    definition = registry.get(f"{name}.double")
    assert definition is not None and definition.origin == f"module {name}"
    text = f"journey: xx\ntrigger: {{event: a}}\nsteps:\n  - {{activity: {name}.double, with: {{n: 2}}}}\n"
    plan = compile_text(text)
    assert plan.nodes[0].activity == f"{name}.double"  # type: ignore[union-attr]
    # And a process configured by the environment sees it: the CLI lists it.
    env = subprocess_env(JOURNEYS_ACTIVITY_MODULES=name, PYTHONPATH=str(tmp_path))
    out = subprocess.run([str(Path(sys.executable).parent / "journeys"), "activities"], env=env, capture_output=True,
                         text=True, timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert f"{name}.double  Double n." in out.stdout and f"from: module {name}" in out.stdout


def test_a_broken_module_fails_discovery_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    name = _module(tmp_path, "import no_such_dependency_here\n")
    with pytest.raises(RegistryError) as info:
        load_activities([name])
    assert f"activity module {name!r} failed to import: ModuleNotFoundError" in str(info.value)
    env = subprocess_env(JOURNEYS_ACTIVITY_MODULES=name, PYTHONPATH=str(tmp_path))
    (tmp_path / "x.yaml").write_text("journey: xx\ntrigger: {event: a}\nsteps:\n  - wait: 1h\n")
    out = subprocess.run([str(Path(sys.executable).parent / "journeys"), "validate", str(tmp_path / "x.yaml")], env=env,
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert out.returncode == 1 and out.stderr.startswith(f"journeys: activity module {name!r} failed to import")
    bad = _module(
        tmp_path,
        '''
        from pydantic import BaseModel
        from engine.plugin import journey_activity

        @journey_activity("NAME", input=BaseModel)
        async def x(inp, ctx):
            """X."""
    ''',
    )
    with pytest.raises(RegistryError, match="must be namespaced"):
        load_activities([bad])


# -- compiling journeys that use the example plugin ------------------------------------


def _problems(text: str) -> list[tuple[int | None, str, str]]:
    example_registry()
    with pytest.raises(SpecError) as info:
        compile_text(textwrap.dedent(text), source="lead.yaml")
    return [(p.line, p.path, p.message) for p in info.value.problems]


def test_unknown_plugin_activity_suggests_the_registered_name() -> None:
    found = _problems("""
        journey: lead
        trigger: {event: form}
        steps:
          - activity: crm.create_leed
            with: {name: x, phone: "13800000000"}
    """)
    assert found == [(5, "steps[0].activity", "unknown activity 'crm.create_leed'; did you mean 'crm.create_lead'?")]


def test_plugin_input_errors_have_path_and_line() -> None:
    found = _problems("""
        journey: lead
        trigger: {event: form}
        steps:
          - id: lead
            activity: crm.create_lead
            with:
              name: "{{ customer.name }}"
              score: high
              sorce: fair
          - activity: sms.send
            with: {to: "{{ trigger.phone }}", text: ""}
    """)
    assert (7, "steps[0].with.phone", "crm.create_lead needs 'phone'") in found
    assert (9, "steps[0].with.score", "Input should be a valid integer, unable to parse string as an integer") in found
    assert (10, "steps[0].with.sorce", "unknown input 'sorce' for crm.create_lead; did you mean 'source'?") in found
    assert (12, "steps[1].with.text", "String should have at least 1 character") in found
    assert len(found) == 4, "templated values are left for run time"


def test_declared_timeout_and_retry_apply_and_steps_override_them_field_by_field() -> None:
    example_registry()
    plan = compile_text(
        textwrap.dedent("""
        journey: lead
        trigger: {event: form}
        steps:
          - id: declared
            activity: crm.create_lead
            with: {name: x, phone: "13800000000"}
          - id: overridden
            activity: crm.create_lead
            timeout: 3s
            retry: {max_attempts: 2}
            with: {name: x, phone: "13800000000"}
        """)
    )
    declared, overridden = plan.nodes
    assert declared.timeout_s == 10 and declared.retry.max_attempts == 5 and declared.retry.initial_s == 1  # type: ignore[union-attr]
    assert overridden.timeout_s == 3 and overridden.retry.max_attempts == 2  # type: ignore[union-attr]
    assert overridden.retry.initial_s == 1 and overridden.retry.max_interval_s == 30  # type: ignore[union-attr]
