"""API keys: create (shown once), list, revoke, and authenticate a presented key into a :class:`Scope`.

The rules are :mod:`report_pipelines.domain.api_access`; the table is :mod:`report_pipelines.adapters.db.api`.
Every key created or revoked is recorded in the audit table, like every write through the API.

Authentication reads the key's row on every request (so a revocation is refused from the very next
request), and checks the secret with scrypt once per process: a verified key's hash is remembered in
memory (a keyed digest of the presented key, never the key), so a busy client does not pay tens of
milliseconds of scrypt per request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass

from report_pipelines.adapters.db.api import ApiKeyRepository, AuditRepository, StoredKey
from report_pipelines.app import App
from report_pipelines.domain.api_access import ROLES, Scope, Unauthorized, new_key, secret_matches, split_key
from report_pipelines.domain.errors import InvalidInput, NotFound
from report_pipelines.services.clients import get_client


@dataclass(frozen=True)
class CreatedKey:
    token: str  # shown once, stored nowhere
    key: StoredKey


def record_audit(app: App, *, actor: str, action: str, status: int, role: str | None = None,
                 client_id: int | None = None, detail: str | None = None) -> None:
    AuditRepository(app.engine).record(at=app.now(), actor=actor, role=role, client_id=client_id, action=action,
                                       status=status, detail=detail)


def create_key(app: App, *, client: str | None = None, role: str | None = None, label: str | None = None,
               by: str = "cli") -> CreatedKey:
    """A key for one client (``client`` slug: role ``client``) or a staff ``role`` (sales, operator)."""
    if (client is None) == (role is None):
        raise InvalidInput("client", "give either --client SLUG or --role operator|sales")
    if role is not None and role not in ROLES[1:]:
        raise InvalidInput("role", f"{role!r} is not one of {', '.join(ROLES[1:])} (a client key: --client SLUG)")
    client_id = None if client is None else get_client(app.engine, client).id
    if label is not None and (len(label) > 200 or any(ord(c) < 32 for c in label)):
        raise InvalidInput("label", "at most 200 printable characters")
    made = new_key()
    repo = ApiKeyRepository(app.engine)
    repo.add(prefix=made.prefix, salt=made.salt, digest=made.digest, role=role or "client", client_id=client_id,
             label=label, created_by=by, now=app.now())
    stored = repo.by_prefix(made.prefix)
    assert stored is not None
    record_audit(app, actor=by, action="api-keys create", status=201, role=stored.role, client_id=client_id,
                 detail=f"key {made.prefix}")
    return CreatedKey(made.token, stored)


def list_keys(app: App) -> list[StoredKey]:
    return ApiKeyRepository(app.engine).list()


def revoke_key(app: App, prefix: str, by: str = "cli") -> StoredKey:
    """Revoke a key by its prefix (``rp_<prefix>_...`` or the prefix alone); refused from the next request."""
    if prefix.startswith("rp_"):
        prefix = prefix[3:].split("_", 1)[0]
    repo = ApiKeyRepository(app.engine)
    stored = repo.by_prefix(prefix)
    if stored is None:
        raise NotFound("key", f"no API key with prefix {prefix[:20]!r} (see: report-pipelines api-keys list)")
    if not repo.revoke(prefix, app.now()):
        raise InvalidInput("key", f"key {prefix} is already revoked (at {stored.revoked_at:%Y-%m-%d %H:%M} UTC)")
    record_audit(app, actor=by, action="api-keys revoke", status=200, role=stored.role, client_id=stored.client_id,
                 detail=f"key {prefix}")
    return repo.by_prefix(prefix)  # type: ignore[return-value]


class Authenticator:
    """Presented key -> :class:`Scope`, for one App (one per API process)."""

    def __init__(self, app: App, remember: int = 10_000) -> None:
        self.app = app
        self._pepper = secrets.token_bytes(32)  # this process's own: the memory holds no reusable digest
        self._verified: OrderedDict[tuple[int, bytes], bytes] = OrderedDict()
        self._remember = remember
        self._lock = threading.Lock()

    def _seen(self, key: StoredKey, token: str) -> bool:
        mark = hmac.new(self._pepper, token.encode(), hashlib.sha256).digest()
        with self._lock:
            known = self._verified.get((key.id, key.digest))
            return known is not None and hmac.compare_digest(known, mark)

    def _remember_ok(self, key: StoredKey, token: str) -> None:
        mark = hmac.new(self._pepper, token.encode(), hashlib.sha256).digest()
        with self._lock:
            self._verified[(key.id, key.digest)] = mark
            while len(self._verified) > self._remember:
                self._verified.popitem(last=False)

    def scope(self, authorization: str | None) -> Scope:
        """The scope of an ``Authorization: Bearer rp_...`` header, or :class:`Unauthorized`."""
        if not authorization:
            raise Unauthorized()
        kind, _, token = authorization.strip().partition(" ")
        if kind.lower() != "bearer":
            raise Unauthorized()
        prefix, secret = split_key(token.strip())
        key = ApiKeyRepository(self.app.engine).by_prefix(prefix)
        if key is None or key.revoked_at is not None:
            raise Unauthorized()
        if not self._seen(key, token.strip()):
            if not secret_matches(secret, key.salt, key.digest):
                raise Unauthorized()
            self._remember_ok(key, token.strip())
        return Scope(key_id=key.id, prefix=key.prefix, role=key.role, client_id=key.client_id)


__all__ = ["Authenticator", "CreatedKey", "create_key", "list_keys", "record_audit", "revoke_key"]
