"""Sending e-mail: SMTP (STARTTLS and login when configured) or a local outbox of ``.eml`` files.

Both take a complete ``email.message.EmailMessage`` and either deliver it or raise one of two
errors, which is all the sender needs to decide between retrying and giving up:

* :class:`TemporaryMailError`: try again later (server down or slow, 4xx replies, connection lost);
* :class:`PermanentMailError`: it will never work as it is (5xx for every recipient, bad login).

A message refused for *some* recipients is delivered to the others; the refusals come back in
:class:`Delivery` so they can be recorded.
"""

from __future__ import annotations

import abc
import contextlib
import os
import re
import smtplib
import socket
import ssl
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import getaddresses
from pathlib import Path


class MailError(Exception):
    pass


class TemporaryMailError(MailError):
    """Worth retrying later."""


class PermanentMailError(MailError):
    """Retrying will not help."""


@dataclass(frozen=True)
class Delivery:
    accepted: tuple[str, ...]
    refused: dict[str, str] = field(default_factory=dict)  # address -> server's reply


def recipients_of(message: EmailMessage) -> list[str]:
    return [address for _, address in getaddresses(message.get_all("To", []) + message.get_all("Cc", []))]


class Mailer(abc.ABC):
    @abc.abstractmethod
    def send(self, message: EmailMessage) -> Delivery: ...

    @contextlib.contextmanager
    def session(self) -> Iterator[Callable[[EmailMessage], Delivery]]:
        """A ``send`` for many messages in a row (SMTP keeps one connection open for them)."""
        yield self.send


class SmtpMailer(Mailer):
    def __init__(self, host: str, port: int = 587, *, username: str | None = None, password: str | None = None,
                 starttls: bool = True, timeout_s: float = 30.0, cafile: str | None = None) -> None:
        self.host, self.port = host, port
        self.username, self.password = username, password
        self.starttls, self.timeout_s = starttls, timeout_s
        self.cafile = cafile  # a private CA for the server's certificate; the system's CAs otherwise

    def send(self, message: EmailMessage) -> Delivery:
        with self.session() as send:
            return send(message)

    @contextlib.contextmanager
    def session(self) -> Iterator[Callable[[EmailMessage], Delivery]]:
        """One connection (STARTTLS and login once) for many messages; opened on the first message,
        checked with NOOP before each reuse (reopened if the server dropped it while idle), closed at
        the end. A message interrupted mid-way is never resent here: it fails as temporary, and its
        retry carries the same Message-ID."""
        connection: list[smtplib.SMTP] = []

        def send(message: EmailMessage) -> Delivery:
            if connection and not _alive(connection[0]):
                _close(connection)
            try:
                if not connection:
                    connection.append(self._connect())
                return self._deliver(connection[0], message)
            except smtplib.SMTPServerDisconnected as exc:
                _close(connection)
                raise TemporaryMailError(f"SMTP {self.host}:{self.port} closed the connection: {exc}") from exc
            except TemporaryMailError:
                _close(connection)  # the connection's state is unknown: start afresh next time
                raise

        try:
            yield send
        finally:
            _close(connection, quit=True)

    def _connect(self) -> smtplib.SMTP:
        try:
            smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout_s)
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
            raise TemporaryMailError(f"SMTP {self.host}:{self.port} unreachable or failed: {exc}") from exc
        except smtplib.SMTPException as exc:
            raise _mapped(exc, self.host, self.port) from exc
        except (OSError, socket.timeout) as exc:
            raise TemporaryMailError(f"SMTP {self.host}:{self.port} unreachable or failed: {exc}") from exc

    def _deliver(self, smtp: smtplib.SMTP, message: EmailMessage) -> Delivery:
        recipients = recipients_of(message)
        try:
            refused = smtp.send_message(message, to_addrs=recipients)
        except smtplib.SMTPServerDisconnected:
            raise
        except smtplib.SMTPException as exc:
            raise _mapped(exc, self.host, self.port) from exc
        except (OSError, socket.timeout) as exc:
            raise TemporaryMailError(f"SMTP {self.host}:{self.port} unreachable or failed: {exc}") from exc
        replies = {addr: f"{code} {text.decode(errors='replace')}" for addr, (code, text) in refused.items()}
        return Delivery(accepted=tuple(r for r in recipients if r not in refused), refused=replies)

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


def _mapped(exc: smtplib.SMTPException, host: str, port: int) -> MailError:
    """An SMTP error as temporary (worth retrying) or permanent."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):  # every recipient refused
        replies = {addr: f"{code} {text.decode(errors='replace')}" for addr, (code, text) in exc.recipients.items()}
        if any(400 <= code < 500 for code, _ in exc.recipients.values()):
            return TemporaryMailError(f"recipients refused for now: {replies}")
        return PermanentMailError(f"every recipient refused: {replies}")
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return PermanentMailError(f"SMTP login refused: {exc.smtp_code} {exc.smtp_error!r}")
    if isinstance(exc, smtplib.SMTPResponseException):
        text = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        if 400 <= exc.smtp_code < 500:
            return TemporaryMailError(f"SMTP {exc.smtp_code}: {text}")
        return PermanentMailError(f"SMTP {exc.smtp_code}: {text}")
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return PermanentMailError(f"SMTP server does not support what is configured: {exc}")
    return TemporaryMailError(f"SMTP {host}:{port} unreachable or failed: {exc}")


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

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def send(self, message: EmailMessage) -> Delivery:
        self.folder.mkdir(parents=True, exist_ok=True)
        message_id = message.get("Message-ID") or f"<{uuid.uuid4().hex}@outbox>"
        name = re.sub(r"[^A-Za-z0-9._-]", "_", message_id.strip("<>"))[:150] + ".eml"
        final = self.folder / name
        temporary = self.folder / f".{name}.{uuid.uuid4().hex}.tmp"
        try:
            temporary.write_bytes(message.as_bytes())
            os.replace(temporary, final)
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            raise TemporaryMailError(f"cannot write to the outbox {self.folder}: {exc}") from exc
        return Delivery(accepted=tuple(recipients_of(message)))


def mailer_from_settings(settings) -> Mailer:  # noqa: ANN001 - report_pipelines.settings.Settings
    """SMTP when ``REPORT_PIPELINES_SMTP_HOST`` is set, else the local outbox."""
    mail = settings.mail
    if not mail.smtp_host:
        return OutboxMailer(settings.outbox_dir)
    return SmtpMailer(mail.smtp_host, mail.smtp_port, username=mail.smtp_user, password=mail.smtp_password,
                      starttls=mail.smtp_starttls, cafile=mail.smtp_cafile)
