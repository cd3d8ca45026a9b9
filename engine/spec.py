"""Pydantic models of the journey YAML (layer 1: shape only; meaning is the compiler's job).

Every model forbids unknown keys, so a typo such as ``timout:`` is an error with its line,
not a silently ignored setting.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    WithJsonSchema,
    field_validator,
)

from engine.durations import parse_duration

JOURNEY_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{1,62}$"
STEP_ID_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,63}$"

Duration = Annotated[
    timedelta,
    BeforeValidator(parse_duration),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?$",
            "description": "A duration with units: 30s, 15m, 1h30m, 2d, 1w",
            "examples": ["30s", "15m", "1h", "1d"],
        }
    ),
]
#: Marker prefix of discriminator tags; the loader strips these from error paths.
TAG_PREFIX = "§"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _rule_text(value: Any) -> Any:
    # YAML turns `when: true` into a bool and `key: 5` into an int; rules are expressions.
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, int | float):
        return str(value)
    return value


Rule = Annotated[str, BeforeValidator(_rule_text)]


class TriggerSpec(_Model):
    """How customers enter: an event (exact name, or prefix ending in ``*``)."""

    event: str | None = Field(default=None, min_length=1)
    schedule: str | None = None
    when: Rule | None = None
    key: Rule | None = None


class CooldownSpec(_Model):
    """``reentry: {cooldown: 7d}``: not again within this long of the previous entry."""

    cooldown: Duration


def _reentry_kind(value: Any) -> str:
    return f"{TAG_PREFIX}cooldown" if isinstance(value, dict | CooldownSpec) else f"{TAG_PREFIX}mode"


Reentry = Annotated[
    Annotated[Literal["once", "after_exit"], Tag(f"{TAG_PREFIX}mode")]
    | Annotated[CooldownSpec, Tag(f"{TAG_PREFIX}cooldown")],
    Discriminator(_reentry_kind),
]


class GoalSpec(_Model):
    """Conversion: a matching event within ``within`` of entry."""

    event: str = Field(min_length=1)
    when: Rule | None = None
    within: Duration | None = None
    exit: bool = True


class ExitWhenSpec(_Model):
    """Any matching event ends the enrollment at once."""

    event: str = Field(min_length=1)
    when: Rule | None = None


class QuietHoursSpec(_Model):
    """Quiet hours in the customer's local time."""

    start: str
    end: str
    action: Literal["defer", "skip"] = "defer"


class CapSpec(_Model):
    """At most ``max`` marketing sends per ``per`` window."""

    max: int = Field(ge=1)
    per: Duration


class PolicySpec(_Model):
    """Delivery policy of proactive customer messages."""

    quiet_hours: QuietHoursSpec | None = None
    frequency_caps: list[CapSpec] = Field(default_factory=list)
    on_capped: Literal["skip", "defer"] = "skip"
    priority: int = Field(default=5, ge=1, le=10)


class RetrySpec(_Model):
    """Retry policy of a ``send`` or ``activity`` step."""

    max_attempts: int = Field(default=5, ge=1, le=100)
    initial: Duration = timedelta(seconds=10)
    backoff: float = Field(default=2.0, ge=1.0, le=10.0)
    max_interval: Duration = timedelta(minutes=10)


class TextCard(_Model):
    """A ``wecom.app`` text card."""

    title: str
    description: str
    url: str
    btntxt: str | None = None


class Attachment(_Model):
    """A ``wecom.customer`` / ``wecom.welcome`` attachment (image, link, miniprogram, video, file)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    msgtype: Literal["image", "link", "miniprogram", "video", "file"]


class SendSpec(_Model):
    """What to send and through which channel (channel-specific checks are in the compiler)."""

    channel: str
    to: str | list[str] | None = None
    sender: str | None = None
    text: str | None = None
    markdown: str | None = None
    textcard: TextCard | None = None
    attachments: list[Attachment] | None = None
    webhook_key: str | None = None
    url: str | None = None
    body: Any = None
    customer_facing: bool | None = None


class WaitForSpec(_Model):
    """Wait for a matching event, at most ``timeout``."""

    event: str = Field(min_length=1)
    when: Rule | None = None
    timeout: Duration


Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class WaitUntilSpec(_Model):
    """Wait until the next local time of day, optionally on given weekdays."""

    time: str
    days: list[Weekday] | None = Field(default=None, min_length=1)


class TagSpec(_Model):
    """Tags to add and remove."""

    add: list[str] = Field(default_factory=list)
    remove: list[str] = Field(default_factory=list)


class ExitSpec(_Model):
    """``exit: {reason: ...}``."""

    reason: str | None = None


class _StepBase(_Model):
    id: str | None = Field(default=None, pattern=STEP_ID_PATTERN)
    name: str | None = None


class _Effect(_StepBase):
    timeout: Duration | None = None
    retry: RetrySpec | None = None
    on_error: str | None = None


class SendStep(_Effect):
    """``send:`` step."""

    send: SendSpec


class ActivityStep(_Effect):
    """``activity: name`` with ``with:`` input."""

    activity: str = Field(min_length=1)
    with_: dict[str, Any] = Field(default_factory=dict, alias="with")


class WaitStep(_StepBase):
    """``wait: 2h`` step."""

    wait: Duration


class WaitUntilStep(_StepBase):
    """``wait_until: {time, days}`` step."""

    wait_until: WaitUntilSpec


class WaitForStep(_StepBase):
    """``wait_for:`` step with its exits."""

    wait_for: WaitForSpec
    on_event: str = "next"
    on_timeout: str = "next"


class TagStep(_StepBase):
    """``tag: {add, remove}`` step."""

    tag: TagSpec


class UpdateStep(_StepBase):
    """``update: {attr: rule}`` step."""

    update: dict[str, Rule] = Field(min_length=1)


class GotoStep(_StepBase):
    """``goto: step_id`` step."""

    goto: str = Field(min_length=1)


class ExitStep(_StepBase):
    """``exit:`` step."""

    exit: ExitSpec | None = None


class BranchCase(_Model):
    """``{when, steps}`` of a branch."""

    when: Rule
    steps: list[Step]


class BranchElse(_Model):
    """``{else: steps}``, the last case of a branch."""

    else_: list[Step] = Field(alias="else")


class BranchStep(_StepBase):
    """``branch:`` step: the first case whose rule holds runs."""

    branch: list[BranchCase | BranchElse] = Field(min_length=1)


class SplitArm(_Model):
    """One arm of an A/B split."""

    arm: str = Field(min_length=1, max_length=64)
    weight: float = Field(gt=0)
    steps: list[Step] = Field(default_factory=list)


class SplitStep(_StepBase):
    """``split:`` step: sticky weighted assignment per customer."""

    split: list[SplitArm] = Field(min_length=2)


#: Action key -> step model.
STEP_MODELS: dict[str, type[_StepBase]] = {
    "send": SendStep,
    "wait": WaitStep,
    "wait_until": WaitUntilStep,
    "wait_for": WaitForStep,
    "branch": BranchStep,
    "split": SplitStep,
    "tag": TagStep,
    "update": UpdateStep,
    "activity": ActivityStep,
    "goto": GotoStep,
    "exit": ExitStep,
}


def _step_kind(value: Any) -> str | None:
    if isinstance(value, BaseModel):
        for key, model in STEP_MODELS.items():
            if isinstance(value, model):
                return f"{TAG_PREFIX}{key}"
        return None
    if not isinstance(value, dict):
        return None
    actions = [k for k in value if k in STEP_MODELS]
    return f"{TAG_PREFIX}{actions[0]}" if len(actions) == 1 else None


Step = Annotated[
    Annotated[SendStep, Tag(f"{TAG_PREFIX}send")]
    | Annotated[WaitStep, Tag(f"{TAG_PREFIX}wait")]
    | Annotated[WaitUntilStep, Tag(f"{TAG_PREFIX}wait_until")]
    | Annotated[WaitForStep, Tag(f"{TAG_PREFIX}wait_for")]
    | Annotated[BranchStep, Tag(f"{TAG_PREFIX}branch")]
    | Annotated[SplitStep, Tag(f"{TAG_PREFIX}split")]
    | Annotated[TagStep, Tag(f"{TAG_PREFIX}tag")]
    | Annotated[UpdateStep, Tag(f"{TAG_PREFIX}update")]
    | Annotated[ActivityStep, Tag(f"{TAG_PREFIX}activity")]
    | Annotated[GotoStep, Tag(f"{TAG_PREFIX}goto")]
    | Annotated[ExitStep, Tag(f"{TAG_PREFIX}exit")],
    Discriminator(
        _step_kind,
        custom_error_type="step_action",
        custom_error_message="a step needs exactly one action key, one of: " + ", ".join(STEP_MODELS),
    ),
]

BranchCase.model_rebuild()
BranchElse.model_rebuild()
SplitArm.model_rebuild()


class JourneySpec(_Model):
    """A whole journey file."""

    schema_ref: str | None = Field(default=None, alias="$schema")
    journey: str
    name: str | None = None
    description: str | None = None
    timezone: str = "Asia/Shanghai"
    category: Literal["marketing", "transactional"] = "marketing"
    strict: bool = True
    vars: dict[str, Any] = Field(default_factory=dict)
    trigger: TriggerSpec
    audience: Rule | None = None
    reentry: Reentry = "after_exit"
    goal: GoalSpec | None = None
    exit_when: list[ExitWhenSpec] = Field(default_factory=list)
    policy: PolicySpec | None = None
    steps: list[Step] = Field(min_length=1)

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r}; use an IANA name such as Asia/Shanghai") from exc
        return value

    @field_validator("journey", mode="before")
    @classmethod
    def _explain_id(cls, value: Any) -> Any:
        if not isinstance(value, str) or not re.match(JOURNEY_ID_PATTERN, value):
            raise ValueError(
                f"journey id {value!r} must be 2-63 characters of lowercase letters, digits and '-', "
                "starting with a letter or digit"
            )
        return value
