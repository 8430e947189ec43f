"""Sending e-mail: SMTP (STARTTLS and login when configured) or a local outbox of ``.eml`` files.

Both take a message (an :class:`OutgoingMessage`, bytes ready for the wire, or an
``email.message.EmailMessage``) and the envelope recipients to send it to, and answer with a
:class:`Delivery` that says, **per recipient**, what the server did:

* ``accepted``: the server took it for that recipient (2xx);
* ``deferred``: a temporary refusal (4xx: greylisting, mailbox busy): try that recipient again later;
* ``refused``: a permanent refusal (5xx: no such mailbox): never retried.

A failure of the whole message raises :class:`TemporaryMailError` (server down, slow or gone
mid-message; ``relay_down`` when even connecting failed, so the caller can stop its batch) or
:class:`PermanentMailError` (bad login, a 5xx to the sender address). ``after_data`` on a temporary
error says the message body had been sent when the connection failed: the server may have accepted
it without our hearing the reply, the one case SMTP cannot tell (a resend then duplicates it, with
the same Message-ID).

A sender that must not send a message it no longer owns passes ``before_data``: it is called right
before the ``DATA`` command, after the recipients were accepted, and raises :class:`Cancelled` to
stop (the transaction is reset, nothing is delivered). ``finish_by`` (a ``time.monotonic()``
instant) bounds the message: every socket operation waits at most what is left of it.
"""

from __future__ import annotations

import abc
import contextlib
import os
import re
import smtplib
import ssl
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from email.message import Message
from email.utils import getaddresses
from pathlib import Path
from typing import Protocol

#: A connection idle for longer than this is checked with NOOP before it is reused.
NOOP_AFTER_IDLE_S = 5.0


class MailError(Exception):
    pass


class TemporaryMailError(MailError):
    """Worth retrying later."""

    def __init__(self, message: str, *, relay_down: bool = False, after_data: bool = False,
                 refused: dict[str, str] | None = None, deferred: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.relay_down = relay_down  # connecting (or logging in) failed: the relay, not this message
        self.after_data = after_data  # the body was sent: the server may have accepted it
        # what the server had already answered for some recipients (RCPT) before the failure
        self.refused, self.deferred = refused or {}, deferred or {}


class PermanentMailError(MailError):
    """Retrying will not help."""

    def __init__(self, message: str, *, relay_down: bool = False) -> None:
        super().__init__(message)
        self.relay_down = relay_down


class Cancelled(MailError):
    """Raised by a ``before_data`` callback: do not send this message (nothing was delivered)."""


@dataclass(frozen=True)
class OutgoingMessage:
    """A complete message (RFC 5322 bytes, CRLF line ends) with what the envelope needs."""

    message_id: str
    sender: str
    to: tuple[str, ...]  # the header's recipients, the default envelope
    data: bytes


@dataclass(frozen=True)
class Delivery:
    accepted: tuple[str, ...]
    refused: dict[str, str] = field(default_factory=dict)  # 5xx: address -> server's reply
    deferred: dict[str, str] = field(default_factory=dict)  # 4xx: address -> server's reply
    reply: str = ""  # the server's answer to the message itself (after DATA)


class Send(Protocol):
    def __call__(self, message: OutgoingMessage | Message, recipients: Sequence[str] | None = None, *,
                 before_data: Callable[[], None] | None = None, finish_by: float | None = None) -> Delivery: ...


def recipients_of(message: Message) -> list[str]:
    return [address for _, address in getaddresses(message.get_all("To", []) + message.get_all("Cc", []))]


def outgoing(message: OutgoingMessage | Message) -> OutgoingMessage:
    """An ``EmailMessage`` as an :class:`OutgoingMessage` (an ``OutgoingMessage`` as it is)."""
    if isinstance(message, OutgoingMessage):
        return message
    sender = getaddresses([message.get("From", "")])[0][1]
    data = message.as_bytes(policy=message.policy.clone(linesep="\r\n"))
    return OutgoingMessage(message.get("Message-ID") or "", sender, tuple(recipients_of(message)), data)


class Mailer(abc.ABC):
    #: The longest one socket operation may wait; a sender plans its leases and deadline with it.
    timeout_s: float = 30.0

    @abc.abstractmethod
    def session(self) -> contextlib.AbstractContextManager[Send]:
        """A ``send`` for many messages in a row (SMTP keeps one connection open for them)."""

    def send(self, message: OutgoingMessage | Message, recipients: Sequence[str] | None = None) -> Delivery:
        with self.session() as send:
            return send(message, recipients)


class SmtpMailer(Mailer):
    def __init__(self, host: str, port: int = 587, *, username: str | None = None, password: str | None = None,
                 starttls: bool = True, timeout_s: float = 30.0, cafile: str | None = None,
                 local_hostname: str | None = None) -> None:
        self.host, self.port = host, port
        self.username, self.password = username, password
        self.starttls, self.timeout_s = starttls, timeout_s
        self.cafile = cafile  # a private CA for the server's certificate; the system's CAs otherwise
        self.local_hostname = local_hostname  # the EHLO name (default: this host's FQDN)

    @contextlib.contextmanager
    def session(self) -> Iterator[Send]:
        """One connection (STARTTLS and login once) for many messages: opened on the first message,
        checked with NOOP only when it was idle for a while (and reopened if the server dropped it),
        closed at the end. A message interrupted mid-way is never resent here: it fails as
        temporary, and its retry carries the same Message-ID. A connection found closed before a
        message started (at ``MAIL FROM``) is reopened once for that message: nothing was sent."""
        connection: list[smtplib.SMTP] = []
        last_used = [0.0]

        def send(message: OutgoingMessage | Message, recipients: Sequence[str] | None = None, *,
                 before_data: Callable[[], None] | None = None, finish_by: float | None = None) -> Delivery:
            wire = outgoing(message)
            targets = list(wire.to if recipients is None else recipients)
            if connection and time.monotonic() - last_used[0] > NOOP_AFTER_IDLE_S and not _alive(connection[0]):
                _close(connection)
            while True:
                fresh = not connection
                if fresh:
                    connection.append(self._connect(finish_by))
                try:
                    delivery = self._deliver(connection[0], wire, targets, before_data, finish_by)
                    last_used[0] = time.monotonic()
                    return delivery
                except _ClosedBeforeStart as exc:
                    _close(connection)
                    if fresh:  # a reused connection gets one fresh try; a fresh one does not
                        raise TemporaryMailError(f"SMTP {self.host}:{self.port} closed the connection: {exc}") from exc
                except (TemporaryMailError, PermanentMailError, Cancelled):
                    _close(connection)  # the connection's state is unknown: start afresh next time
                    raise

        try:
            yield send
        finally:
            _close(connection, quit=True)

    def _connect(self, finish_by: float | None) -> smtplib.SMTP:
        timeout = _remaining(self.timeout_s, finish_by)
        try:
            smtp = smtplib.SMTP(self.host, self.port, timeout=timeout, local_hostname=self.local_hostname)
            try:
                smtp.ehlo()
                if self.starttls:
                    smtp.starttls(context=ssl.create_default_context(cafile=self.cafile))
                    smtp.ehlo()
                if self.username:
                    self._login(smtp)
            except BaseException:
                smtp.close()
                raise
            return smtp
        except smtplib.SMTPServerDisconnected as exc:
            raise TemporaryMailError(f"SMTP {self.host}:{self.port} unreachable or failed: {exc}", relay_down=True) from exc
        except smtplib.SMTPAuthenticationError as exc:
            raise PermanentMailError(f"SMTP login refused: {exc.smtp_code} {exc.smtp_error!r}", relay_down=True) from exc
        except smtplib.SMTPNotSupportedError as exc:
            raise PermanentMailError(f"SMTP server does not support what is configured: {exc}", relay_down=True) from exc
        except smtplib.SMTPResponseException as exc:
            if 400 <= exc.smtp_code < 500:
                raise TemporaryMailError(f"SMTP {exc.smtp_code}: {_text(exc.smtp_error)}", relay_down=True) from exc
            raise PermanentMailError(f"SMTP {exc.smtp_code}: {_text(exc.smtp_error)}", relay_down=True) from exc
        except (smtplib.SMTPException, OSError, ssl.SSLError) as exc:
            raise TemporaryMailError(f"SMTP {self.host}:{self.port} unreachable or failed: {exc}", relay_down=True) from exc

    def _deliver(self, smtp: smtplib.SMTP, wire: OutgoingMessage, targets: list[str],
                 before_data: Callable[[], None] | None, finish_by: float | None) -> Delivery:
        def arm() -> None:
            if smtp.sock is not None:
                smtp.sock.settimeout(_remaining(self.timeout_s, finish_by))

        where = "before"
        refused: dict[str, str] = {}
        deferred: dict[str, str] = {}
        try:
            arm()
            envelope = [_envelope(a) for a in targets]
            options = ["SMTPUTF8"] if not all(a.isascii() for a in [wire.sender, *envelope]) else []
            if options and not smtp.has_extn("smtputf8"):
                options = []  # non-ASCII mailboxes are refused one by one below
            try:
                code, text = smtp.mail(_envelope(wire.sender), options)
            except smtplib.SMTPServerDisconnected as exc:
                raise _ClosedBeforeStart(str(exc)) from exc
            if code != 250:
                _reset(smtp)
                if 400 <= code < 500:
                    raise TemporaryMailError(f"SMTP {code} to MAIL FROM: {_text(text)}")
                raise PermanentMailError(f"SMTP {code} to MAIL FROM: {_text(text)}")
            where = "during"
            accepted: list[str] = []
            for address, wire_address in zip(targets, envelope, strict=True):
                if not wire_address.isascii() and not options:
                    refused[address] = "553 5.6.7 (not sent) a non-ASCII mailbox needs SMTPUTF8, which the server lacks"
                    continue
                arm()
                code, text = smtp.rcpt(wire_address)
                reply = f"{code} {_text(text)}"
                if code in (250, 251):
                    accepted.append(address)
                elif 400 <= code < 500:
                    deferred[address] = reply
                else:
                    refused[address] = reply
            if not accepted:
                _reset(smtp)
                return Delivery((), refused, deferred, "no recipient accepted; DATA not sent")
            if before_data is not None:
                try:
                    before_data()
                except Cancelled:
                    _reset(smtp)
                    raise
            arm()
            smtp.putcmd("data")
            code, text = smtp.getreply()
            if code != 354:
                _reset(smtp)
                return _refused_message(accepted, refused, deferred, f"{code} {_text(text)} (to DATA)")
            body = smtplib._quote_periods(wire.data)
            if body[-2:] != b"\r\n":
                body += b"\r\n"
            arm()
            smtp.send(body + b".\r\n")
            where = "after"  # the final dot is out: from here on the server may have accepted it
            code, text = smtp.getreply()
        except (TemporaryMailError, PermanentMailError, Cancelled, _ClosedBeforeStart):
            raise
        except (smtplib.SMTPException, OSError) as exc:
            raise TemporaryMailError(f"SMTP {self.host}:{self.port} failed {where} the message: {exc}",
                                     after_data=where == "after", refused=refused, deferred=deferred) from exc
        reply = f"{code} {_text(text)}"
        if code != 250:
            return _refused_message(accepted, refused, deferred, reply)
        return Delivery(tuple(accepted), refused, deferred, reply)

    def _login(self, smtp: smtplib.SMTP) -> None:
        """Log in with one mechanism (PLAIN, else LOGIN): ``smtplib.login`` would try the next one
        after a refusal, and some servers never answer that second try, turning a wrong password
        into a time-out that looks temporary."""
        smtp.user, smtp.password = self.username or "", self.password or ""
        offered = smtp.esmtp_features.get("auth", "").upper().split()
        if "PLAIN" in offered:
            smtp.auth("PLAIN", smtp.auth_plain)
        elif "LOGIN" in offered:
            smtp.auth("LOGIN", smtp.auth_login, initial_response_ok=False)
        else:
            smtp.login(smtp.user, smtp.password)


class _ClosedBeforeStart(Exception):
    """The server had closed a reused connection before this message began."""


def _refused_message(accepted: list[str], refused: dict[str, str], deferred: dict[str, str], reply: str) -> Delivery:
    """The server refused the message itself (DATA): every recipient it had accepted shares the answer."""
    code = int(reply[:3]) if reply[:3].isdigit() else 451
    target = deferred if 400 <= code < 500 else refused
    target.update(dict.fromkeys(accepted, reply))
    return Delivery((), refused, deferred, reply)


def _remaining(timeout_s: float, finish_by: float | None) -> float:
    if finish_by is None:
        return timeout_s
    left = finish_by - time.monotonic()
    if left <= 0:
        raise TemporaryMailError("the send deadline passed before the message could be sent")
    return min(timeout_s, left)


def _envelope(address: str) -> str:
    """An address for the SMTP envelope: an internationalised domain in its ASCII (IDNA) form."""
    local, at, domain = address.rpartition("@")
    if not at or domain.isascii():
        return address
    try:
        return f"{local}@{domain.encode('idna').decode('ascii')}"
    except UnicodeError:
        return address


def _text(value: object) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def _reset(smtp: smtplib.SMTP) -> None:
    with contextlib.suppress(smtplib.SMTPException, OSError):
        smtp.rset()


def _alive(smtp: smtplib.SMTP) -> bool:
    try:
        return smtp.noop()[0] == 250
    except (smtplib.SMTPException, OSError):
        return False


def _close(connection: list[smtplib.SMTP], quit: bool = False) -> None:
    while connection:
        smtp = connection.pop()
        try:
            if quit:
                smtp.quit()
            else:
                smtp.close()
        except (smtplib.SMTPException, OSError):
            smtp.close()


class OutboxMailer(Mailer):
    """The embedded default: each message becomes ``<outbox>/<message id>.eml`` (written atomically).

    The file name comes from the Message-ID, so a resend of the same file replaces the same ``.eml``
    instead of adding a second one.
    """

    timeout_s = 10.0

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    @contextlib.contextmanager
    def session(self) -> Iterator[Send]:
        def send(message: OutgoingMessage | Message, recipients: Sequence[str] | None = None, *,
                 before_data: Callable[[], None] | None = None, finish_by: float | None = None) -> Delivery:
            wire = outgoing(message)
            if before_data is not None:
                before_data()
            self.folder.mkdir(parents=True, exist_ok=True)
            message_id = wire.message_id or f"<{uuid.uuid4().hex}@outbox>"
            name = re.sub(r"[^A-Za-z0-9._-]", "_", message_id.strip("<>"))[:150] + ".eml"
            final = self.folder / name
            temporary = self.folder / f".{name}.{uuid.uuid4().hex}.tmp"
            try:
                temporary.write_bytes(wire.data)
                os.replace(temporary, final)
            except OSError as exc:
                temporary.unlink(missing_ok=True)
                raise TemporaryMailError(f"cannot write to the outbox {self.folder}: {exc}") from exc
            return Delivery(accepted=tuple(wire.to if recipients is None else recipients), reply="written to the outbox")

        yield send


def mailer_from_settings(settings, local_hostname: str | None = None) -> Mailer:
    """SMTP when ``REPORT_PIPELINES_SMTP_HOST`` is set, else the local outbox."""
    mail = settings.mail
    if not mail.smtp_host:
        return OutboxMailer(settings.outbox_dir)
    return SmtpMailer(mail.smtp_host, mail.smtp_port, username=mail.smtp_user, password=mail.smtp_password,
                      starttls=mail.smtp_starttls, cafile=mail.smtp_cafile, timeout_s=mail.smtp_timeout_s,
                      local_hostname=local_hostname)


__all__ = [
    "Cancelled",
    "Delivery",
    "Mailer",
    "MailError",
    "OutboxMailer",
    "OutgoingMessage",
    "PermanentMailError",
    "SmtpMailer",
    "TemporaryMailError",
    "mailer_from_settings",
    "outgoing",
    "recipients_of",
]
