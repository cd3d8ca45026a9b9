"""The HTTP API (FastAPI): operators' and integrators' contract, under /v1."""
