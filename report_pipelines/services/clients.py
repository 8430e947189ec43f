"""Use cases about clients."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Engine

from report_pipelines.adapters.db.repositories import ClientRepository
from report_pipelines.domain.clients import ClientRecord, ClientSpec
from report_pipelines.domain.errors import NotFound


def add_client(engine: Engine, slug: str, name: str, timezone: str, active_from: dt.date | None = None, *,
               now: dt.datetime | None = None) -> ClientRecord:
    """Validate and store a new client; an unknown zone or a taken slug is refused, nothing written.

    ``active_from`` is the first local date the client has reports for (default: today, locally);
    importing older calls moves it back. ``now``: the application's clock (default the wall clock).
    """
    return ClientRepository(engine).add(ClientSpec.parse(slug=slug, name=name, timezone=timezone,
                                                         active_from=active_from), now)


def list_clients(engine: Engine) -> list[ClientRecord]:
    return ClientRepository(engine).list()


def get_client(engine: Engine, slug: str) -> ClientRecord:
    """The client of ``slug``, or one line naming the field and where to look (``NotFound``)."""
    try:
        return ClientRepository(engine).get_by_slug(slug)
    except NotFound:
        raise NotFound("client", f"no client {slug!r} (see: report-pipelines clients list)") from None
