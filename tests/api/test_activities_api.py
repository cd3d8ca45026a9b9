"""GET /v1/activities: what journeys may call, documented."""

from __future__ import annotations

from tests.conftest import Stack
from tests.plugin_example import example_registry


async def test_activities_are_listed_with_description_defaults_and_input_schema(stack: Stack) -> None:
    example_registry()  # installed by make install; loaded explicitly so the test does not depend on it
    async with stack.client(None) as anonymous:
        assert (await anonymous.get("/v1/activities")).status_code == 401
    async with stack.client() as client:
        listed = {a["name"]: a for a in (await client.get("/v1/activities")).json()}
        assert {"journeys.emit_event", "profile.increment", "crm.create_lead", "sms.send"} <= set(listed)
        lead = listed["crm.create_lead"]
        assert lead["description"].startswith("Create a lead in the CRM")
        assert lead["timeout_s"] == 10 and lead["retry"]["max_attempts"] == 5 and lead["retry"]["initial_s"] == 1
        assert lead["input_schema"]["required"] == ["name", "phone"]
        assert lead["input_schema"]["properties"]["score"]["maximum"] == 100
        assert listed["profile.increment"]["origin"] == "built-in"
        assert listed["sms.send"]["input_schema"]["properties"]["to"]["pattern"]
