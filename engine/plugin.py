"""The public surface for writing journey activities: import from here, nothing else.

Example:
    .. code-block:: python

        from pydantic import BaseModel
        from engine.plugin import ActivityContext, PermanentActivityError, journey_activity

        class CreateLead(BaseModel):
            name: str
            phone: str

        @journey_activity("crm.create_lead", input=CreateLead, timeout=10, retry=3)
        async def create_lead(inp: CreateLead, ctx: ActivityContext) -> dict:
            \"\"\"Create a lead in the CRM (once per enrollment step).\"\"\"
            ...

Declare the module in your package's ``pyproject.toml``::

    [project.entry-points."journeys.activities"]
    crm = "my_package.activities"

See ``docs/write-a-custom-activity.md``.
"""

from engine.errors import PermanentActivityError
from engine.registry import (
    ENTRY_POINT_GROUP,
    INJECTABLE,
    ActivityContext,
    ActivityRetry,
    RegistryError,
    journey_activity,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "INJECTABLE",
    "ActivityContext",
    "ActivityRetry",
    "PermanentActivityError",
    "RegistryError",
    "journey_activity",
]
