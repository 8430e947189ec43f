"""Who may do what through the HTTP API: keys, roles and the scope every API service call takes.

Pure Python (no database, no web framework).

* **Keys** look like ``rp_<prefix>_<secret>``: the prefix (8 characters) is public and names the key in
  listings, logs and the audit; the secret (43 characters, 256 random bits) is shown once. Only a salted
  ``hashlib.scrypt`` hash of the secret is stored; a presented key is compared with
  ``hmac.compare_digest``.
* **Roles**: ``client`` (one tenant: its reports, schedules, licences and proposals), ``sales``
  (proposals, policies, trials, every tenant), ``operator`` (everything, every tenant, read-only on
  money: no proposal, approval or trial).
* **Scope** (:class:`Scope`): what a key's request may see, derived from the key once per request and
  handed to every API service call. A ``client`` scope holds one tenant id; the services resolve every
  id they are given through it, so another tenant's id is not found (404), exactly like an id that does
  not exist: nothing tells the two apart.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from report_pipelines.domain.errors import InvalidInput, ReportPipelinesError

ROLES: tuple[str, ...] = ("client", "sales", "operator")
KEY_PATTERN = re.compile(r"^rp_([A-Za-z0-9]{8})_([A-Za-z0-9_-]{43})$")
#: scrypt cost: 16 MiB and some tens of milliseconds per check (a verified key is remembered in memory,
#: so a client's requests pay it once per process).
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"


class Unauthorized(ReportPipelinesError):
    """No key, a malformed, unknown or revoked key: the same answer for each (401)."""

    field = "authorization"

    def __init__(self, message: str = "give a valid API key: Authorization: Bearer rp_...") -> None:
        self.message = message
        super().__init__(f"authorization: {message}")


class Forbidden(ReportPipelinesError):
    """The key's role may not do this (403); says which roles may."""

    field = "role"

    def __init__(self, role: str, action: str, allowed: tuple[str, ...]) -> None:
        self.message = f"a {role} key cannot {action} (allowed: {', '.join(allowed)})"
        super().__init__(f"role: {self.message}")


class RateLimited(ReportPipelinesError):
    """Too many requests for this key (429); ``retry_after`` seconds until the next one is accepted."""

    field = "rate"

    def __init__(self, retry_after: int, limit: str) -> None:
        self.retry_after = retry_after
        self.message = f"more than {limit}; try again in {retry_after} s"
        super().__init__(f"rate: {self.message}")


@dataclass(frozen=True)
class NewKey:
    """A freshly made key: ``token`` is shown once; only ``prefix``, ``salt`` and ``digest`` are stored."""

    token: str
    prefix: str
    salt: bytes
    digest: bytes


def _secret_hash(secret: str, salt: bytes) -> bytes:
    return hashlib.scrypt(secret.encode("ascii"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)


def new_key() -> NewKey:
    prefix = "".join(secrets.choice(_ALPHABET) for _ in range(8))
    secret = secrets.token_urlsafe(32)  # 43 characters
    salt = secrets.token_bytes(16)
    return NewKey(token=f"rp_{prefix}_{secret}", prefix=prefix, salt=salt, digest=_secret_hash(secret, salt))


def split_key(token: str) -> tuple[str, str]:
    """``(prefix, secret)`` of a presented key, or :class:`Unauthorized` (never says what is wrong)."""
    match = KEY_PATTERN.fullmatch(token.strip()) if isinstance(token, str) else None
    if match is None:
        raise Unauthorized()
    return match.group(1), match.group(2)


def secret_matches(secret: str, salt: bytes, digest: bytes) -> bool:
    """Constant-time comparison of a presented secret with the stored hash."""
    return hmac.compare_digest(_secret_hash(secret, salt), digest)


def redact(text: str) -> str:
    """``text`` with any API key's secret masked (for logs): ``rp_AbCdEfGh_***``."""
    return re.sub(r"\b(rp_[A-Za-z0-9]{8}_)[A-Za-z0-9_-]{10,}", r"\1***", text)


#: action -> the roles that may do it.
PERMISSIONS: dict[str, tuple[str, ...]] = {
    "read clients": ("client", "sales", "operator"),
    "read reports": ("client", "operator"),
    "read schedules": ("client", "operator"),
    "change schedules": ("client", "operator"),
    "read licences": ("client", "sales", "operator"),
    "read the catalogue": ("client", "sales", "operator"),
    "read policies": ("sales", "operator"),
    "read proposals": ("client", "sales", "operator"),
    "draft proposals": ("client", "sales"),
    "propose to prospects": ("sales",),
    "decide proposals": ("sales",),
    "open trials": ("sales",),
}


@dataclass(frozen=True)
class Scope:
    """What one request may see and do: derived from its key, taken by every API service call."""

    key_id: int | None
    prefix: str
    role: str
    client_id: int | None  # the tenant of a client key; None: every tenant

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise InvalidInput("role", f"{self.role!r} is not one of {', '.join(ROLES)}")
        if (self.role == "client") != (self.client_id is not None):
            raise InvalidInput("client", "a client key has exactly one tenant; sales and operator keys none")

    @property
    def actor(self) -> str:
        return f"key {self.prefix}"

    @property
    def all_tenants(self) -> bool:
        return self.client_id is None

    def sees(self, client_id: int | None) -> bool:
        """Whether a thing of tenant ``client_id`` exists for this scope (None: a thing of no tenant)."""
        return self.client_id is None or client_id == self.client_id

    def require(self, action: str) -> None:
        allowed = PERMISSIONS[action]
        if self.role not in allowed:
            raise Forbidden(self.role, action, allowed)

    def may(self, action: str) -> bool:
        return self.role in PERMISSIONS[action]


__all__ = ["KEY_PATTERN", "PERMISSIONS", "ROLES", "Forbidden", "NewKey", "RateLimited", "Scope", "Unauthorized",
           "new_key", "redact", "secret_matches", "split_key"]
