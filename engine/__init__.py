"""Definitions and wiring: settings, journey spec, compiler, stores, Temporal helpers, CLI."""
