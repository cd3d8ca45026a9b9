"""Structured logs: one JSON object per line, with the ids of what was running, secrets and phones masked.

Every record carries the journey, enrollment, customer and step it concerns when known:
activities bind them from their input (``LogContextInterceptor``), and Temporal's own
workflow and activity loggers add the workflow id, from which the journey and customer
are read. Masking runs on the final text, so a phone number or a token is hidden
wherever it appears: message, arguments, exception or extra field.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any

from temporalio.worker import ActivityInboundInterceptor, ExecuteActivityInput, Interceptor

#: The ids bound to the running task (an activity, a request).
_CONTEXT: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("journeys_log_context", default=None)
#: Attributes of an activity's input that identify what it works on.
_ID_FIELDS = ("journey_id", "enrollment_id", "customer_id", "step_id", "version")

# Digits on either side mean a longer number (an order id), not a phone number.
_PHONE = re.compile(r"(?<!\d)(?:\+?86[- ]?)?(1[3-9]\d)[- ]?(\d{4})[- ]?(\d{4})(?!\d)")
# A name ending in a secret-ish word (WECOM_SECRET, client_secret, msg_signature, x-api-key...),
# then = or : (quoted or not, as in a query string, JSON, a dict repr or an env dump).
_KEY_VALUE = re.compile(
    r"(?i)(?<![A-Za-z0-9])([A-Za-z_\-]*(?:secret|token|password|passwd|aes[_-]?key|encodingaeskey|api[_-]?key|signature))"
    r"(\\?[\"']?\s*[=:]\s*\\?[\"']?)([^\s&\"',;}\\]+)"
)
_BEARER = re.compile(r"(?i)\b(bearer\s+)[^\s\"',]+")
_API_KEY = re.compile(r"\b(jk_[A-Za-z0-9]+_)[A-Za-z0-9_\-]+")


def mask(text: str) -> str:
    """Hide phone numbers (keeping the first 3 and last 4 digits) and secret values."""
    text = _PHONE.sub(lambda m: f"{m.group(1)}****{m.group(3)}", text)
    text = _KEY_VALUE.sub(lambda m: f"{m.group(1)}{m.group(2)}***", text)
    text = _BEARER.sub(r"\1***", text)
    return _API_KEY.sub(r"\1***", text)


def bind(**ids: Any) -> contextvars.Token[dict[str, Any] | None]:
    """Add ids to every log record of the current task (returns a token for ``unbind``)."""
    current = _CONTEXT.get() or {}
    return _CONTEXT.set({**current, **{k: v for k, v in ids.items() if v not in (None, "")}})


def unbind(token: contextvars.Token[dict[str, Any] | None]) -> None:
    """Restore the ids bound before ``bind`` returned ``token``."""
    _CONTEXT.reset(token)


def _ids(record: logging.LogRecord) -> dict[str, Any]:
    ids: dict[str, Any] = {}
    temporal = getattr(record, "temporal_activity", None) or getattr(record, "temporal_workflow", None) or {}
    workflow_id = temporal.get("workflow_id")
    if workflow_id:
        ids["workflow_id"] = workflow_id
        parts = str(workflow_id).split("/")
        if len(parts) >= 3 and parts[0] == "journey":  # journey/{journey}/{customer}[/{key}]
            ids["journey_id"], ids["customer_id"] = parts[1], parts[2]
    if temporal.get("run_id") or temporal.get("workflow_run_id"):
        ids["run_id"] = temporal.get("run_id") or temporal.get("workflow_run_id")
    if temporal.get("activity_type"):
        ids["activity"] = temporal["activity_type"]
    elif temporal.get("workflow_type"):
        ids["workflow"] = temporal["workflow_type"]
    ids.update(_CONTEXT.get() or {})
    return ids


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, ids, exception, masked."""

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as a JSON line."""
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **_ids(record),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        # Masked before encoding: JSON escaping would hide a quoted secret from the patterns.
        masked = {k: mask(v) if isinstance(v, str) else v for k, v in entry.items()}
        return json.dumps(masked, ensure_ascii=False, default=lambda v: mask(str(v)))


class TextFormatter(logging.Formatter):
    """Human-readable lines for ``journeys up``, with the same ids and masking."""

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as ``time level logger: message key=value...``."""
        ids = " ".join(f"{k}={v}" for k, v in _ids(record).items())
        line = f"{self.formatTime(record, '%H:%M:%S')} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if ids:
            line += f"  [{ids}]"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return mask(line)


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    """Send every log record to stderr through the structured, masking formatter."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # uvicorn installs its own handlers; route its records through ours instead.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True


class _BoundActivity(ActivityInboundInterceptor):
    async def execute_activity(self, input: ExecuteActivityInput) -> Any:  # noqa: A002 - the SDK's name
        ids: dict[str, Any] = {}
        for arg in input.args:
            for name in _ID_FIELDS:
                value = getattr(arg, name, None)
                if isinstance(value, str | int) and name not in ids:
                    ids[name] = value
        token = bind(**ids)
        try:
            return await super().execute_activity(input)
        finally:
            unbind(token)


class LogContextInterceptor(Interceptor):
    """Binds the journey, enrollment, customer and step of each activity's input to its log records."""

    def intercept_activity(self, next: ActivityInboundInterceptor) -> ActivityInboundInterceptor:  # noqa: A002
        """Wrap the activity inbound chain."""
        return _BoundActivity(next)
