"""Recipients, subjects and attachment names of scheduled report e-mails, against hostile input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from report_pipelines.domain.email_rules import (
    MAX_RECIPIENTS,
    parse_recipients,
    safe_attachment_name,
    validate_attachment_name,
    validate_subject,
)
from report_pipelines.domain.errors import InvalidInput


def refused(call, *args, **kwargs) -> InvalidInput:
    with pytest.raises(InvalidInput) as error:
        call(*args, **kwargs)
    return error.value


# --- recipients ---------------------------------------------------------------------------------------
def test_separators_normalization_and_order() -> None:
    got = parse_recipients(" ops@Example.COM, Finance@example.com;boss@example.org\tcfo@example.net  ".replace("\t", " "))
    assert got == ("ops@example.com", "Finance@example.com", "boss@example.org", "cfo@example.net")
    assert parse_recipients(["ops@example.com", " finance@example.com "]) == ("ops@example.com", "finance@example.com")
    assert parse_recipients(("a+reports@sub.example.co.uk",)) == ("a+reports@sub.example.co.uk",)


def test_duplicates_collapse_case_insensitively_keeping_the_first_spelling() -> None:
    assert parse_recipients("Ops@Example.com, ops@example.com; OPS@EXAMPLE.COM x@example.com") == (
        "Ops@example.com", "x@example.com")
    assert parse_recipients(["a@example.com"] * 200) == ("a@example.com",)


def test_at_most_fifty_recipients() -> None:
    fifty = [f"user{n}@example.com" for n in range(MAX_RECIPIENTS)]
    assert len(parse_recipients(fifty)) == 50
    error = refused(parse_recipients, [*fifty, "one.more@example.com"])
    assert error.field == "recipients" and "51" in error.message
    assert refused(parse_recipients, ", ".join(f"u{n}@example.com" for n in range(5000))).field == "recipients"


@pytest.mark.parametrize("value", ["", "   ", " , ;; ", [], ["", "  "]])
def test_at_least_one_recipient(value: object) -> None:
    assert "at least one" in refused(parse_recipients, value).message


HOSTILE = [
    "a@b.com\r\nBcc: evil@x.com",
    "a@b.com\nBcc: evil@x.com",
    "a@b.com\rBcc: evil@x.com",
    "a@b.com\x00evil@x.com",
    "a@b.com\x0bevil@x.com",
    "a@b.com\tevil@x.com",
    "a@b.com\x7f",
    "a@b.com\u2028Bcc: evil@x.com",  # Unicode line separator
    "a@b.com\u0085Bcc: evil@x.com",  # NEL
    "a\u200b@b.com",  # zero-width space
    "moc.live@\u202eevil",  # right-to-left override
    "a@b.com%0aBcc:evil@x.com",
    "a@b.com%0d%0aBcc:evil@x.com",
    "a@b.com Bcc: evil@x.com",  # split on spaces: "Bcc:" is not an address
    '"Evil" <a@b.com>',
    "Evil <a@b.com>",
    "<a@b.com>",
    "a@b.com (comment)",
    '"a b"@example.com',
    "a@[127.0.0.1]",
    "a\\@b.com",
    "a@b",
    "a@localhost",
    "@b.com",
    "a@",
    "a..b@example.com",
    "a@example.com.",
    "a@-example.com",
    "a@exa_mple.com",
    "=cmd|' /C calc'!A0@x.com",
    "x" * 300 + "@example.com",
    "a@" + "b" * 300 + ".com",
    "a@b.com:25",
    "mailto:a@b.com",
]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_recipient_strings_are_refused(value: str) -> None:
    error = refused(parse_recipients, value)
    assert error.field == "recipients"
    assert len(error.message) < 400  # the value is shown repr'd and truncated, on one line
    assert "\n" not in error.message and "\r" not in error.message


@pytest.mark.parametrize("item", [
    "a@b.com,evil@x.com", "a@b.com;evil@x.com", "a@b.com evil@x.com", "a@b.com\r\n", "Evil <a@b.com>",
    '"Evil" <a@b.com>', "a@b.com\x00",
])
def test_one_list_item_is_one_bare_address(item: str) -> None:
    assert refused(parse_recipients, ["ok@example.com", item]).field == "recipients"


@pytest.mark.parametrize("value", [None, 42, [42], [None], ["a@b.com", b"c@d.com"]])
def test_not_text_is_refused(value: object) -> None:
    assert refused(parse_recipients, value).field == "recipients"


def test_the_field_name_is_the_callers() -> None:
    error = refused(parse_recipients, "nope", field="cc")
    assert error.field == "cc" and "'nope'" in error.message


def test_the_offending_value_is_shown_truncated() -> None:
    error = refused(parse_recipients, "a@b.com\r\nBcc: " + "evil@x.com," * 50)
    assert "'a@b.com\\r\\nBcc: " in error.message and "...'" in error.message


def test_internationalized_addresses_as_email_validator_accepts_them() -> None:
    assert parse_recipients("anne@bücher.de") == ("anne@bücher.de",)
    assert parse_recipients("anne@xn--bcher-kva.de") == ("anne@bücher.de",)  # the same address once normalized
    assert parse_recipients("anne@bücher.de anne@xn--bcher-kva.de") == ("anne@bücher.de",)
    # a Cyrillic 'а' homoglyph domain is a valid (different) domain: accepted, as email_validator does
    assert parse_recipients("a@\u0430pple.com") == ("a@\u0430pple.com",)


# --- subject ------------------------------------------------------------------------------------------
def test_subject_is_stripped() -> None:
    assert validate_subject("  Daily calls – Acme (yesterday)  ") == "Daily calls – Acme (yesterday)"
    assert validate_subject("x" * 200) == "x" * 200
    assert validate_subject("Relatório diário: chamadas 📞") == "Relatório diário: chamadas 📞"


@pytest.mark.parametrize("value", [
    "Report\r\nBcc: evil@x.com", "Report\nBcc: evil@x.com", "Report\r", "Report\x00", "Report\tsheet", "\x1b[31mred",
    "Report\u2028Bcc: evil@x.com", "Report\u2029", "Report\u202e", "Report\u200b", "Report\n",
    "", "   ", "x" * 201, None, 42,
])
def test_hostile_or_empty_subjects_are_refused(value: object) -> None:
    error = refused(validate_subject, value)
    assert error.field == "subject"
    assert refused(validate_subject, value, field="title").field == "title"


# --- attachment names ---------------------------------------------------------------------------------
def test_safe_attachment_name_from_slug_report_and_period() -> None:
    assert safe_attachment_name("acme-sales_call_detail_2024-03-01_2024-03-31.csv") == \
        "acme-sales_call_detail_2024-03-01_2024-03-31.csv"
    assert safe_attachment_name("Acme Café — call détail 2024/03.xlsx") == "Acme_Cafe_call_detail_2024_03.xlsx"


@pytest.mark.parametrize(("value", "expected"), [
    ("../../etc/passwd", "etc_passwd"),
    ("..\\..\\windows\\system32\\cmd.exe", "windows_system32_cmd.exe"),
    ("/etc/passwd", "etc_passwd"),
    (".bashrc", "bashrc"),
    ("report..csv", "report.csv"),
    ("report.csv.", "report.csv"),
    ("-rf .csv", "rf_.csv"),
    ("con", "_con"),
    ("CON.csv", "_CON.csv"),
    ("lpt1.xlsx", "_lpt1.xlsx"),
    ("nul.tar.gz", "_nul.tar.gz"),
    ("report\x00.csv", "report_.csv"),
    ("report\r\n.csv", "report_.csv"),
    ("a<b>c:d\"e|f?g*h.csv", "a_b_c_d_e_f_g_h.csv"),
    ("%2e%2e%2fetc", "2e_2e_2fetc"),
])
def test_safe_attachment_name_neutralises_hostile_names(value: str, expected: str) -> None:
    assert safe_attachment_name(value) == expected


def test_safe_attachment_name_keeps_the_extension_when_shortening() -> None:
    name = safe_attachment_name("x" * 300 + ".xlsx")
    assert len(name) == 120 and name.endswith(".xlsx")
    assert len(safe_attachment_name("y" * 500)) == 120


@pytest.mark.parametrize("value", ["", "...", "/", "\x00", "日本語", "._-", None])
def test_safe_attachment_name_refuses_when_nothing_is_left(value: object) -> None:
    assert refused(safe_attachment_name, value).field == "file_name"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_safe_attachment_name_is_always_valid_and_stable(value: str) -> None:
    try:
        name = safe_attachment_name(value)
    except InvalidInput as error:
        assert error.field == "file_name"
        return
    assert validate_attachment_name(name) == name
    assert safe_attachment_name(name) == name
    assert "/" not in name and "\\" not in name and ".." not in name and not name.startswith(".")


@pytest.mark.parametrize("value", [
    "../../etc/passwd", "..", ".", ".hidden.csv", "-rf.csv", "a/b.csv", "a\\b.csv", "report\x00.csv", "report.csv.",
    "a..b.csv", "con", "CON", "con.csv", "Nul.txt", "com1", "LPT9.xlsx", "", "x" * 121, "café.csv", "a b.csv",
    "report.csv\n", "report%00.csv", None,
])
def test_validate_attachment_name_refuses_hostile_names(value: object) -> None:
    assert refused(validate_attachment_name, value).field == "file_name"


@pytest.mark.parametrize("value", ["report.csv", "acme-sales_call_detail_2024-03-01_2024-03-31.xlsx", "_con.csv",
                                   "console.csv", "x" * 120, "a.b.c"])
def test_validate_attachment_name_accepts_plain_names(value: str) -> None:
    assert validate_attachment_name(value) == value
