"""The app database, as SQLAlchemy 2.0 typed models. Every change here comes with a migration."""

from __future__ import annotations

import builtins
import datetime as dt
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from report_pipelines.adapters.db.types import ExactDecimal, UTCDateTime
from report_pipelines.domain.calls import DIRECTIONS, DISPOSITIONS, MAX_TEXT

# Named constraints, so that migrations can refer to them on every backend.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only autoincrements INTEGER PRIMARY KEY; PostgreSQL gets a BIGINT identity.
BigId = BigInteger().with_variant(Integer(), "sqlite")
#: A PBX's call id: an opaque identifier, compared and ordered byte by byte ("C" on PostgreSQL, as SQLite's
#: BINARY and Python's str order), so the unique key is sorted by memcmp and abbreviated keys instead of a
#: locale's strcoll (its rebuild after a bulk load ~1.6x faster) and rows come in the same order on both.
CallId = String(MAX_TEXT).with_variant(String(MAX_TEXT, collation="C"), "postgresql")


def _in(column: str, values: tuple[str, ...]) -> str:
    quoted = ", ".join("'" + v.replace("'", "''") + "'" for v in values)
    return f"{column} IN ({quoted})"


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Client(Base):
    __tablename__ = "clients"
    # Never reuse a deleted client's id (SQLite would): ids name folders in the report store.
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    timezone: Mapped[str] = mapped_column(String(64))
    #: First local date the client's reports exist for (earlier dates are refused by name).
    active_from: Mapped[dt.date] = mapped_column(Date)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), server_default=func.now())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), server_default=func.now())


class CallEvent(Base):
    """One call of one client, as the PBX logged it (several CDR legs collapsed into one row)."""

    __tablename__ = "call_events"
    __table_args__ = (
        UniqueConstraint("client_id", "pbx_call_id", name="uq_call_events_client_call"),
        CheckConstraint(_in("direction", DIRECTIONS), name="direction"),
        CheckConstraint(_in("disposition", DISPOSITIONS), name="disposition"),
        CheckConstraint("ended_at >= started_at", name="ends_after_start"),
        CheckConstraint(
            "answered_at IS NULL OR (answered_at >= started_at AND answered_at <= ended_at)",
            name="answered_within_call",
        ),
        CheckConstraint(
            "queued_at IS NULL OR (queued_at >= started_at AND queued_at <= ended_at"
            " AND (answered_at IS NULL OR queued_at <= answered_at))",
            name="queued_within_call",
        ),
        # Day-window reads: WHERE client_id = ? AND started_at >= ? AND started_at < ?
        Index("ix_call_events_client_started", "client_id", "started_at"),
        # Watermarks and late data: the newest ingest per client, and what arrived after an instant.
        Index("ix_call_events_client_ingested", "client_id", "ingested_at"),
        # The late-data sensor: everything ingested since its cursor, all clients at once.
        Index("ix_call_events_ingested", "ingested_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="RESTRICT"))
    pbx_call_id: Mapped[str] = mapped_column(CallId)
    direction: Mapped[str] = mapped_column(String(16))
    queue: Mapped[str | None] = mapped_column(String(MAX_TEXT))
    agent: Mapped[str | None] = mapped_column(String(MAX_TEXT))
    caller: Mapped[str | None] = mapped_column(String(MAX_TEXT))
    callee: Mapped[str | None] = mapped_column(String(MAX_TEXT))
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    answered_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    ended_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    disposition: Mapped[str] = mapped_column(String(16))
    #: Queue entry (from the PBX's queue_log); waits are measured from it when it is known.
    queued_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    ingested_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), server_default=func.now())


class CallEventQuarterRow(Base):
    """Each client's calls per UTC quarter-hour: how many, and the newest ``ingested_at`` among them
    (``quarter`` is the epoch second of its start divided by 900). Every zone's offset and DST change
    falls on a quarter-hour, so a client's local day is a run of whole quarters and its source state
    (count, watermark) a sum over at most 100 rows, whatever its number of calls: what the freshness
    checks read instead of counting the calls again.

    Derived from ``call_events`` and kept by every writer in the writer's own transaction, by increments
    or recomputed (:mod:`report_pipelines.adapters.db.call_quarters`); a writer of ``call_events`` that
    did not update the quarters it wrote into would leave days looking fresh that are not.
    """

    __tablename__ = "call_event_quarters"

    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="RESTRICT"), primary_key=True)
    quarter: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    calls: Mapped[int] = mapped_column(Integer)
    newest_ingest: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class CacheEntry(Base):
    """The cache manifest: one row per (report, client, local day) cached in the report store.

    ``source_watermark`` is the newest ``ingested_at`` among the day's events when it was computed:
    an event of that day ingested later makes the entry stale. ``source_rows`` and
    ``source_checksum`` (of the sorted call ids) let an asset check compare the cache with the source.
    """

    __tablename__ = "report_cache_manifest"
    __table_args__ = (
        UniqueConstraint("report", "client_id", "local_date", name="uq_report_cache_manifest_entry"),
        Index("ix_report_cache_manifest_client_date", "client_id", "local_date"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    report: Mapped[str] = mapped_column(String(64))
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="RESTRICT"))
    local_date: Mapped[dt.date] = mapped_column(Date)
    path: Mapped[str] = mapped_column(Text)
    rows: Mapped[int] = mapped_column(BigInteger)
    bytes: Mapped[int] = mapped_column(BigInteger)
    checksum: Mapped[str] = mapped_column(String(64))
    source_rows: Mapped[int] = mapped_column(BigInteger)
    source_checksum: Mapped[str] = mapped_column(String(64))
    source_watermark: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    rejected_rows: Mapped[int] = mapped_column(Integer, default=0)
    rejected_reasons: Mapped[str] = mapped_column(Text, default="{}")  # JSON {reason: count}
    computed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    run_id: Mapped[str | None] = mapped_column(String(64))
    #: A summary report's day table itself (Arrow IPC, at most ``DAY_TABLE_MAX_BYTES``), written with the
    #: row: a period summary reads its days from one indexed query instead of one file each.
    #: (``builtins.bytes``: in this class ``bytes`` is the column above)
    day_table: Mapped[builtins.bytes | None] = mapped_column(LargeBinary, nullable=True, deferred=True)


class ReportSchedule(Base):
    """What to send, for whom, when (a rule in the schedule's zone), to whom, in which format."""

    __tablename__ = "report_schedules"
    __table_args__ = (
        CheckConstraint("frequency IN ('daily', 'weekly', 'monthly', 'interval')", name="frequency"),
        CheckConstraint("format IN ('csv', 'xlsx', 'parquet', 'pdf', 'none')", name="format"),
        CheckConstraint("kind IN ('report', 'alert')", name="kind"),
        CheckConstraint("body IN ('summary', 'table', 'none')", name="body"),
        CheckConstraint("no_calls IN ('send', 'skip', 'notice')", name="no_calls"),
        CheckConstraint("alert_state IS NULL OR alert_state IN ('clear', 'firing', 'clearing')", name="alert_state"),
        # The planner and the processor look for active schedules by next send instant.
        Index("ix_report_schedules_due", "active", "next_send_at"),
        Index("ix_report_schedules_client", "client_id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="RESTRICT"))
    report: Mapped[str] = mapped_column(String(64))
    period: Mapped[str] = mapped_column(String(32))
    period_days: Mapped[int | None] = mapped_column(Integer)
    frequency: Mapped[str] = mapped_column(String(16))
    weekdays: Mapped[str | None] = mapped_column(String(32))  # "0,2,4" (Monday = 0)
    month_day: Mapped[int | None] = mapped_column(Integer)
    send_time: Mapped[str] = mapped_column(String(5))  # local "HH:MM"
    timezone: Mapped[str] = mapped_column(String(64))
    recipients: Mapped[str] = mapped_column(Text)  # normalised addresses, comma-separated
    subject: Mapped[str | None] = mapped_column(String(200))
    format: Mapped[str] = mapped_column(String(16))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    paused_reason: Mapped[str | None] = mapped_column(Text)
    next_send_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())  # empty: to be planned
    revision: Mapped[int] = mapped_column(Integer, default=1)  # bumped by every edit
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), server_default=func.now())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), server_default=func.now())
    #: ``report`` (a file every occurrence) or ``alert`` (a condition checked every occurrence,
    #: e-mailed when an incident starts and when it has cleared; frequency ``interval``)
    kind: Mapped[str] = mapped_column(String(16), server_default="report")
    body: Mapped[str] = mapped_column(String(16), server_default="summary")  # summary, table or none
    no_calls: Mapped[str] = mapped_column(String(16), server_default="send")  # send, skip or notice
    message: Mapped[str | None] = mapped_column(Text)  # the subscriber's own paragraph
    reply_to: Mapped[str | None] = mapped_column(String(320))
    condition: Mapped[str | None] = mapped_column(Text)  # an alert's condition, canonical text
    alert_state: Mapped[str | None] = mapped_column(String(16))  # clear, firing, clearing
    alert_since: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class ReportFile(Base):
    """One occurrence of a schedule: the file built for it and its delivery.

    ``(schedule_id, occurrence)`` is unique, so an occurrence can never produce two files. States:
    ``building`` (claimed by a processor, under lease; ``build_attempts`` counts the claims) ->
    ``ready`` -> ``sending`` (claimed by a sender, under lease; ``attempts`` counts the claims) ->
    ``sent``; ``retry`` waits for ``next_attempt_at``; ``failed`` after the last build or send
    attempt (a failed build has no ``path``); ``skipped`` records a missed occurrence that was not
    sent (the daemon was down). Each recipient's outcome is a :class:`ReportFileRecipient` row, each
    attempt a :class:`ReportFileAttempt` row.
    """

    __tablename__ = "report_files"
    __table_args__ = (
        UniqueConstraint("schedule_id", "occurrence", name="uq_report_files_occurrence"),
        CheckConstraint(
            "state IN ('building', 'ready', 'sending', 'retry', 'sent', 'failed', 'skipped')", name="state"),
        Index("ix_report_files_state", "state", "next_attempt_at"),
        Index("ix_report_files_sent", "sent_at"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    schedule_id: Mapped[int] = mapped_column(ForeignKey("report_schedules.id", ondelete="CASCADE"))
    occurrence: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    period_start: Mapped[dt.date | None] = mapped_column(Date)
    period_end: Mapped[dt.date | None] = mapped_column(Date)
    format: Mapped[str] = mapped_column(String(16))
    path: Mapped[str | None] = mapped_column(Text)
    bytes: Mapped[int | None] = mapped_column(BigInteger)
    checksum: Mapped[str | None] = mapped_column(String(64))
    rows: Mapped[int | None] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    build_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    message_id: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    sent_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class ReportFileRecipient(Base):
    """One recipient of one report file, frozen when the file is built: ``pending`` (not tried yet),
    ``deferred`` (a 4xx: tried again with the file's backoff), ``accepted`` (the relay took it),
    ``refused`` (a 5xx: never retried), ``failed`` (given up after the last attempt, or the file
    could not be sent at all)."""

    __tablename__ = "report_file_recipients"
    __table_args__ = (
        CheckConstraint("state IN ('pending', 'deferred', 'accepted', 'refused', 'failed')", name="state"),
    )

    file_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("report_files.id", ondelete="CASCADE"),
                                         primary_key=True)
    address: Mapped[str] = mapped_column(String(320), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)  # order in the To: header
    state: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_reply: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class ReportFileAttempt(Base):
    """The history of a report file: every build and send attempt that finished, with its outcome,
    its error and (sends) each recipient's reply. An attempt whose process died leaves no row: its
    number is missing from the sequence (``attempts`` / ``build_attempts`` count the claims)."""

    __tablename__ = "report_file_attempts"
    __table_args__ = (
        CheckConstraint("kind IN ('build', 'send')", name="kind"),
        Index("ix_report_file_attempts_file", "file_id", "id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    file_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("report_files.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(8))
    number: Mapped[int] = mapped_column(Integer)  # the claim this attempt was (1 = the first)
    owner: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
    recipients: Mapped[str | None] = mapped_column(Text)  # JSON {address: reply} of a send attempt
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class ProductRow(Base):
    """The catalogue: what the platform sells (the reports product among them)."""

    __tablename__ = "products"

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    unit: Mapped[str] = mapped_column(String(16))
    list_price: Mapped[Decimal] = mapped_column(ExactDecimal())
    currency: Mapped[str] = mapped_column(String(3))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class PolicyRow(Base):
    """A commercial (discount) policy created by sales."""

    __tablename__ = "commercial_policies"

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    value: Mapped[Decimal] = mapped_column(ExactDecimal())
    currency: Mapped[str | None] = mapped_column(String(3))  # amount policies only
    products: Mapped[str] = mapped_column(Text, default="")  # comma-separated codes; empty = all
    valid_from: Mapped[dt.date] = mapped_column(Date)
    valid_to: Mapped[dt.date | None] = mapped_column(Date)
    min_quantity: Mapped[int | None] = mapped_column(Integer)
    max_uses: Mapped[int | None] = mapped_column(Integer)
    max_uses_per_client: Mapped[int | None] = mapped_column(Integer)
    stackable: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class ProposalRow(Base):
    """A proposal to a client or a prospect; its priced lines live in ``proposal_items``."""

    __tablename__ = "proposals"
    __table_args__ = (
        CheckConstraint("status IN ('draft', 'submitted', 'approved', 'rejected', 'expired')", name="status"),
        CheckConstraint("(client_id IS NOT NULL) OR (prospect_email IS NOT NULL AND prospect_slug IS NOT NULL)",
                        name="customer"),
        Index("ix_proposals_to_apply", "status", "applied_at"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[int | None] = mapped_column(ForeignKey("clients.id", ondelete="RESTRICT"))
    prospect_name: Mapped[str | None] = mapped_column(String(200))
    prospect_email: Mapped[str | None] = mapped_column(String(320))
    prospect_slug: Mapped[str | None] = mapped_column(String(64))  # the client account approval creates
    timezone: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    valid_until: Mapped[dt.date] = mapped_column(Date)
    term_days: Mapped[int | None] = mapped_column(Integer)  # licences' length; empty = open-ended
    requested_policy: Mapped[str | None] = mapped_column(String(32))
    applied_policies: Mapped[str] = mapped_column(Text, default="")
    currency: Mapped[str] = mapped_column(String(3))
    subtotal: Mapped[Decimal] = mapped_column(ExactDecimal())
    discount: Mapped[Decimal] = mapped_column(ExactDecimal())
    total: Mapped[Decimal] = mapped_column(ExactDecimal())
    priced_on: Mapped[dt.date] = mapped_column(Date)
    explanation: Mapped[str] = mapped_column(Text)
    applied_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())  # licences written
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class ProposalItemRow(Base):
    __tablename__ = "proposal_items"
    __table_args__ = (UniqueConstraint("proposal_id", "product_code", name="uq_proposal_items_product"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    proposal_id: Mapped[int] = mapped_column(ForeignKey("proposals.id", ondelete="CASCADE"))
    product_code: Mapped[str] = mapped_column(ForeignKey("products.code", ondelete="RESTRICT"))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price: Mapped[Decimal] = mapped_column(ExactDecimal())
    list_total: Mapped[Decimal] = mapped_column(ExactDecimal())
    discount: Mapped[Decimal] = mapped_column(ExactDecimal())
    line_total: Mapped[Decimal] = mapped_column(ExactDecimal())
    applied: Mapped[str] = mapped_column(Text, default="")  # policy codes applied to this line
    explanation: Mapped[str] = mapped_column(Text, default="")


class ProposalTransitionRow(Base):
    """Who moved a proposal from which status to which, when, and why."""

    __tablename__ = "proposal_transitions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    proposal_id: Mapped[int] = mapped_column(ForeignKey("proposals.id", ondelete="CASCADE"))
    action: Mapped[str] = mapped_column(String(16))
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    by: Mapped[str] = mapped_column(String(200))
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    note: Mapped[str | None] = mapped_column(Text)


class PolicyUseRow(Base):
    """One use of a policy: a proposal approved with it (use limits count these)."""

    __tablename__ = "policy_uses"
    __table_args__ = (UniqueConstraint("policy_code", "proposal_id", name="uq_policy_uses_proposal"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    policy_code: Mapped[str] = mapped_column(ForeignKey("commercial_policies.code", ondelete="RESTRICT"))
    proposal_id: Mapped[int] = mapped_column(ForeignKey("proposals.id", ondelete="CASCADE"))
    client_key: Mapped[str] = mapped_column(String(400))
    used_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class ClientProductRow(Base):
    """A client's products and licences (trials included). ``(source_proposal, product)`` is unique, so an
    approved proposal can be applied only once."""

    __tablename__ = "client_products"
    __table_args__ = (
        UniqueConstraint("source_proposal", "product_code", name="uq_client_products_source"),
        Index("ix_client_products_client", "client_id", "product_code"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="RESTRICT"))
    product_code: Mapped[str] = mapped_column(ForeignKey("products.code", ondelete="RESTRICT"))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price: Mapped[Decimal] = mapped_column(ExactDecimal())
    discount: Mapped[Decimal] = mapped_column(ExactDecimal())
    currency: Mapped[str] = mapped_column(String(3))
    valid_from: Mapped[dt.date] = mapped_column(Date)
    valid_to: Mapped[dt.date | None] = mapped_column(Date)  # inclusive; empty = open-ended
    trial: Mapped[bool] = mapped_column(Boolean, default=False)
    source_proposal: Mapped[int | None] = mapped_column(ForeignKey("proposals.id", ondelete="RESTRICT"))
    note: Mapped[str | None] = mapped_column(Text)  # e.g. "demo", "trial"
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


#: Column order used by bulk loaders (COPY, executemany) and by the generator's output.
CALL_EVENT_COLUMNS: tuple[str, ...] = (
    "client_id",
    "pbx_call_id",
    "direction",
    "queue",
    "agent",
    "caller",
    "callee",
    "started_at",
    "answered_at",
    "ended_at",
    "disposition",
    "queued_at",
    "ingested_at",
)


# --- PBX imports (issue 10): the client's PBX configuration, queue_log facts, touched client-days ---
class ClientPbxConfigRow(Base):
    """What a client's PBX says about its own lines (``clients pbx-config``): trunk patterns,
    extension ranges and DIDs, each a JSON list; read by every CDR import of the client."""

    __tablename__ = "client_pbx_config"

    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"), primary_key=True)
    trunks: Mapped[str] = mapped_column(Text, default="[]")
    extensions: Mapped[str] = mapped_column(Text, default="[]")
    dids: Mapped[str] = mapped_column(Text, default="[]")
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class QueueCallRow(Base):
    """One caller's stay in one queue, from the PBX's queue_log (ENTERQUEUE to its outcome).

    ``callid`` is the queue_log's call id (the caller channel's uniqueid); ``pbx_call_id`` the
    ``call_events`` call it was joined to (null when no CDR call matched)."""

    __tablename__ = "queue_calls"
    __table_args__ = (
        UniqueConstraint("client_id", "callid", "queue", "entered_at", name="uq_queue_calls_attempt"),
        Index("ix_queue_calls_client_entered", "client_id", "entered_at"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="RESTRICT"))
    callid: Mapped[str] = mapped_column(String(MAX_TEXT))
    pbx_call_id: Mapped[str | None] = mapped_column(String(MAX_TEXT))
    queue: Mapped[str] = mapped_column(String(MAX_TEXT))
    entered_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    connected_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    ended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    agent: Mapped[str | None] = mapped_column(String(MAX_TEXT))
    outcome: Mapped[str] = mapped_column(String(16))
    ring_attempts: Mapped[int] = mapped_column(Integer, default=0)
    caller: Mapped[str | None] = mapped_column(String(MAX_TEXT))


class _AgentIntervalColumns:
    """What a member's session and a member's pause both hold."""

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="RESTRICT"))
    queue: Mapped[str] = mapped_column(String(MAX_TEXT))
    agent: Mapped[str] = mapped_column(String(MAX_TEXT))
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class QueueAgentSessionRow(_AgentIntervalColumns, Base):
    """A queue member's time in a queue (ADDMEMBER to REMOVEMEMBER; open while ``ended_at`` is null)."""

    __tablename__ = "queue_agent_sessions"
    __table_args__ = (
        UniqueConstraint("client_id", "queue", "agent", "started_at", name="uq_queue_agent_sessions_start"),
        Index("ix_queue_agent_sessions_client_started", "client_id", "started_at"),
        Index("ix_queue_agent_sessions_client_ended", "client_id", "ended_at"),
        {"sqlite_autoincrement": True},
    )


class QueueAgentPauseRow(_AgentIntervalColumns, Base):
    """A queue member's pause (PAUSE to UNPAUSE); ``queue`` is ``NONE`` for every queue (PAUSEALL)."""

    __tablename__ = "queue_agent_pauses"
    __table_args__ = (
        UniqueConstraint("client_id", "queue", "agent", "started_at", name="uq_queue_agent_pauses_start"),
        Index("ix_queue_agent_pauses_client_started", "client_id", "started_at"),
        Index("ix_queue_agent_pauses_client_ended", "client_id", "ended_at"),
        {"sqlite_autoincrement": True},
    )

    reason: Mapped[str | None] = mapped_column(String(MAX_TEXT))


class CallEventChangeRow(Base):
    """A client-day whose calls an import replaced (``import-cdr --replace``), at ``changed_at``.

    A day whose calls were all deleted and none re-inserted has no new ``ingested_at``; this row is
    what lets the late-data path (``services.staleness``) still find it stale. A queue_log import
    records the days its agent sessions and pauses cover too (their calls may not change)."""

    __tablename__ = "call_event_changes"
    __table_args__ = (
        Index("ix_call_event_changes_changed", "changed_at"),
        Index("ix_call_event_changes_client_date", "client_id", "local_date"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="RESTRICT"))
    local_date: Mapped[dt.date] = mapped_column(Date)
    changed_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
# --- period requests: the usage log and the D-1 pre-cache choices (migration 0007) -------------------
#: Where a request came from (the front doors, and the scheduled report builds).
REQUEST_CHANNELS: tuple[str, ...] = ("cli", "dagster", "api", "schedule", "python")
REQUEST_STATUSES: tuple[str, ...] = ("ok", "refused", "timeout", "error")


class ReportRequestRow(Base):
    """The usage log: one row per period request through any front door, and per scheduled build.

    ``local_date`` / ``local_minute`` are the client's wall clock when the request came in (the D-1
    study's "first request of the day"); ``asks_yesterday`` says the period ended on that date's
    yesterday. A refused request for an unknown client keeps what was asked in ``client_ref``.
    """

    __tablename__ = "report_requests"
    __table_args__ = (
        CheckConstraint(_in("channel", REQUEST_CHANNELS), name="channel"),
        CheckConstraint(_in("status", REQUEST_STATUSES), name="status"),
        # `usage --client` and the D-1 study: one client's requests over a window.
        Index("ix_report_requests_client_requested", "client_id", "requested_at"),
        Index("ix_report_requests_requested", "requested_at"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    client_id: Mapped[int | None] = mapped_column(ForeignKey("clients.id", ondelete="SET NULL"))
    client_ref: Mapped[str] = mapped_column(String(200))
    report: Mapped[str] = mapped_column(String(64))
    period_start: Mapped[dt.date | None] = mapped_column(Date)
    period_end: Mapped[dt.date | None] = mapped_column(Date)
    shape: Mapped[str] = mapped_column(String(16))  # days / summary
    format: Mapped[str | None] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(16))
    requested_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    local_date: Mapped[dt.date | None] = mapped_column(Date)
    local_minute: Mapped[int | None] = mapped_column(Integer)
    asks_yesterday: Mapped[bool] = mapped_column(Boolean, default=False)
    days_cached: Mapped[int] = mapped_column(Integer, default=0)
    days_computed: Mapped[int] = mapped_column(Integer, default=0)
    days_live: Mapped[int] = mapped_column(Integer, default=0)
    rows: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    duration_s: Mapped[float] = mapped_column(Float, default=0.0)
    status: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)


class PrecacheChoiceRow(Base):
    """An operator's D-1 pre-cache choice for one client (``precache set``): who, when, why."""

    __tablename__ = "precache_choices"
    __table_args__ = (CheckConstraint("decision IN ('priority', 'normal', 'skip', 'auto')", name="decision"),)

    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"), primary_key=True)
    decision: Mapped[str] = mapped_column(String(16))
    set_by: Mapped[str] = mapped_column(String(200))
    set_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    note: Mapped[str | None] = mapped_column(Text)


# --- the HTTP API: keys, the audit of writes, asynchronous extractions (migration 0010) ------------------
API_ROLES: tuple[str, ...] = ("client", "sales", "operator")
EXTRACTION_STATES: tuple[str, ...] = ("running", "done", "failed")


class ApiKeyRow(Base):
    """An API key: only its public prefix and a salted scrypt hash of its secret are kept (never the key).

    A ``client`` key belongs to one tenant (``client_id``); ``sales`` and ``operator`` keys to none.
    ``revoked_at`` set: refused from the next request on."""

    __tablename__ = "api_keys"
    __table_args__ = (
        CheckConstraint(_in("role", API_ROLES), name="role"),
        CheckConstraint("(role = 'client') = (client_id IS NOT NULL)", name="client_iff_client_role"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    prefix: Mapped[str] = mapped_column(String(16), unique=True)
    salt: Mapped[bytes] = mapped_column(LargeBinary(32))
    hash: Mapped[bytes] = mapped_column(LargeBinary(64))
    role: Mapped[str] = mapped_column(String(16))
    client_id: Mapped[int | None] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    label: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str] = mapped_column(String(200))
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class ApiAuditRow(Base):
    """Every write through the API (and every key created or revoked): who, what, when, and the answer."""

    __tablename__ = "api_audit"
    __table_args__ = (Index("ix_api_audit_at", "at"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    actor: Mapped[str] = mapped_column(String(200))  # "key <prefix>", "cli", "public"
    role: Mapped[str | None] = mapped_column(String(16))
    client_id: Mapped[int | None] = mapped_column(Integer)  # no foreign key: the audit outlives its tenant
    action: Mapped[str] = mapped_column(String(200))  # "POST /v1/schedules", "api-keys create"
    status: Mapped[int] = mapped_column(Integer)
    detail: Mapped[str | None] = mapped_column(Text)


class ApiExtractionRow(Base):
    """A period request too long for one HTTP request: its progress, then its file until ``expires_at``."""

    __tablename__ = "api_extractions"
    __table_args__ = (
        CheckConstraint(_in("state", EXTRACTION_STATES), name="state"),
        Index("ix_api_extractions_client", "client_id", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    key_id: Mapped[int | None] = mapped_column(ForeignKey("api_keys.id", ondelete="SET NULL"))
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id", ondelete="CASCADE"))
    report: Mapped[str] = mapped_column(String(64))
    period_start: Mapped[dt.date] = mapped_column(Date)
    period_end: Mapped[dt.date] = mapped_column(Date)
    shape: Mapped[str] = mapped_column(String(16))
    format: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16))
    days_done: Mapped[int] = mapped_column(Integer, default=0)
    days_total: Mapped[int] = mapped_column(Integer, default=0)
    file_name: Mapped[str | None] = mapped_column(String(300))
    path: Mapped[str | None] = mapped_column(Text)
    rows: Mapped[int | None] = mapped_column(BigInteger)
    bytes: Mapped[int | None] = mapped_column(BigInteger)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
