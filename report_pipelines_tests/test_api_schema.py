"""schemathesis against the API's own OpenAPI document, served by a real uvicorn server: for every operation,
a bounded number of generated requests (with a client key and an operator key), on SQLite and PostgreSQL (which
refuses what SQLite takes: NUL bytes, integers out of range), gets no 5xx, and every
response matches its documented status, media type and schema."""

from __future__ import annotations

import os
from pathlib import Path

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from sqlalchemy import Engine

from report_pipelines_tests.api_support import running, tenants

#: Examples per operation and key: small in CI (the suite must stay fast); raise it locally to dig.
EXAMPLES = int(os.environ.get("REPORT_PIPELINES_TEST_API_EXAMPLES", "6"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


def test_every_operation_answers_within_its_schema_and_never_5xx(engine: Engine, tmp_path: Path) -> None:
    t = tenants(engine, tmp_path, rate_per_minute=1_000_000)
    client_slug = t.seeded.all_clients[0].slug
    with running(t.app) as url:
        schema = schemathesis.openapi.from_url(f"{url}/v1/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 25
        failures: list[str] = []
        for who in (client_slug, "operator"):
            headers = {"Authorization": f"Bearer {t.keys[who]}"}
            for operation in operations:
                @hypothesis.settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
                                     phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
                                     suppress_health_check=list(HealthCheck))
                @hypothesis.given(case=operation.as_strategy(headers=headers))
                def check(case) -> None:
                    response = case.call(base_url=url, timeout=60)
                    case.validate_response(response, checks=CHECKS)

                try:
                    check()
                except Exception as exc:  # collect every operation's first failure, then report them all
                    failures.append(f"{who} {operation.label}: {str(exc)[:1500]}")
    assert not failures, "\n\n".join(failures)


@pytest.mark.parametrize("path", ["/v1/openapi.json", "/v1/docs"])
def test_the_document_and_the_docs_are_served(sqlite_engine: Engine, tmp_path: Path, path: str) -> None:
    import httpx

    t = tenants(sqlite_engine, tmp_path)
    with running(t.app) as url:
        answer = httpx.get(f"{url}{path}")
    assert answer.status_code == 200
    if path.endswith(".json"):
        document = answer.json()
        assert document["info"]["title"] == "report_pipelines API"
        assert all(p.startswith("/v1/") for p in document["paths"])
        assert "HTTPBearer" in document["components"]["securitySchemes"]
