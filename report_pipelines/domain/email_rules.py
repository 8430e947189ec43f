"""What may go into a scheduled report's e-mail: recipients, subject, attachment file name.

Pure functions. Every value here ends up in a mail header or a file name, so each refusal is about
keeping a user-typed value from becoming something else:

* **Header injection.** A CR or LF in a header value starts a new header (``Bcc: ...``). Such
  characters, and every other control or invisible formatting character (NUL, TAB, DEL, the Unicode
  line/paragraph separators, zero-width and bidi-override characters), are refused anywhere in a
  recipient list or a subject, before anything is stripped or split.
* **Addresses only.** A recipient is a bare address (``name@example.com``): no display names
  (``"Evil" <a@b.com>``), no angle brackets, quotes, parentheses (comments), no group syntax. Each
  is checked by ``email_validator`` without DNS (``check_deliverability=False``), which also refuses
  quoted local parts, IP-literal domains and ``%``/``:`` in domains. The normalized form is returned
  (domain lower-cased, internationalized domains in Unicode as ``email_validator`` gives them).
* **Bounded.** 1 to 50 distinct recipients; duplicates (compared case-insensitively) are dropped,
  keeping the first spelling.
* **Safe file names.** An attachment name is ``[A-Za-z0-9._-]`` only, 1-120 characters, no leading
  dot or hyphen, no ``..``, no path separators, no trailing dot, and not a Windows device name
  (``con``, ``nul``, ``com1``...), so it is safe on every file system and mail client it meets.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

from email_validator import EmailNotValidError, validate_email

from report_pipelines.domain.errors import InvalidInput

MAX_RECIPIENTS = 50
MAX_SUBJECT = 200
MAX_FILE_NAME = 120
_MAX_SHOWN = 60
#: Unicode categories refused in header values: controls, format characters (zero-width, bidi
#: overrides, soft hyphen...), line and paragraph separators, surrogates, private use, unassigned.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})
#: Characters that only make sense in a display name, a comment, a quoted local part or an IP literal.
_NOT_IN_A_BARE_ADDRESS = frozenset('<>"()\\[]')
_SEPARATORS = re.compile(r"[,;\s]+")
_FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*")
_WINDOWS_DEVICES = frozenset(
    {"con", "prn", "aux", "nul", "clock$", "conin$", "conout$"}
    | {f"com{n}" for n in range(10)} | {f"lpt{n}" for n in range(10)}
)


def _show(value: object) -> str:
    """``repr`` of a hostile value, cut short so an error message stays one readable line."""
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 4] + "...'"


def _first_refused_character(value: str) -> str | None:
    for ch in value:
        if unicodedata.category(ch) in _REFUSED_CATEGORIES:
            return ch
    return None


def _refuse_control_characters(value: str, field: str, what: str) -> None:
    bad = _first_refused_character(value)
    if bad is not None:
        raise InvalidInput(
            field,
            f"{_show(value)}: {what} must not contain control or invisible characters "
            f"(found U+{ord(bad):04X}); line breaks in a mail header would let it add headers",
        )


# --- recipients ---------------------------------------------------------------------------------------
def parse_recipients(value: str | Iterable[str], field: str = "recipients") -> tuple[str, ...]:
    """The distinct, normalized recipient addresses in ``value``, in the order given.

    ``value`` is one string with addresses separated by commas, semicolons or spaces, or a list of
    strings with one bare address each (an item holding a separator is refused: it would be two
    addresses or a display name). See the module docstring for what is refused and why.
    """
    if isinstance(value, str):
        _refuse_control_characters(value, field, "a recipient list")
        _refuse_display_syntax(value, field)
        items = [item for item in _SEPARATORS.split(value) if item]
    else:
        try:
            raw = list(value)
        except TypeError:
            raise InvalidInput(field, f"{_show(value)} is not a list of e-mail addresses") from None
        items = []
        for item in raw:
            if not isinstance(item, str):
                raise InvalidInput(field, f"{_show(item)} is not an e-mail address (text expected)")
            _refuse_control_characters(item, field, "an e-mail address")
            item = item.strip()
            if _SEPARATORS.search(item):
                raise InvalidInput(field, f"{_show(item)} holds more than one address or a display name; "
                                          "give one bare address (name@example.com) per item")
            if item:
                items.append(item)
    if not items:
        raise InvalidInput(field, "at least one recipient e-mail address is required")
    if len(items) > 10 * MAX_RECIPIENTS:  # do not even validate an absurd list
        raise InvalidInput(field, f"{len(items)} addresses given; at most {MAX_RECIPIENTS} recipients")

    found: dict[str, str] = {}
    for item in items:
        address = _validate_address(item, field)
        found.setdefault(address.casefold(), address)
    if len(found) > MAX_RECIPIENTS:
        raise InvalidInput(field, f"{len(found)} distinct recipients; at most {MAX_RECIPIENTS}")
    return tuple(found.values())


def _refuse_display_syntax(value: str, field: str) -> None:
    odd = sorted(set(value) & _NOT_IN_A_BARE_ADDRESS)
    if odd:
        raise InvalidInput(field, f"{_show(value)} is not a bare e-mail address (found {''.join(odd)!r}); "
                                  "display names, quotes and comments are not allowed: give name@example.com")


def _validate_address(item: str, field: str) -> str:
    _refuse_display_syntax(item, field)
    try:
        validated = validate_email(item, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidInput(field, f"{_show(item)} is not a valid e-mail address: {exc}") from None
    address = validated.normalized
    _refuse_control_characters(address, field, "an e-mail address")  # normalization must not add any
    return address


# --- subject ------------------------------------------------------------------------------------------
def validate_subject(value: str, field: str = "subject") -> str:
    """A mail subject: 1-200 characters after stripping spaces, no control characters anywhere."""
    if not isinstance(value, str):
        raise InvalidInput(field, f"{_show(value)} is not text")
    _refuse_control_characters(value, field, "a subject")
    subject = value.strip()
    if not subject:
        raise InvalidInput(field, "a subject cannot be empty")
    if len(subject) > MAX_SUBJECT:
        raise InvalidInput(field, f"{len(subject)} characters; at most {MAX_SUBJECT}")
    return subject


# --- the subscriber's own paragraph, and reply-to ------------------------------------------------------
MAX_MESSAGE = 1000
MAX_MESSAGE_LINES = 20


def validate_message(value: str, field: str = "message") -> str:
    """A custom paragraph for the e-mail's body: 1-1000 characters, at most 20 lines.

    It goes in the body only (never a header), escaped in the HTML part; still, a CR and every
    other control or invisible character but a plain line feed is refused, so that nothing typed
    can be taken for a header line or hide text. ``\r\n`` is not accepted either: give ``\n``.
    """
    if not isinstance(value, str):
        raise InvalidInput(field, f"{_show(value)} is not text")
    for line in value.split("\n"):
        _refuse_control_characters(line, field, "a message")
    text = "\n".join(line.rstrip() for line in value.strip().split("\n"))
    if not text:
        raise InvalidInput(field, "a message cannot be empty (leave the option out for none)")
    if len(text) > MAX_MESSAGE:
        raise InvalidInput(field, f"{len(text)} characters; at most {MAX_MESSAGE}")
    if text.count("\n") >= MAX_MESSAGE_LINES:
        raise InvalidInput(field, f"{text.count(chr(10)) + 1} lines; at most {MAX_MESSAGE_LINES}")
    return text


def validate_reply_to(value: str, field: str = "reply_to") -> str:
    """One bare address for the Reply-To header (the rules of :func:`parse_recipients`)."""
    addresses = parse_recipients(value, field)
    if len(addresses) != 1:
        raise InvalidInput(field, f"{len(addresses)} addresses given; a reply-to is one address")
    return addresses[0]


# --- attachment names ---------------------------------------------------------------------------------
def safe_attachment_name(value: str) -> str:
    """Turn e.g. ``f"{slug}_{report}_{start}_{end}.csv"`` into a name :func:`validate_attachment_name` accepts.

    Accents are folded to ASCII (``café`` → ``cafe``), every other character outside
    ``[A-Za-z0-9._-]`` becomes ``_`` (runs collapse), runs of dots become one dot (no ``..``),
    leading dots/hyphens/underscores and trailing dots go, a Windows device name gets a ``_``
    prefix, and a name longer than 120 characters is shortened in its stem, keeping a short
    extension. A value with nothing usable left is refused (``file_name``).
    """
    if not isinstance(value, str):
        raise InvalidInput("file_name", f"{_show(value)} is not text")
    text = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^A-Za-z0-9._-]+", "_", text)
    text = re.sub(r"\.{2,}", ".", text)
    text = re.sub(r"_{2,}", "_", text)
    text = text.lstrip("._-").rstrip(".")
    stem, dot, extension = text.rpartition(".")
    if not dot or not stem or len(extension) > 10:
        stem, dot, extension = text, "", ""
    if not stem.strip("._-"):
        raise InvalidInput("file_name", f"{_show(value)} leaves no usable file name")
    if stem.split(".")[0].lower() in _WINDOWS_DEVICES:
        stem = "_" + stem
    room = MAX_FILE_NAME - len(dot) - len(extension)
    stem = stem[:room].rstrip(".")
    return validate_attachment_name(stem + dot + extension)


def validate_attachment_name(value: str, field: str = "file_name") -> str:
    """Refuse a file name that is not plainly safe (see the module docstring); return it unchanged."""
    if not isinstance(value, str) or not value:
        raise InvalidInput(field, f"{_show(value)}: a file name is required")
    if len(value) > MAX_FILE_NAME:
        raise InvalidInput(field, f"{_show(value)}: {len(value)} characters; at most {MAX_FILE_NAME}")
    if not _FILE_NAME.fullmatch(value):
        raise InvalidInput(field, f"{_show(value)}: only letters, digits, '.', '_' and '-' are allowed, "
                                  "and it cannot start with '.' or '-'")
    if ".." in value or value.endswith("."):
        raise InvalidInput(field, f"{_show(value)}: '..' and a trailing '.' are not allowed")
    if value.split(".")[0].lower() in _WINDOWS_DEVICES:
        raise InvalidInput(field, f"{_show(value)}: a Windows device name cannot be a file name")
    return value


__all__ = [
    "MAX_FILE_NAME",
    "MAX_RECIPIENTS",
    "MAX_MESSAGE",
    "MAX_SUBJECT",
    "parse_recipients",
    "safe_attachment_name",
    "validate_attachment_name",
    "validate_message",
    "validate_reply_to",
    "validate_subject",
]
