"""The HTTP API's request and response bodies (pydantic), and how domain objects become them."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

#: Text a user sends: printable (no control characters, which no field accepts), bounded.
Text = Annotated[str, StringConstraints(max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$")]
LongText = Annotated[str, StringConstraints(max_length=2000, pattern=r"^[^\x00-\x1f\x7f]*$")]
Shape = Literal["days", "summary"]
Format = Literal["json", "csv", "parquet", "xlsx"]
Id = Annotated[int, Field(ge=1, le=2_147_483_647)]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Problem(BaseModel):
    """An RFC 9457 problem document: every refusal, and the rare internal error (without internals)."""

    type: str
    title: str
    status: int
    detail: str
    field: str | None = None
    instance: str | None = None


class Money(BaseModel):
    amount: str  # exact decimal, as text
    currency: str


def money(value) -> Money:
    return Money(amount=str(value.amount), currency=value.currency)


class KeyInfo(BaseModel):
    prefix: str
    role: str
    client: str | None


class ClientOut(BaseModel):
    id: int
    slug: str
    name: str
    timezone: str
    active_from: dt.date


def client_out(record) -> ClientOut:
    return ClientOut(id=record.id, slug=record.slug, name=record.name, timezone=record.timezone,
                     active_from=record.active_from)


class Column(BaseModel):
    name: str
    type: str


class ReportOut(BaseModel):
    name: str
    title: str
    description: str
    columns: list[Column]  # shape=days (plus client and date)
    summary_columns: list[Column]  # the period's columns before presentation (shape=summary)


def report_out(definition) -> ReportOut:
    def columns(schema) -> list[Column]:
        return [Column(name=f.name, type=str(f.type)) for f in schema]

    return ReportOut(name=definition.name, title=definition.title, description=definition.description,
                     columns=columns(definition.schema), summary_columns=columns(definition.period_schema))


class ExtractionIn(_In):
    report: Text
    client: Text | None = None
    start: dt.date = Field(alias="from")
    end: dt.date = Field(alias="to")
    shape: Shape = "days"
    format: Format = "csv"

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class ExtractionOut(BaseModel):
    id: str
    state: Literal["running", "done", "failed"]
    report: str
    client: int
    start: dt.date
    end: dt.date
    shape: str
    format: str
    days_done: int
    days_total: int
    rows: int | None
    bytes: int | None
    error: str | None
    created_at: dt.datetime
    finished_at: dt.datetime | None
    expires_at: dt.datetime | None
    result: str | None  # the file's URL once done


def extraction_out(found) -> ExtractionOut:
    return ExtractionOut(
        id=found.id, state=found.state, report=found.report, client=found.client_id, start=found.period_start,
        end=found.period_end, shape=found.shape, format=found.format, days_done=found.days_done,
        days_total=found.days_total, rows=found.rows, bytes=found.bytes, error=found.error,
        created_at=found.created_at, finished_at=found.finished_at, expires_at=found.expires_at,
        result=f"/v1/extractions/{found.id}/result" if found.state == "done" else None)


Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


class ScheduleFields(_In):
    report: Text | None = None
    period: Text | None = None
    period_days: Annotated[int, Field(ge=1, le=3660)] | None = None
    frequency: Text | None = None
    send_time: Text | None = None
    weekdays: Annotated[list[Weekday], Field(max_length=7)] | None = None
    month_day: Annotated[int, Field(ge=1, le=31)] | None = None
    timezone: Text | None = None
    recipients: Annotated[list[Text], Field(max_length=50)] | None = None
    subject: Text | None = None
    format: Literal["csv", "xlsx", "parquet", "pdf"] | None = None
    body: Literal["summary", "table", "none"] | None = None
    no_calls: Literal["send", "skip", "notice"] | None = None
    message: LongText | None = None
    reply_to: Text | None = None
    condition: LongText | None = None

    def changes(self) -> dict:
        values = self.model_dump(exclude_unset=True, exclude_none=True)
        if "format" in values:
            values["fmt"] = values.pop("format")
        return values


class ScheduleIn(ScheduleFields):
    client: Text | None = None
    kind: Literal["report", "alert"] | None = None
    report: Text
    recipients: Annotated[list[Text], Field(min_length=1, max_length=50)]


class PauseIn(_In):
    reason: Text | None = None


class ScheduleOut(BaseModel):
    id: int
    client: str
    report: str
    period: str
    period_days: int | None
    frequency: str
    weekdays: list[int]
    month_day: int | None
    send_time: str
    timezone: str
    recipients: list[str]
    subject: str | None
    format: str
    kind: str
    body: str
    no_calls: str
    message: str | None
    reply_to: str | None
    condition: str | None
    active: bool
    paused_reason: str | None
    next_send_at: dt.datetime | None


def schedule_out(row) -> ScheduleOut:
    return ScheduleOut(id=row.id, client=row.client_slug, report=row.report, period=row.period,
                       period_days=row.period_days, frequency=row.frequency, weekdays=list(row.weekdays),
                       month_day=row.month_day, send_time=row.send_time, timezone=row.timezone,
                       recipients=list(row.recipients), subject=row.subject, format=row.format, kind=row.kind,
                       body=row.body, no_calls=row.no_calls, message=row.message, reply_to=row.reply_to,
                       condition=row.condition, active=row.active,
                       paused_reason=row.paused_reason, next_send_at=row.next_send_at)


class RecipientOut(BaseModel):
    address: str
    state: str
    attempts: int
    last_reply: str | None


class FileOut(BaseModel):
    id: int
    schedule_id: int
    occurrence: dt.datetime
    period_start: dt.date | None
    period_end: dt.date | None
    format: str
    state: str
    rows: int | None
    bytes: int | None
    attempts: int
    build_attempts: int
    last_error: str | None
    next_attempt_at: dt.datetime | None
    sent_at: dt.datetime | None
    recipients: list[RecipientOut]


def file_out(file, recipients) -> FileOut:
    return FileOut(id=file.id, schedule_id=file.schedule_id, occurrence=file.occurrence,
                   period_start=file.period_start, period_end=file.period_end, format=file.format, state=file.state,
                   rows=file.rows, bytes=file.bytes, attempts=file.attempts, build_attempts=file.build_attempts,
                   last_error=file.last_error, next_attempt_at=file.next_attempt_at, sent_at=file.sent_at,
                   recipients=[RecipientOut(address=r.address, state=r.state, attempts=r.attempts,
                                            last_reply=r.last_reply) for r in recipients])


class Deleted(BaseModel):
    deleted: int
    files_removed: int


class LicenceOut(BaseModel):
    product: str
    quantity: int
    unit_price: Money
    discount: Money
    line_total: Money
    valid_from: dt.date
    valid_to: dt.date | None
    trial: bool
    active_today: bool


class LicencesOut(BaseModel):
    client: str
    licences: list[LicenceOut]


def licences_out(record, held) -> LicencesOut:
    return LicencesOut(client=record.slug, licences=[LicenceOut(
        product=h.licence.product_code, quantity=h.licence.quantity, unit_price=money(h.licence.unit_price),
        discount=money(h.licence.discount), line_total=money(h.licence.line_total), valid_from=h.licence.valid_from,
        valid_to=h.licence.valid_to, trial=h.licence.trial, active_today=h.active_today) for h in held])


class ProductOut(BaseModel):
    code: str
    name: str
    unit: str
    list_price: Money


class PolicyOut(BaseModel):
    code: str
    name: str
    description: str
    products: list[str]  # empty: every product
    valid_from: dt.date
    valid_to: dt.date | None
    min_quantity: int | None
    stackable: bool


def policy_out(policy) -> PolicyOut:
    return PolicyOut(code=policy.code, name=policy.name, description=policy.describe(),
                     products=sorted(policy.products), valid_from=policy.valid_from, valid_to=policy.valid_to,
                     min_quantity=policy.min_quantity, stackable=policy.stackable)


class CatalogueOut(BaseModel):
    products: list[ProductOut]
    policies: list[PolicyOut]


def catalogue_out(view) -> CatalogueOut:
    return CatalogueOut(
        products=[ProductOut(code=p.code, name=p.name, unit=p.unit.value, list_price=money(p.list_price))
                  for p in view.products],
        policies=[policy_out(p) for p in view.policies])


class ItemIn(_In):
    product: Text
    quantity: Annotated[int, Field(ge=1, le=1_000_000)]


class ProspectIn(_In):
    name: Text
    email: Text
    timezone: Text
    slug: Text


class ProposalIn(_In):
    client: Text | None = None
    prospect: ProspectIn | None = None
    items: Annotated[list[ItemIn], Field(min_length=1, max_length=50)]
    valid_until: dt.date
    policy: Text | None = None
    term_days: Annotated[int, Field(ge=1, le=3660)] | None = None


class RejectIn(_In):
    reason: LongText


class LineOut(BaseModel):
    product: str
    quantity: int
    unit_price: Money
    list_total: Money
    discount: Money
    line_total: Money
    policies: list[str]


class TransitionOut(BaseModel):
    action: str
    to_status: str
    by: str
    at: dt.datetime
    note: str | None


class ProposalOut(BaseModel):
    id: int
    status: str
    client: str | None
    prospect: str | None
    valid_until: dt.date
    term_days: int | None
    lines: list[LineOut]
    subtotal: Money
    discount: Money
    total: Money
    explanation: str
    transitions: list[TransitionOut]
    applied: bool


def proposal_out(stored) -> ProposalOut:
    p = stored.proposal
    priced = p.priced
    return ProposalOut(
        id=stored.id, status=p.status.value, client=p.client_slug,
        prospect=p.prospect.name if p.prospect is not None else None, valid_until=p.valid_until,
        term_days=stored.term_days,
        lines=[LineOut(product=line.product.code, quantity=line.quantity, unit_price=money(line.unit_price),
                       list_total=money(line.list_total), discount=money(line.discount),
                       line_total=money(line.line_total), policies=list(line.applied)) for line in priced.lines],
        subtotal=money(priced.subtotal), discount=money(priced.discount), total=money(priced.total),
        explanation=priced.explanation,
        transitions=[TransitionOut(action=t.action, to_status=t.to_status.value, by=t.by, at=t.at, note=t.note)
                     for t in p.transitions],
        applied=stored.applied_at is not None)


class TrialIn(_In):
    slug: Text
    name: Text
    timezone: Text
    days: Annotated[int, Field(ge=1, le=90)] = 14
    products: Annotated[list[Text], Field(max_length=20)] | None = None


class Health(BaseModel):
    status: Literal["ok"]
