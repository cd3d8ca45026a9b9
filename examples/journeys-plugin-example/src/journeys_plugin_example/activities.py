"""The plugin's journey activities (this module is the ``journeys.activities`` entry point).

Both talk HTTP to systems that de-duplicate by an ``Idempotency-Key`` header. The key
is ``ctx.idempotency_key``: the same for every retry of one step of one enrollment, so a
call repeated after a worker crash (the side effect happened, the completion was never
recorded) creates one lead and sends one message.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from engine.plugin import ActivityContext, ActivityRetry, PermanentActivityError, journey_activity

#: Mainland China mobile numbers.
PHONE = r"^1[3-9]\d{9}$"


class ExampleSettings(BaseSettings):
    """Where the CRM and the SMS gateway are (environment variables ``JOURNEYS_EXAMPLE_*``).

    Attributes:
        gateway_url: Base URL of both systems (the local ``gateway`` server by default).
        api_key: Sent as a Bearer token.
    """

    model_config = SettingsConfigDict(env_prefix="JOURNEYS_EXAMPLE_", extra="ignore")

    gateway_url: str = "http://127.0.0.1:8300"
    api_key: str = Field(default="example-key", repr=False)


class CreateLead(BaseModel):
    """Input of ``crm.create_lead``."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100, description="The customer's name.")
    phone: str = Field(pattern=PHONE, description="11-digit mainland mobile number.")
    source: str = Field(default="journey", min_length=1, max_length=50, description="Campaign or form.")
    score: int = Field(default=0, ge=0, le=100, description="Lead score, 0-100.")


class LeadCreated(BaseModel):
    """Result of ``crm.create_lead`` (``steps.<id>.result.lead_id`` in later steps)."""

    lead_id: str
    created: bool = Field(description="False when the CRM already had this call (a repeated delivery).")


class SendSms(BaseModel):
    """Input of ``sms.send``."""

    model_config = ConfigDict(extra="forbid")
    to: str = Field(pattern=PHONE, description="11-digit mainland mobile number.")
    text: str = Field(min_length=1, max_length=500, description="Message text, at most 500 characters.")


class SmsAccepted(BaseModel):
    """Result of ``sms.send``."""

    message_id: str


class ExampleActivities:
    """CRM and SMS calls, sharing the worker's HTTP client.

    The worker builds this once, passing the clients the constructor names (``http``
    here; ``redis``, ``settings``, ``store`` and ``services`` are also available).
    """

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.config = ExampleSettings()

    @journey_activity(
        "crm.create_lead",
        input=CreateLead,
        timeout=timedelta(seconds=10),
        retry=ActivityRetry(max_attempts=5, initial=timedelta(seconds=1), max_interval=timedelta(seconds=30)),
    )
    async def create_lead(self, inp: CreateLead, ctx: ActivityContext) -> LeadCreated:
        """Create a lead in the CRM for this customer (once per enrollment step, even across retries)."""
        body = {**inp.model_dump(), "customer_id": ctx.customer_id, "journey": ctx.journey_id}
        data = await self._post("/crm/leads", body, ctx)
        return LeadCreated(lead_id=data["lead_id"], created=data["created"])

    @journey_activity("sms.send", input=SendSms, timeout=timedelta(seconds=10), retry=3)
    async def send_sms(self, inp: SendSms, ctx: ActivityContext) -> SmsAccepted:
        """Send a text message through the SMS gateway (once per enrollment step, even across retries)."""
        data = await self._post("/sms/messages", inp.model_dump(), ctx)
        return SmsAccepted(message_id=data["message_id"])

    async def _post(self, path: str, body: dict[str, Any], ctx: ActivityContext) -> dict[str, Any]:
        resp = await self.http.post(
            self.config.gateway_url.rstrip("/") + path,
            json=body,
            headers={"Idempotency-Key": ctx.idempotency_key, "Authorization": f"Bearer {self.config.api_key}"},
        )
        if 400 <= resp.status_code < 500 and resp.status_code not in (408, 429):
            # The other system refused this input: retrying would be refused again.
            raise PermanentActivityError(
                f"{path} answered {resp.status_code}: {_error_text(resp)}",
                code="rejected",
                details={"status": resp.status_code},
            )
        # 5xx, 408, 429 and transport errors raise here and Temporal retries them.
        resp.raise_for_status()
        data: dict[str, Any] = resp.json()
        return data


def _error_text(resp: httpx.Response) -> str:
    try:
        return str(resp.json().get("error", resp.text))[:200]
    except ValueError:
        return resp.text[:200]
