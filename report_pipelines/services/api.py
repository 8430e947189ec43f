"""The HTTP API's use cases: the existing services, each call taking the request's :class:`Scope`.

Tenant isolation lives here, not in the HTTP handlers: every id a request names (a client slug or id,
a schedule, a file, a proposal, an extraction) is resolved through the scope, and a thing of another
tenant raises exactly the :class:`NotFound` that a thing that does not exist raises (same field, same
words), so a client key cannot tell them apart. Lists are filtered by the scope in the same place.
Roles are checked first (:meth:`Scope.require`), before any id is looked at.

The rules and messages are the CLI's: these functions call the same services
(:mod:`~report_pipelines.services.periods`, :mod:`~report_pipelines.services.scheduled_reports`,
:mod:`~report_pipelines.services.commercial`) and let their refusals through unchanged.
"""

from __future__ import annotations

import datetime as dt
import io
import queue
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from report_pipelines.adapters.db.api import Extraction, ExtractionRepository
from report_pipelines.adapters.db.repositories import ClientRepository
from report_pipelines.adapters.db.schedules import FileRow, RecipientRow, ReportFileRepository, ScheduleRepository
from report_pipelines.app import App
from report_pipelines.domain.api_access import Scope
from report_pipelines.domain.clients import ClientRecord
from report_pipelines.domain.commercial import CommercialPolicy, Licence, Product, is_active
from report_pipelines.domain.commercial.policies import proposal_reasons
from report_pipelines.domain.errors import InvalidInput, NotFound
from report_pipelines.domain.reports import REPORTS, ReportDefinition
from report_pipelines.domain.timezones import local_date_of, parse_zone

CHUNK_BYTES = 64 * 1024
MEDIA_TYPES = {"csv": "text/csv; charset=utf-8", "json": "application/x-ndjson",
               "parquet": "application/vnd.apache.parquet",
               "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"}


# --- clients ----------------------------------------------------------------------------------------
def _no_client(ref: object) -> NotFound:
    return NotFound("client", f"no client {str(ref)[:80]!r}")


def visible_client(app: App, scope: Scope, ref: str | int | None) -> ClientRecord:
    """The client ``ref`` (slug or id) as this scope sees it; a client key's own when ``ref`` is None."""
    repo = ClientRepository(app.engine)
    if ref is None or ref == "":
        if scope.client_id is None:
            raise InvalidInput("client", "give the client (its slug): this key serves every tenant")
        return repo.get(scope.client_id)
    text = str(ref).strip()
    try:
        record = repo.get(int(text)) if text.isdigit() else repo.get_by_slug(text)
    except NotFound:
        raise _no_client(ref) from None
    if not scope.sees(record.id):
        raise _no_client(ref)
    return record


def clients(app: App, scope: Scope) -> list[ClientRecord]:
    scope.require("read clients")
    if scope.client_id is not None:
        return [ClientRepository(app.engine).get(scope.client_id)]
    return ClientRepository(app.engine).list()


# --- reports and periods ------------------------------------------------------------------------------
def report_definitions() -> list[ReportDefinition]:
    return list(REPORTS.values())


def _safe_name(text: str) -> str:
    return "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_" for c in text)[:200] or "report"


def file_name(client: ClientRecord, report: str, start: dt.date, end: dt.date, shape: str, fmt: str) -> str:
    from report_pipelines.services.periods import EXTENSIONS

    suffix = "_summary" if shape == "summary" else ""
    return _safe_name(f"{client.slug}_{report}_{start}_{end}{suffix}") + "." + EXTENSIONS.get(fmt, "bin")


_DONE = object()


class _Pipe(io.RawIOBase):
    """A write end that hands ~64 KiB chunks to a bounded queue (the HTTP response reads the other end).

    The queue holds a few chunks at most: a slow reader slows the writer (flat memory). When the reader
    goes away (``cancelled``), the next write raises and the request stops."""

    def __init__(self, chunks: queue.Queue, cancelled: threading.Event) -> None:
        super().__init__()
        self.chunks, self.cancelled = chunks, cancelled
        self.buffer = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        self.buffer += data
        if len(self.buffer) >= CHUNK_BYTES:
            self.push()
        return len(data)

    def push(self) -> None:
        if self.buffer:
            put(self.chunks, bytes(self.buffer), self.cancelled)
            self.buffer.clear()


def put(chunks: queue.Queue, item: object, cancelled: threading.Event) -> None:
    while True:
        if cancelled.is_set():
            raise ConnectionAbortedError("the client went away")
        try:
            chunks.put(item, timeout=0.25)
            return
        except queue.Full:
            continue


@dataclass
class PeriodStream:
    """A period request under way: its file name, media type and the body's chunks."""

    name: str
    media_type: str
    chunks: Iterator[bytes]


def stream_period(app: App, scope: Scope, report: str, client: str | int | None, start: dt.date, end: dt.date, *,
                  shape: str, fmt: str, deadline_s: float) -> PeriodStream:
    """Run the period request in a thread and return once its first bytes (or its refusal) are there.

    A refusal or a timeout before the first byte raises here (the caller answers with a problem
    document). CSV and JSON lines are streamed as the days are read; Parquet and XLSX need their
    whole file (footer, zip directory) so they are written to a temporary file, then streamed from it.
    Through :func:`~report_pipelines.services.periods.extract_period`, with channel ``api``.
    """
    from report_pipelines.adapters.exports import PIPE_FORMATS
    from report_pipelines.services.periods import extract_period

    scope.require("read reports")
    record = visible_client(app, scope, client)
    chunks: queue.Queue = queue.Queue(maxsize=4)
    cancelled = threading.Event()

    def produce() -> None:
        try:
            if fmt in PIPE_FORMATS:
                pipe = _Pipe(chunks, cancelled)
                extract_period(record.id, report, start, end, shape=shape, format=fmt, out="-", stdout=pipe,
                               deadline_s=deadline_s, channel="api", app=app)
                pipe.push()
            else:
                with tempfile.TemporaryDirectory(prefix="rp-api-") as folder:
                    path = Path(folder) / "out"
                    extract_period(record.id, report, start, end, shape=shape, format=fmt, out=path,
                                   deadline_s=deadline_s, channel="api", app=app)
                    with path.open("rb") as handle:
                        while block := handle.read(CHUNK_BYTES):
                            put(chunks, block, cancelled)
            put(chunks, _DONE, cancelled)
        except BaseException as exc:  # handed to the reader, which raises it
            try:
                put(chunks, exc, cancelled)
            except ConnectionAbortedError:
                pass

    threading.Thread(target=produce, name="rp-api-period", daemon=True).start()
    first = chunks.get()
    if isinstance(first, BaseException):
        raise first

    def body() -> Iterator[bytes]:
        item = first
        try:
            while item is not _DONE:
                if isinstance(item, BaseException):
                    raise item
                yield item
                item = chunks.get()
        finally:
            cancelled.set()

    return PeriodStream(file_name(record, report, start, end, shape, fmt), MEDIA_TYPES[fmt], body())


# --- asynchronous extractions -------------------------------------------------------------------------
def _extraction(app: App, scope: Scope, extraction_id: str) -> Extraction:
    scope.require("read reports")
    repo = ExtractionRepository(app.engine)
    found = repo.get(extraction_id) if len(extraction_id) <= 32 else None
    if found is None or not scope.sees(found.client_id):
        raise NotFound("extraction", f"no extraction {extraction_id[:40]!r}")
    if found.state == "running" and app.now() - found.created_at > stale_after(app):
        # its deadline and a writing margin have long passed: the process running it stopped (a restart)
        repo.update(found.id, state="failed", finished_at=app.now(),
                    error=f"the extraction stopped at {found.days_done} of {found.days_total} days (the server "
                          "restarted); the days it finished stay cached, so asking again is faster")
        found = repo.get(extraction_id)
        assert found is not None
    return found


def stale_after(app: App) -> dt.timedelta:
    """How long a running extraction may go on: twice its deadline, and a minute to write its file."""
    return dt.timedelta(seconds=2 * app.settings.periods.deadline_s + 60)


def start_extraction(app: App, scope: Scope, submit: Callable[[Callable[[], None]], object], *, report: str,
                     client: str | int | None, start: dt.date, end: dt.date, shape: str, fmt: str) -> Extraction:
    """Validate now (a refusal is immediate), then run the request on ``submit`` (the API's workers)."""
    from report_pipelines.services.periods import Progress, extract_period, validate_period_request

    scope.require("read reports")
    record = visible_client(app, scope, client)
    now = app.now()
    request = validate_period_request(app, report, record.id, start, end, shape=shape, format=fmt, now=now)
    extraction_id = uuid.uuid4().hex
    folder = app.settings.data_dir / "api_extractions"
    name = file_name(record, report, request.start, request.end, shape, fmt)
    repo = ExtractionRepository(app.engine)
    repo.add({"id": extraction_id, "key_id": scope.key_id, "client_id": record.id, "report": report,
              "period_start": request.start, "period_end": request.end, "shape": shape, "format": fmt,
              "state": "running", "days_done": 0, "days_total": len(request.closed_days) + int(request.includes_today),
              "file_name": name, "created_at": now})

    def progress(p: Progress) -> None:
        repo.update(extraction_id, days_done=p.done, days_total=p.total)

    def work() -> None:
        path = folder / f"{extraction_id}.{name.rsplit('.', 1)[-1]}"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            result = extract_period(record.id, report, request.start, request.end, shape=shape, format=fmt, out=path,
                                    force=True, channel="api", app=app, progress=progress)
            finished = app.now()
            repo.update(extraction_id, state="done", path=str(path), rows=result.rows, bytes=result.bytes,
                        finished_at=finished,
                        expires_at=finished + dt.timedelta(days=max(1, app.settings.retention_days)))
        except Exception as exc:
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            known = isinstance(exc, (InvalidInput, NotFound)) or type(exc).__name__ == "PeriodTimeout"
            repo.update(extraction_id, state="failed", finished_at=app.now(),
                        error=text[:2000] if known else "the extraction failed; ask again or tell the operators")

    clean_extractions(app)
    submit(work)
    return _extraction(app, scope, extraction_id)


def get_extraction(app: App, scope: Scope, extraction_id: str) -> Extraction:
    return _extraction(app, scope, extraction_id)


def extraction_file(app: App, scope: Scope, extraction_id: str) -> tuple[Extraction, Path]:
    found = _extraction(app, scope, extraction_id)
    if found.state != "done" or not found.path or not Path(found.path).is_file():
        what = f"failed: {found.error}" if found.state == "failed" else (
            f"{found.days_done} of {found.days_total} days ready" if found.state == "running" else "expired")
        raise InvalidInput("extraction", f"extraction {extraction_id} has no file yet ({what})")
    return found, Path(found.path)


def clean_extractions(app: App) -> int:
    """Delete the files and rows of extractions past their retention."""
    repo = ExtractionRepository(app.engine)
    gone = 0
    for found in repo.expired(app.now()):
        if found.path:
            Path(found.path).unlink(missing_ok=True)
        repo.delete(found.id)
        gone += 1
    return gone


# --- scheduled reports ---------------------------------------------------------------------------------
def _no_schedule(schedule_id: int) -> NotFound:
    return NotFound("schedule", f"no schedule with id {schedule_id}")


def schedule(app: App, scope: Scope, schedule_id: int):
    scope.require("read schedules")
    row = ScheduleRepository(app.engine).get(schedule_id)
    if row is None or not scope.sees(row.client_id):
        raise _no_schedule(schedule_id)
    return row


def schedules(app: App, scope: Scope, client: str | None = None) -> list:
    scope.require("read schedules")
    client_id = visible_client(app, scope, client).id if client or scope.client_id else None
    return ScheduleRepository(app.engine).list(client_id)


def add_schedule(app: App, scope: Scope, client: str | None, **fields):
    from report_pipelines.services import scheduled_reports

    scope.require("change schedules")
    record = visible_client(app, scope, client)
    return scheduled_reports.add_schedule(app.engine, record.slug, now=app.now(), **fields)


def edit_schedule(app: App, scope: Scope, schedule_id: int, **changes):
    from report_pipelines.services import scheduled_reports

    scope.require("change schedules")
    schedule(app, scope, schedule_id)
    if not changes:
        raise InvalidInput("schedule", "nothing to change (give at least one field)")
    return scheduled_reports.edit_schedule(app.engine, schedule_id, now=app.now(), **changes)


def set_schedule_active(app: App, scope: Scope, schedule_id: int, active: bool, reason: str | None = None):
    scope.require("change schedules")
    schedule(app, scope, schedule_id)
    ScheduleRepository(app.engine).set_active(schedule_id, active, reason if not active else None, now=app.now())
    return schedule(app, scope, schedule_id)


def delete_schedule(app: App, scope: Scope, schedule_id: int) -> int:
    from report_pipelines.services import scheduled_reports

    scope.require("change schedules")
    schedule(app, scope, schedule_id)
    return scheduled_reports.delete_schedule(app.engine, app.settings, schedule_id)


def send_schedule_now(app: App, scope: Scope, schedule_id: int) -> tuple[FileRow, list[RecipientRow]]:
    from report_pipelines.services import scheduled_reports

    scope.require("change schedules")
    schedule(app, scope, schedule_id)
    file = scheduled_reports.send_now(app.engine, app.settings, app.mailer, schedule_id,
                                      owner=f"api-{scope.prefix}-{uuid.uuid4().hex[:6]}", now=app.now())
    return file, ReportFileRepository(app.engine).recipients([file.id])[file.id]


def schedule_files(app: App, scope: Scope, schedule_id: int,
                   limit: int = 50) -> list[tuple[FileRow, list[RecipientRow]]]:
    schedule(app, scope, schedule_id)
    repo = ReportFileRepository(app.engine)
    files = repo.list(schedule_id, limit=limit)
    recipients = repo.recipients(f.id for f in files)
    return [(f, recipients[f.id]) for f in files]


# --- licences, catalogue, proposals, trials ------------------------------------------------------------
@dataclass(frozen=True)
class HeldLicence:
    licence: Licence
    active_today: bool


def licences(app: App, scope: Scope, client: str | int | None) -> tuple[ClientRecord, list[HeldLicence]]:
    from report_pipelines.services.commercial import licences_of

    scope.require("read licences")
    record = visible_client(app, scope, client)
    today = local_date_of(app.now(), parse_zone(record.timezone))
    return record, [HeldLicence(licence, is_active(licence, today)) for licence in licences_of(app.engine, record.id)]


@dataclass(frozen=True)
class CatalogueView:
    products: list[Product]
    policies: list[CommercialPolicy]  # for a client: the ones it is eligible for today


def catalogue_for(app: App, scope: Scope, client: str | None = None) -> CatalogueView:
    """The active products, and the policies: every one for staff, the ones a client can use today
    for a client (valid today, not used up for it, covering an active product)."""
    from report_pipelines.adapters.db.commercial import UnitOfWork

    scope.require("read the catalogue")
    with UnitOfWork(app.engine) as uow:
        products = [p for p in uow.commercial.catalogue().products.values() if p.active]
        every = uow.commercial.policies()
        if client is None and scope.client_id is None:
            return CatalogueView(products, every)
        record = visible_client(app, scope, client)
        usage = uow.commercial.usage(record.slug)
    today = local_date_of(app.now(), parse_zone(record.timezone))
    eligible = [
        policy for policy in every
        if any(policy.covers(p.code) and not proposal_reasons(policy, on=today, client_key=record.slug,
                                                              usage=usage.get(policy.code),
                                                              currency=p.list_price.currency) for p in products)]
    return CatalogueView(products, eligible)


def policies(app: App, scope: Scope) -> list[CommercialPolicy]:
    from report_pipelines.services.commercial import policies as all_policies

    scope.require("read policies")
    return all_policies(app.engine)


def _no_proposal(proposal_id: int) -> NotFound:
    return NotFound("proposal", f"no proposal with id {proposal_id}")


def proposal(app: App, scope: Scope, proposal_id: int):
    from report_pipelines.adapters.db.commercial import UnitOfWork

    scope.require("read proposals")
    with UnitOfWork(app.engine) as uow:
        known = proposal_id in uow.commercial.proposal_ids()
    if not known:
        raise _no_proposal(proposal_id)
    from report_pipelines.services.commercial import get_proposal

    stored = get_proposal(app.engine, proposal_id)
    if scope.client_id is not None and stored.client_id != scope.client_id:
        raise _no_proposal(proposal_id)
    return stored


def proposals(app: App, scope: Scope) -> list:
    from report_pipelines.services.commercial import list_proposals

    scope.require("read proposals")
    return [p for p in list_proposals(app.engine) if scope.client_id is None or p.client_id == scope.client_id]


def create_proposal(app: App, scope: Scope, *, client: str | None, prospect: tuple[str, str, str, str] | None,
                    items: Sequence[tuple[str, int]], valid_until: dt.date, policy: str | None,
                    term_days: int | None):
    from report_pipelines.services.commercial import create_proposal as create

    scope.require("draft proposals")
    if prospect is not None:
        scope.require("propose to prospects")
        if client is not None:
            raise InvalidInput("client", "give either a client or a prospect")
        return create(app.engine, items=items, valid_until=valid_until, by=scope.actor, prospect=prospect,
                      policy=policy, term_days=term_days, now=app.now())
    record = visible_client(app, scope, client)
    return create(app.engine, items=items, valid_until=valid_until, by=scope.actor, client=record.slug,
                  policy=policy, term_days=term_days, now=app.now())


def submit_proposal(app: App, scope: Scope, proposal_id: int):
    from report_pipelines.services.commercial import submit_proposal as submit

    scope.require("draft proposals")
    proposal(app, scope, proposal_id)
    return submit(app.engine, proposal_id, scope.actor, app.now())


def decide_proposal(app: App, scope: Scope, proposal_id: int, approve: bool, reason: str | None = None):
    """Approve (then apply, through the exactly-once path: a sensor racing for it writes nothing twice)
    or reject a submitted proposal."""
    from report_pipelines.services.commercial import apply_proposal, approve_proposal, reject_proposal

    scope.require("decide proposals")
    proposal(app, scope, proposal_id)
    if not approve:
        if not reason or not reason.strip():
            raise InvalidInput("reason", "say why the proposal is rejected")
        return reject_proposal(app.engine, proposal_id, scope.actor, reason.strip(), app.now())
    approve_proposal(app.engine, proposal_id, scope.actor, app.now())
    apply_proposal(app.engine, proposal_id, app.now())
    return proposal(app, scope, proposal_id)


def start_trial(app: App, scope: Scope | None, *, slug: str, name: str, timezone: str, days: int,
                products: Sequence[str] | None = None) -> ClientRecord:
    """A trial account; ``scope`` None is a public sign-up (the API checks that it is enabled)."""
    from report_pipelines.services.commercial import start_trial as trial

    if scope is not None:
        scope.require("open trials")
    options = {"products": tuple(products)} if products else {}
    return trial(app.engine, slug, name, timezone, days, now=app.now(), **options)
