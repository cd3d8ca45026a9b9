"""Journey activities: typed Python functions that journeys call by name.

A journey's ``activity: crm.create_lead`` step names an entry of this registry. The
compiler checks ``with:`` against the entry's input model before anything runs; the
worker turns every entry into a Temporal activity of the same (stable) name; the API
(``GET /v1/activities``) and the CLI (``journeys activities``) list them.

Where entries come from (``load_activities``), in this order:

1. the built-in modules of this project (``activities.builtin``);
2. installed plugins: every module named by an entry point of the group
   ``journeys.activities`` (``[project.entry-points."journeys.activities"]``);
3. the modules listed in the ``JOURNEYS_ACTIVITY_MODULES`` setting (comma-separated).

Journey YAML only ever names an activity; it never names Python code to import.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from importlib.metadata import entry_points
from typing import Any, Protocol

from pydantic import BaseModel

from engine.errors import JourneyError

NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
#: Entry-point group installed plugins declare their activity modules in.
ENTRY_POINT_GROUP = "journeys.activities"
#: Modules of this project that register the built-in activities.
BUILTIN_MODULES = ("activities.builtin",)
#: Namespace of the engine's own activities (``journeys.send`` and friends); plugins may not use it.
RESERVED_NAMESPACE = "journeys"
#: Constructor parameters a worker can inject into a class of activity methods.
INJECTABLE = {
    "http": "the worker's shared httpx.AsyncClient",
    "redis": "the async Redis client",
    "settings": "the engine Settings",
    "store": "the SQL store",
    "services": "all of the above plus emit and increment helpers",
}
_MAX_TIMEOUT = timedelta(hours=24)


class RegistryError(JourneyError):
    """A journey activity is declared or discovered wrongly (raised at import or discovery)."""


class ActivityContext(Protocol):
    """What a journey activity receives besides its input.

    Attributes:
        customer_id: The enrolled customer.
        enrollment_id: The enrollment (one workflow run).
        journey_id: The journey.
        step_id: The ``activity`` step being run.
        idempotency_key: ``{enrollment_id}:{step_id}:{visit}``: the same for every retry
            and re-delivery of this call, different when a loop visits the step again.
            Send it to the other system (e.g. an ``Idempotency-Key`` header) so a call
            repeated after a crash has its effect once.
        attempt: 1 on the first try, then 2, 3... for Temporal's retries.
        customer: The customer's fresh profile.
    """

    customer_id: str
    enrollment_id: str
    journey_id: str
    step_id: str
    idempotency_key: str
    attempt: int
    customer: dict[str, Any]

    async def emit(self, name: str, properties: dict[str, Any]) -> None:
        """Submit an event for this customer (it may trigger or advance journeys)."""
        ...

    def services(self) -> Any:
        """The worker's shared clients (store, redis, http, settings)."""
        ...


ActivityFn = Callable[..., Awaitable[Any]]


@dataclass(frozen=True)
class ActivityRetry:
    """Default retry policy of an activity (a step's ``retry:`` overrides any field of it).

    Attributes:
        max_attempts: Tries in all, the first included.
        initial: Wait before the first retry.
        backoff: Each wait is this many times the previous one.
        max_interval: Longest wait between tries.
    """

    max_attempts: int = 5
    initial: timedelta = timedelta(seconds=10)
    backoff: float = 2.0
    max_interval: timedelta = timedelta(minutes=10)


@dataclass(frozen=True)
class ActivityDefinition:
    """One registered journey activity.

    Attributes:
        name: Namespaced, stable name (``crm.create_lead``); it is recorded in history.
        input_model: Pydantic model that ``with:`` must satisfy.
        fn: ``async def fn(input, ctx) -> result`` (result: JSON-serializable or a model),
            or the unbound method ``async def fn(self, input, ctx)`` of ``owner``.
        description: One line for ``journeys activities`` and the API.
        timeout: Default start-to-close timeout (a step's ``timeout`` overrides it).
        retry: Default retry policy (a step's ``retry`` overrides it field by field).
        owner: For a method, the class the worker instantiates with injected clients.
        origin: Where it was registered from (built-in, a plugin distribution, a module).
    """

    name: str
    input_model: type[BaseModel]
    fn: ActivityFn
    description: str
    timeout: timedelta = timedelta(seconds=30)
    retry: ActivityRetry = ActivityRetry()
    owner: type | None = None
    origin: str = ""

    @property
    def is_method(self) -> bool:
        """Whether ``fn`` is a method needing an instance of ``owner``."""
        return _is_method(self.fn)

    def input_schema(self) -> dict[str, Any]:
        """The JSON Schema of the input model (what ``with:`` takes)."""
        return self.input_model.model_json_schema()

    def describe(self) -> dict[str, Any]:
        """JSON-friendly description, as ``GET /v1/activities`` and ``journeys activities --json`` show it."""
        return {
            "name": self.name,
            "description": self.description,
            "origin": self.origin,
            "timeout_s": self.timeout.total_seconds(),
            "retry": {
                "max_attempts": self.retry.max_attempts,
                "initial_s": self.retry.initial.total_seconds(),
                "backoff": self.retry.backoff,
                "max_interval_s": self.retry.max_interval.total_seconds(),
            },
            "input_schema": self.input_schema(),
        }


class ActivityRegistry:
    """Name -> definition, with declaration checks."""

    def __init__(self) -> None:
        self._defs: dict[str, ActivityDefinition] = {}
        self._origin: str | None = None

    def add(self, definition: ActivityDefinition) -> None:
        """Register a definition.

        Raises:
            RegistryError: Malformed name, input model, function or defaults; a name in
                the reserved ``journeys`` namespace from outside this project; or a
                different function already registered under that name.
        """
        _check_definition(definition)
        namespace = definition.name.split(".", 1)[0]
        if namespace == RESERVED_NAMESPACE and not definition.fn.__module__.startswith("activities."):
            raise RegistryError(
                f"activity {definition.name!r} ({_where(definition.fn)}): the '{RESERVED_NAMESPACE}.' namespace "
                "is reserved for built-in activities; name it after your system, e.g. 'crm.create_lead'"
            )
        existing = self._defs.get(definition.name)
        if existing is not None and not _same_function(existing.fn, definition.fn):
            raise RegistryError(
                f"activity {definition.name!r} is declared twice: by {_where(existing.fn)} and by "
                f"{_where(definition.fn)}; activity names must be unique"
            )
        if existing is not None:
            # The same declaration seen again (a module imported twice): keep what we learnt.
            definition = dataclasses.replace(definition, owner=definition.owner or existing.owner,
                                             origin=existing.origin or definition.origin)  # fmt: skip
        elif not definition.origin:
            definition = dataclasses.replace(definition, origin=self._origin or definition.fn.__module__)
        self._defs[definition.name] = definition

    def replaced(self, definitions: Iterable[ActivityDefinition]) -> ActivityRegistry:
        """A copy in which ``definitions`` replace (or add to) the entries of the same name.

        Tests use this to run journeys with stand-ins under production names.

        Raises:
            RegistryError: A replacement is malformed.
        """
        copy = ActivityRegistry()
        copy._defs = dict(self._defs)
        for definition in definitions:
            _check_definition(definition)
            copy._defs[definition.name] = definition
        return copy

    def only(self, predicate: Callable[[ActivityDefinition], bool]) -> ActivityRegistry:
        """A copy holding the definitions ``predicate`` accepts."""
        copy = ActivityRegistry()
        copy._defs = {n: d for n, d in self._defs.items() if predicate(d)}
        return copy

    def get(self, name: str) -> ActivityDefinition | None:
        """The definition named ``name``, if registered."""
        return self._defs.get(name)

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        return sorted(self._defs)

    def definitions(self) -> list[ActivityDefinition]:
        """Every definition, by name."""
        return [self._defs[n] for n in self.names()]

    def check(self) -> None:
        """Checks that need the whole module loaded: methods belong to classes the worker can build.

        Raises:
            RegistryError: A method activity outside a class, or a class whose constructor
                asks for something the worker cannot inject.
        """
        for d in self.definitions():
            if not d.is_method:
                continue
            if d.owner is None:
                raise RegistryError(
                    f"activity {d.name!r} ({_where(d.fn)}) takes 'self' but is not a method of a class; "
                    "declare it in a class, or drop 'self' to make it a plain function"
                )
            check_injectable(d.owner, d.name)

    def _set_owner(self, name: str, fn: ActivityFn, owner: type) -> None:
        current = self._defs.get(name)
        if current is not None and _same_function(current.fn, fn):
            self._defs[name] = dataclasses.replace(current, owner=owner)

    @contextmanager
    def origin(self, label: str) -> Iterator[None]:
        """Stamp definitions registered inside the block with ``label`` (e.g. the plugin's name)."""
        previous, self._origin = self._origin, label
        try:
            yield
        finally:
            self._origin = previous


def check_injectable(owner: type, activity: str) -> None:
    """Check that a worker can build ``owner`` from the injectable clients.

    Raises:
        RegistryError: A required constructor parameter is not one of ``INJECTABLE``.
    """
    try:
        params = list(inspect.signature(owner).parameters.values())
    except (TypeError, ValueError) as exc:
        raise RegistryError(f"activity {activity!r}: cannot read the signature of {owner.__qualname__}") from exc
    for param in params:
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD) or param.name in INJECTABLE:
            continue
        if param.default is param.empty:
            raise RegistryError(
                f"activity {activity!r}: {owner.__module__}.{owner.__qualname__}() asks for '{param.name}', "
                f"which the worker cannot inject; constructor parameters may be {', '.join(INJECTABLE)}"
            )


def _is_method(fn: ActivityFn) -> bool:
    params = list(inspect.signature(fn).parameters)
    return bool(params) and params[0] == "self"


def _same_function(a: ActivityFn, b: ActivityFn) -> bool:
    # A module imported under two names defines two function objects for one declaration;
    # those are different declarations as far as stability goes, so compare identity first.
    return a is b


def _where(fn: ActivityFn) -> str:
    code = getattr(fn, "__code__", None)
    line = f":{code.co_firstlineno}" if code else ""
    return f"{fn.__module__}.{fn.__qualname__}{line}"


def _check_definition(d: ActivityDefinition) -> None:
    if not isinstance(d.name, str) or not NAME_PATTERN.match(d.name):
        raise RegistryError(
            f"activity name {d.name!r} must be namespaced lowercase words, e.g. 'crm.create_lead' "
            f"(letters, digits and '_', at least one '.')"
        )
    if not (isinstance(d.input_model, type) and issubclass(d.input_model, BaseModel)):
        raise RegistryError(f"activity {d.name!r}: input= must be a pydantic model class, not {d.input_model!r}")
    try:
        d.input_model.model_json_schema()
    except Exception as exc:  # noqa: BLE001 - any failure means the model cannot be documented
        raise RegistryError(f"activity {d.name!r}: input model has no JSON Schema: {exc}") from exc
    if not inspect.iscoroutinefunction(d.fn):
        raise RegistryError(f"activity {d.name!r} ({_where(d.fn)}): the function must be 'async def'")
    args = ["self", "input", "ctx"] if _is_method(d.fn) else ["input", "ctx"]
    try:
        inspect.signature(d.fn).bind(*args)
    except TypeError as exc:
        raise RegistryError(
            f"activity {d.name!r} ({_where(d.fn)}): it must take (input, ctx)"
            + (" after self" if _is_method(d.fn) else "")
        ) from exc
    if not d.description.strip():
        raise RegistryError(f"activity {d.name!r} ({_where(d.fn)}): give it a docstring or description=")
    if not (timedelta(0) < d.timeout <= _MAX_TIMEOUT):
        raise RegistryError(f"activity {d.name!r}: timeout must be more than 0 and at most 24h, not {d.timeout}")
    r = d.retry
    if not (1 <= r.max_attempts <= 100) or r.backoff < 1.0 or r.initial <= timedelta(0) or r.max_interval < r.initial:
        raise RegistryError(
            f"activity {d.name!r}: retry needs 1-100 max_attempts, backoff >= 1, initial > 0 and "
            f"max_interval >= initial, not {r}"
        )


REGISTRY = ActivityRegistry()


class _ActivityMethod:
    """What ``@journey_activity`` leaves in a class body: the method, plus an owner hook.

    ``__set_name__`` runs when the class statement finishes, which is when the registry
    can learn which class the worker must instantiate for this activity.
    """

    def __init__(self, fn: ActivityFn, name: str, registry: ActivityRegistry) -> None:
        self.fn = fn
        self.activity_name = name
        self.registry = registry
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn

    def __set_name__(self, owner: type, attr: str) -> None:
        self.registry._set_owner(self.activity_name, self.fn, owner)

    def __get__(self, obj: object | None, objtype: type | None = None) -> Any:
        return self.fn if obj is None else self.fn.__get__(obj, objtype)


def journey_activity(
    name: str,
    *,
    input: type[BaseModel],  # noqa: A002 - the declaration reads best as input=Model
    description: str | None = None,
    timeout: timedelta | float = timedelta(seconds=30),
    retry: ActivityRetry | int = ActivityRetry(),
    registry: ActivityRegistry = REGISTRY,
) -> Callable[[ActivityFn], Any]:
    """Declare an async function, or a method of a class with injected clients, as a journey activity.

    Args:
        name: Namespaced, stable name (``crm.create_lead``). It is recorded in the history
            of every enrollment that ran it: never rename a published activity.
        input: Pydantic model of ``with:``; the compiler checks journeys against it.
        description: One line for listings (default: the docstring's first line).
        timeout: Default start-to-close timeout (timedelta or seconds).
        retry: Default retry policy, or just its ``max_attempts``.
        registry: Where to register (tests use their own).

    Returns:
        The decorator; it returns the function unchanged (or, in a class body, a method
        that behaves like the original).

    Raises:
        RegistryError: At import: malformed name or declaration, or a duplicate name.

    Example:
        ``@journey_activity("crm.create_lead", input=CreateLead, timeout=timedelta(seconds=10))``
        ``async def create_lead(inp: CreateLead, ctx: ActivityContext) -> dict: ...``

        In a class, the worker builds ``Crm(http=..., settings=...)`` once and calls the
        bound method: constructor parameters are named after ``INJECTABLE``.
    """

    def register(fn: ActivityFn) -> Any:
        doc = (inspect.getdoc(fn) or "").strip().splitlines()
        wait = timeout if isinstance(timeout, timedelta) else timedelta(seconds=timeout)
        policy = ActivityRetry(max_attempts=retry) if isinstance(retry, int) else retry
        registry.add(ActivityDefinition(
            name=name, input_model=input, fn=fn, description=description or (doc[0] if doc else ""),
            timeout=wait, retry=policy,
        ))  # fmt: skip
        return _ActivityMethod(fn, name, registry) if _is_method(fn) else fn

    return register


_entry_points_loaded = False


def load_builtin_activities() -> ActivityRegistry:
    """Import the built-in activity modules (they register on import) and return the registry."""
    with REGISTRY.origin("built-in"):
        for module in BUILTIN_MODULES:
            importlib.import_module(module)
    return REGISTRY


def builtin_registry() -> ActivityRegistry:
    """Only the built-in activities (what the committed journey schema lists)."""
    return load_builtin_activities().only(lambda d: d.fn.__module__ in BUILTIN_MODULES)


def parse_module_list(value: str | Iterable[str] | None) -> list[str]:
    """``"a.b, c.d"`` (the setting's form) or an iterable -> module names, blanks dropped."""
    if value is None:
        return []
    items = value.replace(";", ",").split(",") if isinstance(value, str) else list(value)
    return [item.strip() for item in items if item.strip()]


def load_activities(modules: str | Iterable[str] | None = None) -> ActivityRegistry:
    """Discover every activity this process may run: built-ins, installed plugins, listed modules.

    The compiler, the worker, the API and the CLI all call this, so they agree on the set.
    Loading is idempotent: modules are imported once per process.

    Args:
        modules: Extra modules to import (default: the ``JOURNEYS_ACTIVITY_MODULES`` setting).

    Returns:
        The process-wide registry.

    Raises:
        RegistryError: A plugin or listed module fails to import or declares activities wrongly.
    """
    global _entry_points_loaded
    load_builtin_activities()
    if not _entry_points_loaded:
        for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            dist = f"{ep.dist.name} {ep.dist.version}" if ep.dist else ep.value
            with REGISTRY.origin(f"plugin {dist}"):
                _import(lambda ep=ep: ep.load(), f"plugin {dist} (entry point {ep.name} = {ep.value})")
        _entry_points_loaded = True
    if modules is None:
        from engine.config import get_settings

        modules = get_settings().journeys_activity_modules
    for module in parse_module_list(modules):
        with REGISTRY.origin(f"module {module}"):
            _import(lambda module=module: importlib.import_module(module), f"activity module {module!r}")
    REGISTRY.check()
    return REGISTRY


def _import(load: Callable[[], Any], what: str) -> None:
    try:
        load()
    except RegistryError:
        raise
    except Exception as exc:
        raise RegistryError(f"{what} failed to import: {type(exc).__name__}: {exc}") from exc
