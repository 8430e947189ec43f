"""The report e-mail written directly as MIME bytes, read back with the standard library's parser."""

from __future__ import annotations

import datetime as dt
import email
import email.policy

import pytest

from report_pipelines.adapters.mail_format import Attachment, compose

DATE = dt.datetime(2024, 3, 12, 13, 0, tzinfo=dt.UTC)


def parse(data: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)


def test_a_report_email_reads_back_as_written() -> None:
    content = b"queue,offered\r\nsupport,12\n.starts with a dot\n" + bytes(range(256))
    wire = compose(sender="reports@example.com", to=("ops@example.com", "boss@example.com"),
                   subject="Queue performance for São Paulo Contact Centre: 2024-03-11",
                   message_id="<report-file-7@report-pipelines>", date=DATE,
                   text="Queue performance for São Paulo, local days 2024-03-11 (America/Sao_Paulo).\n12 rows, CSV.\n",
                   attachment=Attachment(content, "saopaulo_queue_performance_2024-03-11_2024-03-11.csv", "csv"))
    assert wire.to == ("ops@example.com", "boss@example.com") and wire.sender == "reports@example.com"
    assert b"\r\n" in wire.data and b"\n" not in wire.data.replace(b"\r\n", b"")  # CRLF only
    assert wire.data.isascii()
    too_long = [line for line in wire.data.split(b"\r\n") if len(line) > 78]
    assert too_long == [], too_long
    message = parse(wire.data)
    assert message.defects == [] and all(part.defects == [] for part in message.walk())
    assert message["Subject"] == "Queue performance for São Paulo Contact Centre: 2024-03-11"
    assert message["To"] == "ops@example.com, boss@example.com"
    assert (message["Message-ID"], message["Date"]) == ("<report-file-7@report-pipelines>",
                                                         "Tue, 12 Mar 2024 13:00:00 +0000")
    assert message.get_body(("plain",)).get_content() == (
        "Queue performance for São Paulo, local days 2024-03-11 (America/Sao_Paulo).\n12 rows, CSV.\n")
    [attachment] = list(message.iter_attachments())
    assert attachment.get_content_type() == "text/csv" and attachment.get_param("charset") == "utf-8"
    assert attachment.get_filename() == "saopaulo_queue_performance_2024-03-11_2024-03-11.csv"
    assert attachment.get_payload(decode=True) == content  # byte for byte, every byte value


def test_fifty_recipients_are_folded_between_addresses_and_an_ascii_note_stays_7bit() -> None:
    to = tuple(f"recipient-number-{i:02d}@a-rather-long-domain.example.com" for i in range(50))
    wire = compose(sender="r@example.com", to=to, subject="x", message_id="<1@x>", date=DATE, text="plain\n",
                   attachment=None)
    assert max(len(line) for line in wire.data.split(b"\r\n")) <= 78
    message = parse(wire.data)
    assert [a.addr_spec for a in message["To"].addresses] == list(to)
    assert b"Content-Transfer-Encoding: 7bit\r\n\r\nplain\r\n" in wire.data
    assert list(message.iter_attachments()) == []


@pytest.mark.parametrize("kind", ["xlsx", "parquet", "zip"])
def test_binary_attachments_carry_their_type(kind: str) -> None:
    wire = compose(sender="r@example.com", to=("a@example.com",), subject="s", message_id="<1@x>", date=DATE,
                   text="t\n", attachment=Attachment(b"PK\x03\x04" * 100, f"f.{kind}", kind))
    [attachment] = list(parse(wire.data).iter_attachments())
    assert attachment.get_payload(decode=True) == b"PK\x03\x04" * 100
    assert attachment.get_content_type() == {"xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                                             "parquet": "application/vnd.apache.parquet",
                                             "zip": "application/zip"}[kind]


@pytest.mark.parametrize("field", ["subject", "to", "sender"])
def test_a_line_break_never_reaches_a_header(field: str) -> None:
    values = {"sender": "r@example.com", "to": ("a@example.com",), "subject": "s"}
    values[field] = ("a@example.com\r\nBcc: spy@example.com",) if field == "to" else "x\r\nBcc: spy@example.com"
    with pytest.raises(ValueError, match="control characters"):
        compose(**values, message_id="<1@x>", date=DATE, text="t", attachment=None)
