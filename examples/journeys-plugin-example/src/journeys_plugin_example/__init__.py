"""Example Journeys plugin: ``crm.create_lead`` and ``sms.send`` over HTTP."""
