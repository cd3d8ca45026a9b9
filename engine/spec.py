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
    field_validator,
)

from engine.durations import parse_duration

JOURNEY_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{1,62}$"
STEP_ID_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,63}$"

Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
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

    event: str = Field(min_length=1)
    when: Rule | None = None
    key: Rule | None = None


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
    """A ``wecom.customer`` attachment (image, link, miniprogram, video, file)."""

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


class WaitForSpec(_Model):
    """Wait for a matching event, at most ``timeout``."""

    event: str = Field(min_length=1)
    when: Rule | None = None
    timeout: Duration


class _StepBase(_Model):
    id: str | None = Field(default=None, pattern=STEP_ID_PATTERN)
    name: str | None = None


class SendStep(_StepBase):
    """``send:`` step."""

    send: SendSpec
    timeout: Duration | None = None
    retry: RetrySpec | None = None
    on_error: str | None = None


class WaitStep(_StepBase):
    """``wait: 2h`` step."""

    wait: Duration


class WaitForStep(_StepBase):
    """``wait_for:`` step with its exits."""

    wait_for: WaitForSpec
    on_event: str = "next"
    on_timeout: str = "next"


#: Action key -> step model. Later language features add entries here.
STEP_MODELS: dict[str, type[_StepBase]] = {
    "send": SendStep,
    "wait": WaitStep,
    "wait_for": WaitForStep,
}


def _step_kind(value: Any) -> str | None:
    if isinstance(value, BaseModel):
        return next((f"{TAG_PREFIX}{k}" for k in STEP_MODELS if hasattr(value, k)), None)
    if not isinstance(value, dict):
        return None
    actions = [k for k in value if k in STEP_MODELS]
    return f"{TAG_PREFIX}{actions[0]}" if len(actions) == 1 else None


Step = Annotated[
    Annotated[SendStep, Tag(f"{TAG_PREFIX}send")]
    | Annotated[WaitStep, Tag(f"{TAG_PREFIX}wait")]
    | Annotated[WaitForStep, Tag(f"{TAG_PREFIX}wait_for")],
    Discriminator(
        _step_kind,
        custom_error_type="step_action",
        custom_error_message=("a step needs exactly one action key, one of: " + ", ".join(STEP_MODELS)),
    ),
]


class JourneySpec(_Model):
    """A whole journey file."""

    schema_ref: str | None = Field(default=None, alias="$schema")
    journey: str = Field(pattern=JOURNEY_ID_PATTERN)
    name: str | None = None
    description: str | None = None
    timezone: str = "Asia/Shanghai"
    category: Literal["marketing", "transactional"] = "marketing"
    strict: bool = True
    vars: dict[str, Any] = Field(default_factory=dict)
    trigger: TriggerSpec
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
        if isinstance(value, str) and not re.match(JOURNEY_ID_PATTERN, value):
            raise ValueError(
                f"journey id {value!r} must be 2-63 characters of lowercase letters, digits and '-', "
                "starting with a letter or digit"
            )
        return value
