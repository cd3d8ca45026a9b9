"""API keys and roles.

A key is ``jk_<id>_<secret>``; only ``sha256(secret)`` is stored. Roles are ordered:
viewer (read) < marketer (+ journey versions, events, customers) < operator (+ activate,
pause, resume, archive, enrollment actions) < admin (+ keys). ``JOURNEYS_ADMIN_KEY`` is the
bootstrap admin.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from engine.models import ApiKeyRow
from engine.store import Store, utcnow

ROLES = ("viewer", "marketer", "operator", "admin")


@dataclass(frozen=True)
class Caller:
    """Who is calling, and with which role."""

    key_id: str
    role: str

    def can(self, role: str) -> bool:
        """True when this caller's role includes ``role``."""
        return ROLES.index(self.role) >= ROLES.index(role)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(store: Store, *, name: str, role: str, created_by: str) -> tuple[ApiKeyRow, str]:
    """Create a key; returns its row and the full key (shown once, never stored).

    Raises:
        ValueError: Unknown role.
    """
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    key_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
    row = ApiKeyRow(id=key_id, name=name, role=role, secret_hash=_hash(secret), created_at=utcnow(),
                    created_by=created_by)  # fmt: skip
    store.add_key(row)
    return row, f"jk_{key_id}_{secret}"


def admin_caller(token: str, admin_key: str) -> Caller | None:
    """The bootstrap admin, if ``token`` is ``JOURNEYS_ADMIN_KEY`` (no database read)."""
    if admin_key and hmac.compare_digest(token.encode(), admin_key.encode()):
        return Caller(key_id="admin", role="admin")
    return None


def authenticate(store: Store, token: str) -> Caller | None:
    """The caller an API key (``jk_<id>_<secret>``) stands for, or None (see ``admin_caller`` for the admin key)."""
    prefix, _, rest = token.partition("_")
    key_id, _, secret = rest.partition("_")
    if prefix != "jk" or not key_id or not secret:
        return None
    row = store.get_key(key_id)
    if row is None or row.revoked_at is not None or not hmac.compare_digest(row.secret_hash, _hash(secret)):
        return None
    return Caller(key_id=row.id, role=row.role)
