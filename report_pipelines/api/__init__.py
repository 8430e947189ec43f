"""The HTTP API: another front door over the same services, built from ONE :class:`App`.

``create_api(app)`` returns the ASGI application (FastAPI) that ``report-pipelines serve`` runs with
uvicorn; everything is under ``/v1``, its OpenAPI document at ``/v1/openapi.json`` and the
interactive docs at ``/v1/docs``. The handlers are thin: they authenticate the key into a
:class:`~report_pipelines.domain.api_access.Scope`, call one scoped use case of
:mod:`report_pipelines.services.api` with it, and turn the result into a response model.

Every refusal is an RFC 9457 problem document (``application/problem+json``: ``type``, ``title``,
``status``, ``detail``, ``field``) made from the service's own one-line error; anything unexpected is
a 500 problem that says nothing of the internals (the traceback goes to the server's log only).
"""


import datetime as dt
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Annotated

from fastapi import Depends, FastAPI, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from report_pipelines.api import models as m
from report_pipelines.api.limits import Guard, RateLimiter, audit_writer, install_log_redaction
from report_pipelines.app import App
from report_pipelines.domain.api_access import Forbidden, RateLimited, Scope, Unauthorized
from report_pipelines.domain.errors import Conflict, InvalidInput, NotFound, ReportPipelinesError
from report_pipelines.services import api as svc
from report_pipelines.services.api_keys import Authenticator, record_audit

log = logging.getLogger("report_pipelines.api")

PROBLEM = "application/problem+json"
VERSION = "1.0.0"
DOCS_PATHS = ("/v1/docs", "/v1/docs/oauth2-redirect")

_TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
           409: "Conflict", 413: "Content Too Large", 422: "Unprocessable Content", 429: "Too Many Requests",
           500: "Internal Server Error", 504: "Gateway Timeout"}


def _problem(status: int, kind: str, detail: str, field: str | None = None, headers: dict | None = None,
             instance: str | None = None) -> JSONResponse:
    body = m.Problem(type=f"urn:report-pipelines:problem:{kind}", title=_TITLES.get(status, "Error"), status=status,
                     detail=detail, field=field, instance=instance)
    return JSONResponse(body.model_dump(), status_code=status, media_type=PROBLEM, headers=headers)


def problem_of(exc: ReportPipelinesError) -> JSONResponse:
    """The problem document of a service's refusal: its one line, its field."""
    field = getattr(exc, "field", None)
    detail = getattr(exc, "message", None) or str(exc)
    if isinstance(exc, Unauthorized):
        return _problem(401, "unauthorized", detail, field, {"WWW-Authenticate": "Bearer"})
    if isinstance(exc, Forbidden):
        return _problem(403, "forbidden", detail, field)
    if isinstance(exc, RateLimited):
        return _problem(429, "rate-limited", detail, field, {"Retry-After": str(exc.retry_after)})
    if isinstance(exc, NotFound):
        return _problem(404, "not-found", detail, field)
    if isinstance(exc, Conflict):
        return _problem(409, "conflict", detail, field)
    if type(exc).__name__ == "PeriodTimeout":
        return _problem(504, "deadline", f"{exc}; or ask for it with POST /v1/extractions", "deadline")
    if isinstance(exc, InvalidInput):
        return _problem(422, "invalid-input", detail, field)
    return _problem(400, "refused", str(exc), field)


_PROBLEM_CONTENT = {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}


def _problems(*statuses: int) -> dict:
    return {status: {"model": m.Problem, "content": _PROBLEM_CONTENT, "description": _TITLES[status]}
            for status in statuses}


_COMMON = _problems(401, 403, 404, 413, 422, 429)
_WRITE = {**_COMMON, **_problems(400, 409)}


def create_api(app: App) -> FastAPI:
    """The ASGI application over ``app`` (its engine, store, mailer, settings and clock)."""
    settings = app.settings.api
    auth = Authenticator(app)
    limiter = RateLimiter(settings.rate_per_minute, what=f"{settings.rate_per_minute} requests a minute for this key")
    public_trials = RateLimiter(settings.public_trials_per_hour, 3600.0,
                                what=f"{settings.public_trials_per_hour} public sign-ups an hour from this address")
    workers = ThreadPoolExecutor(max_workers=settings.extraction_workers, thread_name_prefix="rp-api-extract")
    install_log_redaction()

    api = FastAPI(title="report_pipelines API", version=VERSION, openapi_url="/v1/openapi.json",
                  docs_url="/v1/docs", redoc_url=None,
                  description="Call reports of a multi-tenant cloud PBX: period requests, scheduled reports, "
                              "licences and proposals. Authenticate with `Authorization: Bearer rp_...`. "
                              "Every refusal is an RFC 9457 problem document.")
    api.state.app = app
    api.state.workers = workers

    bearer = HTTPBearer(auto_error=False, description="An API key: rp_<prefix>_<secret>")

    def scope_of(request: Request,
                 credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Scope:
        scope = auth.scope(request.headers.get("authorization"))
        request.state.scope = scope
        limiter.take(scope.key_id)
        return scope

    Key = Annotated[Scope, Depends(scope_of)]

    # --- errors -----------------------------------------------------------------------------------------
    @api.exception_handler(ReportPipelinesError)
    async def refused(request: Request, exc: ReportPipelinesError) -> JSONResponse:
        return problem_of(exc)

    @api.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "path", "header")]
        field = ".".join(where) or "body"
        return _problem(422, "invalid-input", f"{field}: {first.get('msg', 'is not valid')}", field)

    @api.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else _TITLES.get(exc.status_code, "error")
        kind = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http")
        return _problem(exc.status_code, kind, detail, None, dict(exc.headers or {}) or None)

    @api.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        log.error("internal error on %s %s", request.method, request.url.path, exc_info=exc)
        return _problem(500, "internal", "the server could not answer this request; the operators have the details")

    # --- keys and clients -----------------------------------------------------------------------------
    @api.get("/v1/health", response_model=m.Health, tags=["meta"])
    def health() -> m.Health:
        return m.Health(status="ok")

    @api.get("/v1/me", response_model=m.KeyInfo, responses=_COMMON, tags=["meta"])
    def me(scope: Key) -> m.KeyInfo:
        client = svc.visible_client(app, scope, None).slug if scope.client_id else None
        return m.KeyInfo(prefix=scope.prefix, role=scope.role, client=client)

    @api.get("/v1/clients", response_model=list[m.ClientOut], responses=_COMMON, tags=["clients"])
    def clients(scope: Key) -> list[m.ClientOut]:
        return [m.client_out(c) for c in svc.clients(app, scope)]

    # --- reports and periods --------------------------------------------------------------------------
    @api.get("/v1/reports", response_model=list[m.ReportOut], responses=_COMMON, tags=["reports"])
    def reports(scope: Key) -> list[m.ReportOut]:
        scope.require("read reports")
        return [m.report_out(d) for d in svc.report_definitions()]

    period_content = {"content": {"text/csv": {}, "application/x-ndjson": {}, "application/vnd.apache.parquet": {},
                                  "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {}},
                      "description": "The report, streamed (chunked) with a Content-Disposition file name."}

    @api.get("/v1/reports/{report}", response_class=StreamingResponse, tags=["reports"],
             responses={200: period_content, **_problems(504), **_COMMON})
    def period(scope: Key, report: Annotated[str, Path(max_length=64, pattern=r"^[a-z][a-z0-9_]*$")],
               start: Annotated[dt.date, Query(alias="from")], end: Annotated[dt.date, Query(alias="to")],
               client: Annotated[m.Text | None, Query()] = None, shape: m.Shape = "days",
               format: m.Format = "json") -> StreamingResponse:
        """A period of ``report`` for a client's local days ``from..to``, computed within the request's
        deadline (``REPORT_PIPELINES_API_DEADLINE_S``); longer work: ``POST /v1/extractions``."""
        stream = svc.stream_period(app, scope, report, client, start, end, shape=shape, fmt=format,
                                   deadline_s=settings.deadline_s)
        return StreamingResponse(stream.chunks, media_type=stream.media_type,
                                 headers={"Content-Disposition": f'attachment; filename="{stream.name}"'})

    @api.post("/v1/extractions", status_code=202, response_model=m.ExtractionOut, responses=_WRITE,
              tags=["reports"])
    def extract(scope: Key, body: m.ExtractionIn, response: Response) -> m.ExtractionOut:
        found = svc.start_extraction(app, scope, workers.submit, report=body.report, client=body.client,
                                     start=body.start, end=body.end, shape=body.shape, fmt=body.format)
        response.headers["Location"] = f"/v1/extractions/{found.id}"
        return m.extraction_out(found)

    ExtractionId = Annotated[str, Path(min_length=1, max_length=32, pattern=r"^[0-9a-f]+$")]

    @api.get("/v1/extractions/{extraction_id}", response_model=m.ExtractionOut, responses=_COMMON, tags=["reports"])
    def extraction(scope: Key, extraction_id: ExtractionId) -> m.ExtractionOut:
        return m.extraction_out(svc.get_extraction(app, scope, extraction_id))

    @api.get("/v1/extractions/{extraction_id}/result", response_class=FileResponse, tags=["reports"],
             responses={200: period_content, **_COMMON})
    def extraction_result(scope: Key, extraction_id: ExtractionId) -> FileResponse:
        found, path = svc.extraction_file(app, scope, extraction_id)
        return FileResponse(path, media_type=svc.MEDIA_TYPES[found.format], filename=found.file_name,
                            content_disposition_type="attachment")

    # --- scheduled reports ------------------------------------------------------------------------------
    ScheduleId = Annotated[int, Path(ge=1, le=2_147_483_647)]

    @api.get("/v1/schedules", response_model=list[m.ScheduleOut], responses=_COMMON, tags=["schedules"])
    def schedules(scope: Key, client: Annotated[m.Text | None, Query()] = None) -> list[m.ScheduleOut]:
        return [m.schedule_out(row) for row in svc.schedules(app, scope, client)]

    @api.post("/v1/schedules", status_code=201, response_model=m.ScheduleOut, responses=_WRITE, tags=["schedules"])
    def schedule_add(scope: Key, body: m.ScheduleIn, response: Response) -> m.ScheduleOut:
        fields = body.changes()
        fields.pop("client", None)
        row = svc.add_schedule(app, scope, body.client, **fields)
        response.headers["Location"] = f"/v1/schedules/{row.id}"
        return m.schedule_out(row)

    @api.get("/v1/schedules/{schedule_id}", response_model=m.ScheduleOut, responses=_COMMON, tags=["schedules"])
    def schedule_get(scope: Key, schedule_id: ScheduleId) -> m.ScheduleOut:
        return m.schedule_out(svc.schedule(app, scope, schedule_id))

    @api.patch("/v1/schedules/{schedule_id}", response_model=m.ScheduleOut, responses=_WRITE, tags=["schedules"])
    def schedule_edit(scope: Key, schedule_id: ScheduleId, body: m.ScheduleFields) -> m.ScheduleOut:
        return m.schedule_out(svc.edit_schedule(app, scope, schedule_id, **body.changes()))

    @api.post("/v1/schedules/{schedule_id}/pause", response_model=m.ScheduleOut, responses=_WRITE, tags=["schedules"])
    def schedule_pause(scope: Key, schedule_id: ScheduleId, body: m.PauseIn | None = None) -> m.ScheduleOut:
        reason = (body.reason if body else None) or f"paused through the API ({scope.actor})"
        return m.schedule_out(svc.set_schedule_active(app, scope, schedule_id, False, reason))

    @api.post("/v1/schedules/{schedule_id}/resume", response_model=m.ScheduleOut, responses=_WRITE,
              tags=["schedules"])
    def schedule_resume(scope: Key, schedule_id: ScheduleId) -> m.ScheduleOut:
        return m.schedule_out(svc.set_schedule_active(app, scope, schedule_id, True))

    @api.delete("/v1/schedules/{schedule_id}", response_model=m.Deleted, responses=_WRITE, tags=["schedules"])
    def schedule_delete(scope: Key, schedule_id: ScheduleId) -> m.Deleted:
        return m.Deleted(deleted=schedule_id, files_removed=svc.delete_schedule(app, scope, schedule_id))

    @api.post("/v1/schedules/{schedule_id}/send-now", response_model=m.FileOut, responses=_WRITE, tags=["schedules"])
    def schedule_send_now(scope: Key, schedule_id: ScheduleId) -> m.FileOut:
        return m.file_out(*svc.send_schedule_now(app, scope, schedule_id))

    @api.get("/v1/schedules/{schedule_id}/files", response_model=list[m.FileOut], responses=_COMMON,
             tags=["schedules"])
    def schedule_files(scope: Key, schedule_id: ScheduleId) -> list[m.FileOut]:
        return [m.file_out(f, r) for f, r in svc.schedule_files(app, scope, schedule_id)]

    # --- licences, catalogue, proposals, trials -------------------------------------------------------------
    @api.get("/v1/clients/{client}/licences", response_model=m.LicencesOut, responses=_COMMON, tags=["commercial"])
    def licences(scope: Key, client: Annotated[str, Path(max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$")]
                 ) -> m.LicencesOut:
        return m.licences_out(*svc.licences(app, scope, client))

    @api.get("/v1/catalogue", response_model=m.CatalogueOut, responses=_COMMON, tags=["commercial"])
    def catalogue(scope: Key, client: Annotated[m.Text | None, Query()] = None) -> m.CatalogueOut:
        return m.catalogue_out(svc.catalogue_for(app, scope, client))

    @api.get("/v1/policies", response_model=list[m.PolicyOut], responses=_COMMON, tags=["commercial"])
    def policies(scope: Key) -> list[m.PolicyOut]:
        return [m.policy_out(p) for p in svc.policies(app, scope)]

    ProposalId = Annotated[int, Path(ge=1, le=2_147_483_647)]

    @api.get("/v1/proposals", response_model=list[m.ProposalOut], responses=_COMMON, tags=["commercial"])
    def proposals(scope: Key) -> list[m.ProposalOut]:
        return [m.proposal_out(p) for p in svc.proposals(app, scope)]

    @api.post("/v1/proposals", status_code=201, response_model=m.ProposalOut, responses=_WRITE, tags=["commercial"])
    def proposal_create(scope: Key, body: m.ProposalIn, response: Response) -> m.ProposalOut:
        prospect = (body.prospect.name, body.prospect.email, body.prospect.timezone, body.prospect.slug) \
            if body.prospect else None
        stored = svc.create_proposal(app, scope, client=body.client, prospect=prospect,
                                     items=[(i.product, i.quantity) for i in body.items], valid_until=body.valid_until,
                                     policy=body.policy, term_days=body.term_days)
        response.headers["Location"] = f"/v1/proposals/{stored.id}"
        return m.proposal_out(stored)

    @api.get("/v1/proposals/{proposal_id}", response_model=m.ProposalOut, responses=_COMMON, tags=["commercial"])
    def proposal_get(scope: Key, proposal_id: ProposalId) -> m.ProposalOut:
        return m.proposal_out(svc.proposal(app, scope, proposal_id))

    @api.post("/v1/proposals/{proposal_id}/submit", response_model=m.ProposalOut, responses=_WRITE,
              tags=["commercial"])
    def proposal_submit(scope: Key, proposal_id: ProposalId) -> m.ProposalOut:
        return m.proposal_out(svc.submit_proposal(app, scope, proposal_id))

    @api.post("/v1/proposals/{proposal_id}/approve", response_model=m.ProposalOut, responses=_WRITE,
              tags=["commercial"])
    def proposal_approve(scope: Key, proposal_id: ProposalId) -> m.ProposalOut:
        return m.proposal_out(svc.decide_proposal(app, scope, proposal_id, True))

    @api.post("/v1/proposals/{proposal_id}/reject", response_model=m.ProposalOut, responses=_WRITE,
              tags=["commercial"])
    def proposal_reject(scope: Key, proposal_id: ProposalId, body: m.RejectIn) -> m.ProposalOut:
        return m.proposal_out(svc.decide_proposal(app, scope, proposal_id, False, body.reason))

    @api.post("/v1/trials", status_code=201, response_model=m.ClientOut, responses=_WRITE, tags=["commercial"])
    def trial(request: Request, body: m.TrialIn,
              credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> m.ClientOut:
        """A trial account: with a sales key, or without a key when public sign-up is enabled
        (``REPORT_PIPELINES_API_PUBLIC_TRIALS``, rate-limited per address)."""
        scope = None
        if request.headers.get("authorization") or not settings.public_trials:
            scope = scope_of(request, credentials)
        else:
            request.state.actor = "public"
            public_trials.take(request.client.host if request.client else "unknown")
        record = svc.start_trial(app, scope, slug=body.slug, name=body.name, timezone=body.timezone, days=body.days,
                                 products=body.products)
        request.state.audit_detail = f"trial account {record.slug}"
        return m.client_out(record)

    # --- the guards around everything -----------------------------------------------------------------
    if settings.cors_origins:
        api.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins),
                           allow_methods=["GET", "POST", "PATCH", "DELETE"],
                           allow_headers=["Authorization", "Content-Type"], expose_headers=["Location", "Retry-After"])

    def audit(**values) -> None:
        record_audit(app, **values)

    api.add_middleware(Guard, max_body_bytes=settings.max_body_bytes, audit=audit_writer(audit), docs_paths=DOCS_PATHS)
    return api


def serve(app: App, host: str = "127.0.0.1", port: int = 8080) -> None:
    """Run the API with uvicorn until interrupted (``report-pipelines serve``)."""
    import uvicorn

    uvicorn.run(create_api(app), host=host, port=port, log_level="info", server_header=False,
                proxy_headers=False)


__all__ = ["create_api", "problem_of", "serve"]
