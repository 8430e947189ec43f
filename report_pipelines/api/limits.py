"""What guards every request: body size, rate per key, security headers, the audit of writes, log redaction.

:class:`Guard` is a plain ASGI middleware (it does not buffer responses, so streamed reports stay
streamed): it refuses a body larger than ``REPORT_PIPELINES_API_MAX_BODY_KB`` (413) before the
application reads it, adds the security headers to every response, and records every write
(POST, PATCH, PUT, DELETE) in the audit table with who (the key's prefix), what (method and path)
and the answer's status, after the answer. :class:`RateLimiter` is a token bucket per key.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Awaitable, Callable

import anyio

from report_pipelines.domain.api_access import RateLimited, redact

log = logging.getLogger("report_pipelines.api")

SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
    (b"cross-origin-resource-policy", b"same-origin"),
]
#: The API answers data, never pages; the interactive docs page needs its script and styles.
API_CSP = b"default-src 'none'; frame-ancestors 'none'"
DOCS_CSP = (b"default-src 'none'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
            b"style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; img-src 'self' data: https://fastapi.tiangolo.com; "
            b"connect-src 'self'; frame-ancestors 'none'")
WRITES = {"POST", "PUT", "PATCH", "DELETE"}


class RateLimiter:
    """A token bucket per name: ``count`` requests per ``seconds``, bursts up to ``count``."""

    def __init__(self, count: int, seconds: float = 60.0, *, clock: Callable[[], float] = time.monotonic,
                 what: str = "") -> None:
        self.capacity = float(count)
        self.rate = count / seconds
        self.clock = clock
        self.what = what or f"{count} requests in {seconds:g} s"
        self._buckets: dict[object, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, name: object) -> None:
        now = self.clock()
        with self._lock:
            tokens, then = self._buckets.get(name, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - then) * self.rate)
            if tokens < 1.0:
                self._buckets[name] = (tokens, now)
                raise RateLimited(max(1, math.ceil((1.0 - tokens) / self.rate)), self.what)
            self._buckets[name] = (tokens - 1.0, now)
            if len(self._buckets) > 100_000:  # forget the idle ones (a full bucket is the default)
                self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < 3600}


def problem_bytes(status: int, kind: str, title: str, detail: str, field: str | None = None) -> bytes:
    return json.dumps({"type": f"urn:report-pipelines:problem:{kind}", "title": title, "status": status,
                       "detail": detail, "field": field}).encode()


class RedactKeys(logging.Filter):
    """Masks any API key that would reach a log line (a key pasted into a URL, an error message, a
    traceback), keeping the record's shape (uvicorn's access formatter reads its five arguments)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact(a) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            record.args = {k: redact(v) if isinstance(v, str) else v for k, v in record.args.items()}
        if record.exc_info and not record.exc_text:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
        return True


def install_log_redaction() -> None:
    for name in ("uvicorn", "uvicorn.access", "uvicorn.error", "report_pipelines"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactKeys) for f in logger.filters):
            logger.addFilter(RedactKeys())


Audit = Callable[[dict, str, str, int], None]


class Guard:
    """Body limit, security headers and the audit of writes, around the whole application."""

    def __init__(self, app, *, max_body_bytes: int, audit: Audit, docs_paths: tuple[str, ...]) -> None:
        self.app = app
        self.max_body = max_body_bytes
        self.audit = audit
        self.docs_paths = docs_paths

    async def _refuse(self, send, status: int, kind: str, title: str, detail: str, field: str | None) -> None:
        body = problem_bytes(status, kind, title, detail, field)
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/problem+json"), (b"content-length", str(len(body)).encode()),
            *SECURITY_HEADERS, (b"content-security-policy", API_CSP)]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        too_big = f"the request body is larger than {self.max_body // 1024} KiB (REPORT_PIPELINES_API_MAX_BODY_KB)"
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            await self._refuse(send, 413, "body-too-large", "Content Too Large", too_big, "body")
            return
        if method in WRITES or length is not None:
            received = bytearray()
            while True:  # at most max_body bytes are held; the application reads them from here
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                received += message.get("body", b"")
                if len(received) > self.max_body:
                    await self._refuse(send, 413, "body-too-large", "Content Too Large", too_big, "body")
                    return
                if not message.get("more_body", False):
                    break
            replayed = False

            async def replay() -> dict:
                nonlocal replayed
                if not replayed:
                    replayed = True
                    return {"type": "http.request", "body": bytes(received), "more_body": False}
                return await receive()

            receive = replay
        status = {"code": 500}
        docs = scope.get("path", "") in self.docs_paths

        async def guarded_send(message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS,
                                      (b"content-security-policy", DOCS_CSP if docs else API_CSP)]
            await send(message)

        try:
            await self.app(scope, receive, guarded_send)
        finally:
            if method in WRITES:
                state = scope.get("state") or {}
                await anyio.to_thread.run_sync(self.audit, state, method, scope.get("path", ""), status["code"])


def audit_writer(record: Callable[..., None]) -> Audit:
    """The Guard's audit hook over ``record_audit``-like ``record``; never fails the request."""

    def write(state: dict, method: str, path: str, status: int) -> None:
        scope = state.get("scope")
        try:
            record(actor=scope.actor if scope else state.get("actor", "anonymous"), action=f"{method} {path}"[:200],
                   status=status, role=scope.role if scope else None, client_id=scope.client_id if scope else None,
                   detail=state.get("audit_detail"))
        except Exception as exc:  # the answer is given; the failure is logged (without any key)
            log.warning("audit: %s %s not recorded: %s", method, path, str(exc).splitlines()[0][:300])

    return write


AsyncCall = Callable[[], Awaitable[None]]
