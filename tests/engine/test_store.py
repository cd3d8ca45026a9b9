"""Storage: the same tests on SQLite and on a real PostgreSQL cluster started here."""

from __future__ import annotations

import asyncio
import contextvars
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import SQLModel

from engine import counters
from engine.compiler import compile_text
from engine.counters import CountBatch, CounterKey
from engine.db import alembic_config, make_engine
from engine.errors import JourneyStateError, NotFoundError
from engine.models import ApiKeyRow, EnrollmentRow, EventRow, MessageRow
from engine.store import DecidedTask, EnrollmentEnd, SendRecorded, Store, utcnow
from tests.postgres import PostgresCluster


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'journeys.db'}"
    cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
    return cluster.create_database(f"t_{uuid.uuid4().hex[:12]}")


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    store = Store(make_engine(db_url))
    yield store
    store.close()


JOURNEY = "journey: shop\ntrigger: {event: order.created}\nsteps:\n  - id: hello\n    wait: 1h\n"


def test_migrations_build_exactly_the_models_schema(db_url: str) -> None:
    engine = make_engine(db_url)
    with engine.connect() as conn:
        context = MigrationContext.configure(conn)
        assert context.get_current_revision() == "0002"
        assert compare_metadata(context, SQLModel.metadata) == []
    assert make_engine(db_url).dialect.name in ("sqlite", "postgresql"), "migrating twice is a no-op"


def test_tasks_waiting_for_confirmation_before_the_sweep_are_checked_by_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(url)
    with engine.begin() as conn:
        config = alembic_config(conn)
        command.upgrade(config, "0001")  # a database of the release before the sweep
        conn.execute(text(
            "insert into messages (idempotency_key, enrollment_id, journey_id, version, step_id, visit, customer_id,"
            " channel, recipients, content, status, at, created_at) values ('k1', 'e1', 'shop', 1, 'hello', 1, 'c1',"
            " 'wecom.customer', '[\"wm1\"]', '{}', 'pending_confirmation', '2026-11-22 08:00:00.000000',"
            " '2026-11-22 08:00:00.000000')"
        ))  # fmt: skip
    engine.dispose()
    store = Store(make_engine(url))
    (due,) = store.due_confirmations(utcnow(), limit=10)
    assert due.idempotency_key == "k1" and due.next_check_at is not None


def test_a_database_from_before_migrations_is_completed_and_stamped(db_url: str) -> None:
    engine = make_engine(db_url)
    store = Store(engine)
    store.admit(enrollment(1))
    store.admit(enrollment(2))
    store.record_end(EnrollmentEnd("enr1", status="exited", exit_reason="goal", at=utcnow()))
    store.mark_converted("enr1", at=utcnow())
    store.begin_send(message("k1"))
    store.finish_send("k1", status="sent", reason=None, response={})
    with engine.begin() as conn:  # what an early data dir looks like: no history, fewer columns, no counters
        conn.execute(text("DROP TABLE alembic_version"))
        conn.execute(text("DROP TABLE journey_counters"))
        conn.execute(text("ALTER TABLE enrollments DROP COLUMN converted_at"))
    engine.dispose()
    engine = make_engine(db_url)
    inspector = inspect(engine)
    assert "converted_at" in {c["name"] for c in inspector.get_columns("enrollments")}
    assert inspector.has_table("journey_counters")
    with engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == "0002"
    # What the old data already holds is counted; converted_at was lost with its column.
    got = {(c.metric, c.label): c.value for c in Store(engine).counters("shop") if c.value}
    assert got == {(counters.ENROLLED, ""): 2, (counters.EXITED, "goal"): 1, (counters.SEND, "sent|"): 1}


def test_versions_and_lifecycle(store: Store) -> None:
    plan = compile_text(JOURNEY)
    row, v1 = store.create_version(yaml_text=JOURNEY, plan=plan, author="k1")
    _, v2 = store.create_version(yaml_text=JOURNEY.replace("1h", "2h"), plan=compile_text(JOURNEY.replace("1h", "2h")),
                                 author="k2")  # fmt: skip
    assert (v1, v2) == (1, 2) and row.status == "draft"
    assert store.get_version("shop", 1).author == "k1"
    with pytest.raises(NotFoundError):
        store.get_version("shop", 3)
    assert store.activate("shop", 1).active_version == 1
    active = store.active_version_plan("shop")
    assert active is not None and active[0] == 1 and active[1].nodes[0].id == "hello"
    assert [p.journey_id for _, p in store.active_plans()] == ["shop"]
    store.set_lifecycle("shop", status="archived")
    with pytest.raises(JourneyStateError):
        store.create_version(yaml_text=JOURNEY, plan=plan, author="k1")
    assert [j.id for j in store.list_journeys()] == ["shop"]


def test_events_are_idempotent_and_a_batch_is_never_partly_lost(store: Store) -> None:
    now = utcnow()

    def event(i: int) -> EventRow:
        return EventRow(event_id=f"e{i}", customer_id="c1", name="order.created", properties={"i": i},
                        timestamp=now - timedelta(minutes=i), received_at=now)  # fmt: skip

    # Two requests race with overlapping batches: every id is stored once and reported new once.
    results: list[list[bool]] = []
    batches = [[event(i) for i in range(0, 30)], [event(i) for i in range(15, 45)]]
    threads = [threading.Thread(target=lambda b=b: results.append(store.insert_events(b))) for b in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(sum(r) for r in results) == 45
    assert len(store.count_events("c1", "order.*", since=now - timedelta(days=1), until=now)) == 45
    assert store.insert_events([event(1)]) == [False]
    assert len(store.undispatched_events(received_before=now + timedelta(seconds=1))) == 45
    store.mark_dispatched([f"e{i}" for i in range(45)])
    assert store.undispatched_events(received_before=now + timedelta(seconds=1)) == []
    assert store.purge_events(older_than=now - timedelta(minutes=40)) == 4


def test_customers_upsert_and_apply_once(store: Store) -> None:
    assert store.put_customer("c1", {"name": "A", "score": 1})["id"] == "c1"
    store.put_customer("c1", {"name": "B", "score": 1})
    assert store.get_customer("c1") == {"name": "B", "score": 1, "id": "c1"}
    bump = lambda p: {"score": p["score"] + 10}  # noqa: E731
    threads = [threading.Thread(target=store.apply_once, args=("enr:step:1", "c1", bump)) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.get_customer("c1")["score"] == 11, "the same effect key applies once, even concurrently"
    assert store.ensure_customer("new")["id"] == "new"
    assert [c["id"] for c in store.customers_after("", 10)] == ["c1", "new"]


def enrollment(n: int, journey: str = "shop") -> EnrollmentRow:
    return EnrollmentRow(enrollment_id=f"enr{n}", workflow_id=f"journey/{journey}/c{n}", journey_id=journey,
                         version=1, customer_id=f"c{n}", trigger_event_id=f"t{n}", entered_at=utcnow())  # fmt: skip


def test_enrollments_and_their_counters(store: Store) -> None:
    assert store.admit(enrollment(1)) and store.admit(enrollment(2))
    duplicate = enrollment(3)
    duplicate.trigger_event_id = "t1"
    assert store.admit(duplicate) is False, "one enrollment per trigger event"
    for _ in range(2):  # the finish activity may run twice: counted once
        store.record_end(EnrollmentEnd("enr1", status="exited", exit_reason="completed", at=utcnow(), path=["a"],
                                       arm="x"))  # fmt: skip
    store.record_end(EnrollmentEnd("enr2", status="needs_attention", exit_reason=None, at=utcnow()))
    store.mark_converted("enr1", at=utcnow(), arms={"ab": "x"})
    store.mark_converted("enr1", at=utcnow(), arms={"ab": "x"})
    entered_a = CountBatch("enr1:tally:1", [(CounterKey("shop", 1, counters.STEP_ENTERED, "a"), 1)])
    assert store.apply_tally(entered_a)
    assert not store.apply_tally(entered_a)
    got = {(c.metric, c.step, c.label): c.value for c in store.counters("shop") if c.value}
    assert got == {
        (counters.ENROLLED, "", ""): 2,
        (counters.EXITED, "", "completed"): 1,
        (counters.CONVERTED, "", ""): 1,
        (counters.ARM_CONVERTED, "ab", "x"): 1,
        (counters.STEP_ENTERED, "a", ""): 1,
    }
    assert [e.enrollment_id for e in store.list_enrollments(journey_id="shop", status="needs_attention")] == ["enr2"]
    assert store.get_enrollment("enr1").path == ["a"]
    assert store.running_workflows("shop") == [("journey/shop/c2", "c2")]


def test_concurrent_counter_increments_add_up(store: Store) -> None:
    key = CounterKey("shop", 1, counters.STEP_ENTERED, "hello")

    def work(worker: int) -> None:
        for i in range(25):
            store.apply_tally(CountBatch(f"w{worker}:{i}", [(key, 1)]))

    threads = [threading.Thread(target=work, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    (row,) = store.counters("shop", 1)
    assert row.value == 100


def message(key: str, status: str = "sending", step: str = "hello") -> MessageRow:
    return MessageRow(idempotency_key=key, enrollment_id="enr1", journey_id="shop", version=1, step_id=step, visit=1,
                      customer_id="c1", channel="wecom.customer", recipients=[], content={}, status=status,
                      at=utcnow(), created_at=utcnow())  # fmt: skip


def test_message_log_moves_its_counters_with_every_status_change(store: Store) -> None:
    assert store.begin_send(message("k1")) is None
    assert store.begin_send(message("k1")) is not None, "a second claim of the same step visit gets the first"
    store.finish_send("k1", status="pending_confirmation", reason=None, response={"msgid": "m1"},
                      content={"text": "hi"}, recipients=["wm1"], sender="s1")  # fmt: skip
    assert [m.idempotency_key for m in store.due_confirmations(utcnow(), limit=10)] == ["k1"], "checked at once"
    store.settle_confirmations([DecidedTask("k1", "failed", "quota_exceeded")])
    assert store.due_confirmations(utcnow(), limit=10) == [] and store.waiting_confirmations() == 0
    skipped = message("k2", status="skipped")
    skipped.reason = "opted_out"
    store.begin_send(skipped)
    store.begin_send(message("k3"))
    store.finish_send("k3", status="sent", reason="partial: u1, u2", response={})
    sends = {c.label: c.value for c in store.counters("shop") if c.metric == counters.SEND and c.value}
    assert sends == {"failed|quota_exceeded": 1, "skipped|opted_out": 1, "sent|partial": 1}
    assert [m.idempotency_key for m in store.list_messages(journey_id="shop", status="sent")] == ["k3"]
    assert store.get_send("k1").content == {"text": "hi"}
    later = datetime.now(UTC) + timedelta(days=1)
    assert store.list_messages(customer_id="c1", since=later) == []
    assert store.purge_messages(older_than=later) == 3


def test_a_send_claims_its_attempt_and_carried_counts_in_one_transaction(store: Store) -> None:
    steps = CountBatch("tally/enr1/1", [(CounterKey("shop", 1, counters.STEP_ENTERED, "hello"), 1)])
    earlier, profile, claimed = store.open_send("k1", "new-customer", begin=message("k1"), counts=steps)
    assert earlier is None and claimed and profile == {"id": "new-customer"} and store.get_customer("new-customer")
    # A retried attempt finds the first one and counts nothing twice.
    earlier, _, _ = store.open_send("k1", "new-customer", begin=message("k1"), counts=steps)
    assert earlier is not None and earlier.status == "sending"
    assert store.begin_send(message("k1"), counts=steps) is not None
    assert store.open_send("k2", "new-customer").earlier is None, "a read alone claims nothing"
    assert store.get_send("k2") is None
    # A wrong guess of the attempt's state still moves the right counters.
    store.finish_send("k1", status="sent", reason=None, response={}, expect=("pending_confirmation", None))
    got = {(c.metric, c.label): c.value for c in store.counters("shop") if c.value}
    assert got == {(counters.STEP_ENTERED, ""): 1, (counters.SEND, "sent|"): 1}
    store.record_end(EnrollmentEnd("enr1", status="exited", exit_reason="completed", at=utcnow(), counts=steps))
    assert store.apply_tally(CountBatch("tally/enr1/2", steps.changes))
    assert {(c.metric, c.label): c.value for c in store.counters("shop") if c.value}[(counters.STEP_ENTERED, "")] == 2


def test_a_send_claims_only_when_the_profile_it_reads_lets_it_go(store: Store) -> None:
    # A claim the profile does not allow writes nothing: neither the attempt nor its counts.
    held = CountBatch("tally/enr2/1", [(CounterKey("shop", 1, counters.STEP_ENTERED, "bye"), 1)])
    opened = store.open_send("k3", "new-customer", begin=message("k3"), counts=held,
                             claim_if=lambda profile: profile.get("vip") is True)  # fmt: skip
    assert (opened.earlier, opened.claimed) == (None, False) and store.get_send("k3") is None
    assert store.apply_tally(held), "its counts were not claimed"
    store.put_customer("new-customer", {"vip": True})
    assert store.open_send("k3", "new-customer", begin=message("k3"), claim_if=lambda p: p.get("vip") is True).claimed
    assert store.get_send("k3").status == "sending"


def test_a_retried_admission_is_the_same_enrollment(store: Store) -> None:
    assert store.admit(enrollment(1)) is True
    assert store.admit(enrollment(1)) is None, "the same run retried its admission activity"
    assert {c.metric: c.value for c in store.counters("shop")} == {counters.ENROLLED: 1}


def engine_event(event_id: str, name: str) -> EventRow:
    return EventRow(event_id=event_id, customer_id="c1", name=name, properties={}, timestamp=utcnow(),
                    received_at=utcnow())  # fmt: skip


def stored_events(store: Store) -> list[str]:
    with store.engine.connect() as conn:
        return sorted(r.event_id for r in conn.execute(text("select event_id from events")))


def test_admission_and_exit_store_their_events_in_their_own_transaction(store: Store) -> None:
    assert store.admit(enrollment(1), engine_event("enr1:entered", "journey.entered")) is True
    assert store.admit(enrollment(1), engine_event("enr1:entered", "journey.entered")) is None, "a retry"
    duplicate = enrollment(2)
    duplicate.trigger_event_id = "t1"
    assert store.admit(duplicate, engine_event("enr2:entered", "journey.entered")) is False
    assert stored_events(store) == ["enr1:entered"], "the refused admission stored no event"
    exited = engine_event("enr1:exited", "journey.exited")
    parked = EnrollmentEnd("enr1", status="needs_attention", exit_reason=None, at=utcnow(), exited=exited)
    assert not store.record_end(parked), "not an exit: no exit event"
    assert store.record_end(EnrollmentEnd("enr1", status="exited", exit_reason="completed", at=utcnow(), exited=exited))
    assert not store.record_end(EnrollmentEnd("enr1", status="exited", exit_reason="completed", at=utcnow(),
                                              exited=exited)), "a retry stores it once"  # fmt: skip
    assert stored_events(store) == ["enr1:entered", "enr1:exited"]


def test_an_admission_whose_event_cannot_be_stored_is_not_recorded(store: Store) -> None:
    # The event and the enrollment commit together: an admission never exists without its event.
    broken = engine_event("enr1:entered", "journey.entered")
    broken.name = None  # type: ignore[assignment]  # violates NOT NULL
    with pytest.raises(IntegrityError):
        store.admit(enrollment(1), broken)
    with pytest.raises(NotFoundError):
        store.get_enrollment("enr1")
    assert store.admit(enrollment(1), engine_event("enr1:entered", "journey.entered")) is True


def test_a_last_send_logs_its_outcome_event_and_end_in_one_transaction(store: Store) -> None:
    assert store.admit(enrollment(1))
    store.begin_send(message("enr1:hello:1"))
    end = EnrollmentEnd("enr1", status="exited", exit_reason="completed", at=utcnow(), path=["hello"],
                        exited=engine_event("enr1:exited", "journey.exited"))  # fmt: skip
    sent = engine_event("enr1:hello:1:message.sent", "message.sent")
    recorded = store.finish_send("enr1:hello:1", status="sent", reason=None, response={"msgid": "m1"},
                                 event=sent, end=end)  # fmt: skip
    assert recorded == SendRecorded(event=True, exited=True)
    assert store.get_send("enr1:hello:1").status == "sent"
    row = store.get_enrollment("enr1")
    assert (row.status, row.exit_reason, row.path) == ("exited", "completed", ["hello"])
    assert stored_events(store) == ["enr1:exited", "enr1:hello:1:message.sent"]
    # A retry (the row already moved) stores neither event again and counts the exit once.
    again = store.finish_send("enr1:hello:1", status="sent", reason=None, response={"msgid": "m1"},
                              event=sent, end=end)  # fmt: skip
    assert again == SendRecorded(event=False, exited=False)
    assert {c.label: c.value for c in store.counters("shop") if c.metric == counters.EXITED} == {"completed": 1}


def test_a_send_whose_end_cannot_be_stored_logs_nothing_of_it(store: Store) -> None:
    # All or nothing: the caller then logs the outcome alone (activities/send.py).
    assert store.admit(enrollment(1))
    store.begin_send(message("enr1:hello:1"))
    broken = engine_event("enr1:exited", "journey.exited")
    broken.name = None  # type: ignore[assignment]  # violates NOT NULL
    end = EnrollmentEnd("enr1", status="exited", exit_reason="completed", at=utcnow(), exited=broken)
    with pytest.raises(IntegrityError):
        store.finish_send("enr1:hello:1", status="sent", reason=None, response={}, end=end)
    assert store.get_send("enr1:hello:1").status == "sending"
    assert store.get_enrollment("enr1").status == "running"
    assert stored_events(store) == []


def test_a_decided_task_is_logged_with_its_event_or_not_at_all(store: Store) -> None:
    store.begin_send(message("k1"))
    store.finish_send("k1", status="pending_confirmation", reason=None, response={"msgid": "m1"})
    broken = engine_event("k1:message.sent", "message.sent")
    broken.name = None  # type: ignore[assignment]  # violates NOT NULL
    with pytest.raises(IntegrityError):
        store.settle_confirmations([DecidedTask("k1", "sent", None, event=broken)])
    assert store.get_send("k1").status == "pending_confirmation", "still waiting: the next sweep asks again"
    sent = engine_event("k1:message.sent", "message.sent")
    assert store.settle_confirmations([DecidedTask("k1", "sent", None, event=sent)]) == [True]
    assert store.get_send("k1").status == "sent"
    assert stored_events(store) == ["k1:message.sent"]


def test_a_sweeps_findings_are_recorded_together_whatever_moved_meanwhile(store: Store) -> None:
    for key in ("k1", "k2", "k3"):
        store.begin_send(message(key))
        store.finish_send(key, status="pending_confirmation", reason=None, response={"msgid": key})
    store.finish_send("k2", status="sent", reason=None, response={}, expect=("pending_confirmation", None))
    later = utcnow() + timedelta(minutes=5)
    stored = store.settle_confirmations(
        [DecidedTask("k1", "sent", None, event=engine_event("k1:message.sent", "message.sent")),
         DecidedTask("gone", "sent", None, event=engine_event("gone:message.sent", "message.sent")),
         DecidedTask("k2", "failed", "quota_exceeded")],
        [("k3", later), ("k1", later)],
    )  # fmt: skip
    assert stored == [True, False, False], "the missing task is left out, with its event"
    assert stored_events(store) == ["k1:message.sent"]
    assert (store.get_send("k2").status, store.get_send("k2").reason) == ("sent", None), "decided first, kept"
    assert store.get_send("k1").next_check_at is None, "a decided task is not checked again"
    assert store.get_send("k3").next_check_at is not None and store.waiting_confirmations() == 1
    sends = {c.label: c.value for c in store.counters("shop") if c.metric == counters.SEND and c.value}
    assert sends == {"sent|": 2, "pending_confirmation|": 1}


def test_keys_and_audit(store: Store) -> None:
    store.add_key(ApiKeyRow(id="k1", name="n", role="viewer", secret_hash="h", created_at=utcnow(), created_by="a"))
    assert store.get_key("k1").role == "viewer"
    assert store.revoke_key("k1").revoked_at is not None
    with pytest.raises(NotFoundError):
        store.revoke_key("nope")
    store.audit(actor="k1", action="journey.activate", target="shop", details={"version": 1})
    store.audit(actor="k1", action="journey.pause", target="shop")
    assert [a.action for a in store.list_audit(target="shop")] == ["journey.pause", "journey.activate"]


def start_together(url: str, processes: int = 3) -> list[BaseException]:
    """Open (and migrate) the database from ``processes`` threads at once; what they raised."""
    errors: list[BaseException] = []

    def start() -> None:
        try:
            make_engine(url).dispose()
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(processes)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_api_and_worker_starting_together_migrate_once(db_url: str) -> None:
    assert start_together(db_url) == []


def test_processes_creating_a_new_sqlite_file_together_all_start(tmp_path: Path) -> None:
    # Switching a new file to WAL answers "locked" at once, without the busy handler, while
    # another connection switches it: about one start in seven failed before the retry.
    for attempt in range(15):
        assert start_together(f"sqlite:///{tmp_path / f'fresh-{attempt}.db'}") == [], f"attempt {attempt}"


def test_concurrent_status_changes_move_each_counter_once(store: Store) -> None:
    def race(fn, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        threads = [threading.Thread(target=fn, args=args, kwargs=kwargs) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    store.begin_send(message("k1"))
    race(store.finish_send, "k1", status="pending_confirmation", reason=None, response={"msgid": "m1"})
    race(store.settle_confirmations, [DecidedTask("k1", "failed", "quota_exceeded")])
    assert store.admit(enrollment(1))
    race(store.record_end, EnrollmentEnd("enr1", status="exited", exit_reason="completed", at=utcnow()))
    race(store.mark_converted, "enr1", at=utcnow(), arms={"ab": "x"})
    got = {(c.metric, c.label): c.value for c in store.counters("shop") if c.value}
    assert got == {
        (counters.SEND, "failed|quota_exceeded"): 1,
        (counters.ENROLLED, ""): 1,
        (counters.EXITED, "completed"): 1,
        (counters.CONVERTED, ""): 1,
        (counters.ARM_CONVERTED, "x"): 1,
    }


def test_effects_are_purged_past_the_horizon(store: Store) -> None:
    store.apply_once("enr:step:1", "c1", lambda p: {"n": 1})
    assert store.purge_effects(older_than=utcnow() - timedelta(days=1)) == 0
    assert store.purge_effects(older_than=utcnow() + timedelta(seconds=1)) == 1


async def test_database_calls_run_on_the_stores_own_threads(store: Store) -> None:
    # SQLite takes one writer at a time: its calls run one by one on one thread. PostgreSQL's
    # run side by side. Either way not on the event loop's default executor (host names).
    request = contextvars.ContextVar("request", default="")
    request.set("r-1")
    barrier = threading.Barrier(2, timeout=1.0)

    def meet() -> tuple[str, str, bool]:
        try:
            barrier.wait()
            met = True
        except threading.BrokenBarrierError:
            met = False
        return threading.current_thread().name, request.get(), met

    results = await asyncio.gather(store.offload(meet), store.offload(meet))
    assert all(name.startswith("sql") for name, _, _ in results)
    assert {ctx for _, ctx, _ in results} == {"r-1"}, "the caller's context goes along"
    side_by_side = store.engine.dialect.name == "postgresql"
    assert all(met is side_by_side for _, _, met in results)
