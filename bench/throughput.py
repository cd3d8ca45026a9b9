"""Placeholder, replaced below."""

JOURNEY = ""
