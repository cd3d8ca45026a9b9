"""Payloads of the journey workflow: input, signals, queries, updates, activity I/O.

These are part of every enrollment's history. Add optional fields only; never rename
or remove one (running enrollments would fail to decode on replay).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.plan import JourneyPlan, PolicyPlan

#: Activity names, stable forever because they are recorded in history.
ADMIT = "journeys.admit"
FINISH = "journeys.finish"
MATCH = "journeys.match"
SEND = "journeys.send"

#: Signal, query and update names.
EVENT_SIGNAL = "event"
STATUS_QUERY = "status"


@dataclass
class EventData:
    """An event as the engine routes it."""

    event_id: str
    name: str
    customer_id: str
    timestamp: str
    properties: dict[str, Any] = field(default_factory=dict)

    def as_context(self) -> dict[str, Any]:
        """The event as rules see it: properties as fields, plus name and timestamp."""
        return {**self.properties, "name": self.name, "timestamp": self.timestamp, "event_id": self.event_id}


@dataclass
class EnrollmentInput:
    """The workflow input: the frozen plan and why this customer entered.

    Attributes:
        plan: The compiled journey version this enrollment runs, start to finish.
        version: The journey version number the plan belongs to.
        customer_id: Who is enrolled.
        key: The ``trigger.key`` value, if the journey has one.
        trigger: The event that admitted the customer.
        clock_offset_s: Added to workflow time; non-zero only in simulations, whose clock
            starts at the scenario's ``start`` rather than at the test server's.
    """

    plan: JourneyPlan
    version: int
    customer_id: str
    trigger: EventData
    key: str | None = None
    clock_offset_s: float = 0.0
    resume: ResumeState | None = None
    max_visits_per_run: int = 2000


@dataclass
class AdmitInput:
    """Ask the admission activity to record (or refuse) this enrollment."""

    enrollment_id: str
    workflow_id: str
    journey_id: str
    version: int
    customer_id: str
    key: str | None
    trigger_event_id: str
    entered_at: str
    audience: str | None = None
    reentry: str = "after_exit"
    cooldown_s: float | None = None
    trigger: EventData | None = None
    vars: dict[str, Any] = field(default_factory=dict)
    listens: list[str] | None = None


@dataclass
class AdmitResult:
    """Whether the customer was admitted and, if not, why."""

    admitted: bool
    reason: str | None = None


@dataclass
class MatchInput:
    """Evaluate a rule for an event in the enrollment's context."""

    rule: str
    event: EventData
    context: RuleContext


@dataclass
class SendInput:
    """Deliver one message for one step visit."""

    enrollment_id: str
    journey_id: str
    version: int
    step_id: str
    visit: int
    customer_id: str
    channel: str
    message: dict[str, Any]
    trigger: EventData
    vars: dict[str, Any]
    journey: dict[str, Any]
    steps: dict[str, Any]
    now: str
    category: str = "marketing"
    strict: bool = True
    customer_facing: bool = True
    policy: PolicyPlan | None = None
    timezone: str = "Asia/Shanghai"
    skip_reason: str | None = None
    #: Step counts gathered since the last batch, applied once by this activity (its first
    #: attempt that gets that far) instead of by an activity of their own.
    tally: TallyInput | None = None
    #: Check the journey's pause gate before sending (instead of a local activity of its own);
    #: a closed gate answers ``held``.
    gate: bool = False
    #: The last step's send: record the enrollment's end once the step is done (any outcome
    #: but ``held`` or ``deferred``), instead of a local activity of its own.
    finish: FinishInput | None = None
    #: The first step's send of a new enrollment: admit the customer first (journey-dsl
    #: §6a.3), instead of a local activity of its own; a refusal answers ``refused`` and
    #: nothing is sent or counted. An admission makes the gate check unneeded (it found
    #: the journey active).
    admit: AdmitInput | None = None


@dataclass
class SendResult:
    """What happened to a send.

    ``status`` is ``sent``, ``skipped``, ``deferred``, ``failed``, ``held`` (gate closed) or
    ``refused`` (the admission it carried refused the customer; ``reason`` says why).
    """

    status: str
    reason: str | None = None
    msgid: str | None = None
    recipients: list[str] = field(default_factory=list)
    retry_at: str | None = None
    gate: GateState | None = None
    #: The ``finish`` the input carried was recorded (False: the workflow records it itself).
    finished: bool = False


@dataclass
class FinishInput:
    """Record the end (or parking) of an enrollment."""

    enrollment_id: str
    workflow_id: str
    customer_id: str
    status: str
    exit_reason: str | None
    at: str
    journey_id: str = ""
    version: int = 0
    path: list[str] | None = None
    arm: str | None = None
    #: The enrollment's last step counts, applied with the record.
    tally: TallyInput | None = None


@dataclass
class ConvertedInput:
    """A goal conversion of an enrollment."""

    enrollment_id: str
    journey_id: str
    version: int
    customer_id: str
    event_id: str
    at: str
    #: Split step -> arm taken before the conversion (their ``arm.converted`` counters).
    arms: dict[str, str] = field(default_factory=dict)


#: Adds an enrollment's step counts (entered, completed, arm assignments) to the stats.
TALLY = "journeys.tally"


@dataclass
class TallyEntry:
    """One counted fact: ``metric`` at ``step`` (``label``: the arm, for ``arm.enrolled``)."""

    metric: str
    step: str
    label: str = ""


@dataclass
class TallyInput:
    """A batch of counts, applied once per (enrollment, seq)."""

    enrollment_id: str
    journey_id: str
    version: int
    seq: int
    entries: list[TallyEntry]


@dataclass
class GateInput:
    """Ask whether this enrollment may act now (and register it as holding if not)."""

    journey_id: str
    workflow_id: str


@dataclass
class GateState:
    """The journey's gate: status and, while paused, how resumption treats held actions."""

    status: str
    on_resume: str | None = None
    stale_after_s: float | None = None


@dataclass
class OperatorExit:
    """Operator request to end an enrollment."""

    reason: str | None = None


@dataclass
class EnrollmentState:
    """Live state of one enrollment (the ``status`` query)."""

    enrollment_id: str
    workflow_id: str
    journey_id: str
    version: int
    customer_id: str
    key: str | None
    status: str
    current_step: str | None
    next_wake_at: str | None
    path: list[str]
    steps: dict[str, Any]
    entered_at: str | None
    exit_reason: str | None = None
    attention_reason: str | None = None
    converted: bool = False
    arm: str | None = None


#: Records a goal conversion and emits ``journey.converted``.
CONVERTED = "journeys.converted"

#: Reads the journey's gate (paused / archived) before an action.
GATE = "journeys.gate"
RESUME_SIGNAL = "resume"
ARCHIVE_SIGNAL = "archive"

#: Activity names added with the full language.
BRANCH = "journeys.branch"
NEXT_TIME = "journeys.next_time"
TAG = "journeys.tag"
UPDATE = "journeys.update"


@dataclass
class RuleContext:
    """What rules evaluated for an enrollment can see (the profile is read fresh)."""

    customer_id: str
    trigger: EventData
    vars: dict[str, Any]
    journey: dict[str, Any]
    steps: dict[str, Any]
    now: str


@dataclass
class BranchInput:
    """Evaluate branch cases in order; the first that holds wins."""

    rules: list[str]
    context: RuleContext


@dataclass
class BranchResult:
    """Index of the case taken (-1: else) and rules that failed to evaluate."""

    index: int
    errors: list[str] = field(default_factory=list)


@dataclass
class NextTimeInput:
    """Find the next local time of day strictly after ``now`` in the customer's zone."""

    customer_id: str
    time: str
    days: list[str] | None
    default_timezone: str
    now: str


@dataclass
class TagInput:
    """Add and remove tags on the customer's profile."""

    customer_id: str
    add: list[str]
    remove: list[str]
    idempotency_key: str = ""


@dataclass
class UpdateInput:
    """Set attributes from rules evaluated on the fresh profile."""

    updates: dict[str, str]
    context: RuleContext
    idempotency_key: str = ""


@dataclass
class ActivityCall:
    """Input of every registered journey activity: raw ``with`` plus the enrollment context."""

    with_: dict[str, Any]
    context: RuleContext
    enrollment_id: str
    journey_id: str
    step_id: str
    visit: int
    strict: bool = True

    @property
    def idempotency_key(self) -> str:
        """Stable per (enrollment, step, visit): retries of one call share it."""
        return f"{self.enrollment_id}:{self.step_id}:{self.visit}"


@dataclass
class ResumeState:
    """Interpreter state carried across continue-as-new."""

    node: str
    path: list[str]
    steps: dict[str, Any]
    visits: dict[str, int]
    entered_at: str
    converted: bool
    arms: dict[str, str]
    seen: list[str]
    pending: list[EventData] = field(default_factory=list)
    tally_seq: int = 0


#: Scheduled audience journeys.
SCHEDULE_NEXT = "journeys.schedule_next"
SCHEDULE_GATE = "journeys.schedule_gate"
AUDIENCE_RUN = "journeys.audience_run"


@dataclass
class ScheduleInput:
    """The scheduler of one journey (it reads the active version's cron on every round)."""

    journey_id: str
    clock_offset_s: float = 0.0


@dataclass
class ScheduleNextInput:
    """When the journey's schedule fires next, strictly after ``after``."""

    journey_id: str
    after: str


@dataclass
class ScheduleNext:
    """The next fire time, or None when the journey no longer has a schedule."""

    at: str | None


@dataclass
class AudienceRunInput:
    """One scheduled run: enroll every customer for whom the audience holds."""

    journey_id: str
    run_at: str
    clock_offset_s: float = 0.0


@dataclass
class AudienceRunResult:
    """How many customers a run checked and enrolled."""

    checked: int
    enrolled: int


#: Following a customer mass-send task to its outcome.
TRACK_MASS_SEND = "journeys.track_mass_send"


@dataclass
class TrackInput:
    """A wecom.customer task waiting for the staff member's confirmation."""

    idempotency_key: str
    msgid: str
    sender: str
    external_userid: str
    first_poll_s: float = 60.0


@dataclass
class TrackResult:
    """``pending`` while unconfirmed, else the recorded outcome."""

    status: str
    reason: str | None = None


#: One pass over the message log's tasks that are due for a confirmation check.
SWEEP_CONFIRMATIONS = "journeys.sweep_confirmations"
#: Sent to the confirmation sweep (with start) after a task is logged as waiting.
WAKE_SIGNAL = "wake"


@dataclass
class SweepResult:
    """What one sweep did, how many tasks still wait, and when the next sweep should run."""

    checked: int
    decided: int
    waiting: int
    next_in_s: float
