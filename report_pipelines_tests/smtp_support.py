"""A real SMTP server in-process (aiosmtpd) that can be down, slow, refuse recipients (550) or defer
them (450), or take a message and drop the connection before answering it.

It speaks STARTTLS with a self-signed certificate made by ``openssl`` and requires a login after it,
so the mailer's TLS and authentication paths are exercised for real.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import ssl
import subprocess
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

USER, PASSWORD = "reports", "s3cret"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def self_signed(folder: Path) -> tuple[Path, Path]:
    cert, key = folder / "smtp.crt", folder / "smtp.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60)
    return cert, key


@dataclass
class Behaviour:
    refuse: set[str] = field(default_factory=set)  # addresses answered with 550
    busy: set[str] = field(default_factory=set)  # addresses answered with 450
    delay_s: float = 0.0  # before answering DATA
    drop_after_data: int = 0  # the next N messages are received, then the connection is dropped unanswered


class Inbox:
    """What the server received."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], EmailMessage]] = []
        self.sessions: set[int] = set()  # the SMTP connections that delivered something
        self.lock = threading.Lock()

    def add(self, recipients: list[str], data: bytes, session: object = None) -> None:
        with self.lock:
            self.messages.append((recipients, email.message_from_bytes(data, policy=email.policy.default)))
            self.sessions.add(id(session))

    def __len__(self) -> int:
        return len(self.messages)


class _Handler:
    def __init__(self, inbox: Inbox, behaviour: Behaviour) -> None:
        self.inbox, self.behaviour = inbox, behaviour

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.behaviour.refuse:
            return "550 5.1.1 mailbox unavailable"
        if address in self.behaviour.busy:
            return "450 4.2.1 mailbox busy, try later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.behaviour.delay_s:
            await asyncio.sleep(self.behaviour.delay_s)
        self.inbox.add(list(envelope.rcpt_tos), envelope.content, session)
        if self.behaviour.drop_after_data > 0:  # taken for delivery, but the reply never leaves
            self.behaviour.drop_after_data -= 1
            server.transport.abort()
            return "421 4.4.2 closing (never seen by the client)"
        return "250 Message accepted"


def _authenticate(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and auth_data.login == USER.encode() and auth_data.password == PASSWORD.encode()
    return AuthResult(success=ok, handled=False)  # handled=False: the server answers 535 itself


class SmtpServer:
    def __init__(self, folder: Path) -> None:
        self.cert, key = self_signed(folder)
        self.tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.tls.load_cert_chain(self.cert, key)
        self.inbox = Inbox()
        self.behaviour = Behaviour()
        self.port = free_port()
        self.controller: Controller | None = None

    def start(self) -> SmtpServer:
        self.controller = Controller(
            _Handler(self.inbox, self.behaviour), hostname="127.0.0.1", port=self.port, tls_context=self.tls,
            require_starttls=True, authenticator=_authenticate, auth_require_tls=True, ready_timeout=10)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None
