"""Use cases about clients."""

from __future__ import annotations

from sqlalchemy import Engine

from report_pipelines.adapters.db.repositories import ClientRepository
from report_pipelines.domain.clients import ClientRecord, ClientSpec


def add_client(engine: Engine, slug: str, name: str, timezone: str) -> ClientRecord:
    """Validate and store a new client; an unknown zone or a taken slug is refused, nothing written."""
    return ClientRepository(engine).add(ClientSpec.parse(slug=slug, name=name, timezone=timezone))


def list_clients(engine: Engine) -> list[ClientRecord]:
    return ClientRepository(engine).list()


def get_client(engine: Engine, slug: str) -> ClientRecord:
    return ClientRepository(engine).get_by_slug(slug)
