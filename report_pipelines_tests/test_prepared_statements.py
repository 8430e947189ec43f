"""Hot read statements prepared once per pooled PostgreSQL connection (``adapters.db.prepared``).

Against the real server: the prepared statement gives the rows (and the Python types) the statement
gives, is prepared once per connection, is prepared again when the server forgot it or a migration
changed its result under it, and is not used inside a transaction."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy import Column, Engine, Integer, MetaData, Table, event, insert, literal_column, select, text

from report_pipelines.adapters.db.commercial import _reports_licences_query
from report_pipelines.adapters.db.engine import transaction_free
from report_pipelines.adapters.db.models import Client, ClientProductRow
from report_pipelines.adapters.db.prepared import Prepared, prepared
from report_pipelines.services.demo import ensure_reports_product


def _statements(engine: Engine) -> list[str]:
    seen: list[str] = []
    event.listen(engine, "before_cursor_execute", lambda *args: seen.append(args[2]))
    return seen


def _seed_two_clients(engine: Engine) -> None:
    ensure_reports_product(engine, dt.datetime(2024, 1, 1, tzinfo=dt.UTC))
    with engine.begin() as conn:
        conn.execute(insert(Client), [
            {"id": 1, "slug": "acme", "name": "Acme", "timezone": "Europe/Lisbon", "active_from": dt.date(2024, 1, 1),
             "created_at": dt.datetime(2024, 1, 1, tzinfo=dt.UTC)},
            {"id": 2, "slug": "globex", "name": "Globex", "timezone": "Asia/Tokyo", "active_from": dt.date(2024, 2, 1),
             "created_at": dt.datetime(2024, 1, 1, tzinfo=dt.UTC)}])
        conn.execute(insert(ClientProductRow), [
            {"client_id": 1, "product_code": "REPORTS", "quantity": 3, "unit_price": Decimal("49.90"),
             "discount": Decimal("4.99"), "currency": "EUR", "valid_from": dt.date(2024, 1, 1), "valid_to": None,
             "trial": False, "source_proposal": None, "created_at": dt.datetime(2024, 1, 1, tzinfo=dt.UTC)},
            {"client_id": 1, "product_code": "REPORTS", "quantity": 1, "unit_price": Decimal("0"),
             "discount": Decimal("0"), "currency": "EUR", "valid_from": dt.date(2023, 12, 1),
             "valid_to": dt.date(2023, 12, 31), "trial": True, "source_proposal": None,
             "created_at": dt.datetime(2024, 1, 1, tzinfo=dt.UTC)}])


def test_a_prepared_statement_gives_what_the_statement_gives_and_is_prepared_once_per_connection(
        pg_engine: Engine) -> None:
    _seed_two_clients(pg_engine)
    query = _reports_licences_query(True, False, False, True)
    params = {"ids": [1, 2, 99]}
    with pg_engine.connect() as conn:
        plain = conn.execute(query, params).all()
    assert [(r.id, r.quantity, r.unit_price) for r in plain] == [
        (1, 3, Decimal("49.90")), (1, 1, Decimal("0")), (2, None, None)]  # licences in id order, then none
    seen = _statements(pg_engine)
    with transaction_free(pg_engine) as conn:
        first = prepared(query).execute(conn, params).all()
        second = prepared(query).execute(conn, params).all()
        on_server = conn.execute(text("SELECT count(*) FROM pg_prepared_statements")).scalar()
    assert first == plain and second == plain
    assert [type(v) for v in first[0]] == [type(v) for v in plain[0]]  # Decimal from the text column, dates, bools
    assert len([s for s in seen if s.startswith("PREPARE ")]) == 1 and on_server == 1
    assert len([s for s in seen if s.startswith("EXECUTE ")]) == 2


def test_a_statement_the_server_forgot_or_whose_result_changed_is_prepared_again(pg_engine: Engine) -> None:
    table = Table("scratch_prepared", MetaData(), Column("id", Integer, primary_key=True), Column("v", Integer))
    table.create(pg_engine)
    with pg_engine.begin() as conn:
        conn.execute(insert(table), [{"id": 1, "v": 10}, {"id": 2, "v": 20}])
    statement = Prepared(select(table.c.v).where(table.c.id == 2))  # its own: not another test's
    seen = _statements(pg_engine)
    with transaction_free(pg_engine) as conn:
        assert statement.execute(conn, {}).scalar() == 20
        conn.exec_driver_sql("DEALLOCATE ALL")  # what a pooler's DISCARD ALL does to the session
        assert statement.execute(conn, {}).scalar() == 20
        conn.exec_driver_sql("ALTER TABLE scratch_prepared ALTER COLUMN v TYPE bigint")  # a migration
        assert statement.execute(conn, {}).scalar() == 20
    prepares = [s for s in seen if s.startswith(("PREPARE ", "DEALLOCATE rp_"))]
    assert [s.split()[0] for s in prepares] == ["PREPARE", "PREPARE", "DEALLOCATE", "PREPARE"], prepares


def test_inside_a_transaction_the_statement_runs_as_it_is(pg_engine: Engine) -> None:
    _seed_two_clients(pg_engine)
    query = _reports_licences_query(True, False, False, True)
    seen = _statements(pg_engine)
    with pg_engine.begin() as conn:  # a failed EXECUTE would abort the caller's transaction: not here
        rows = prepared(query).execute(conn, {"ids": [2]}).all()
    assert [r.slug for r in rows] == ["globex"]
    assert not [s for s in seen if s.startswith(("PREPARE", "EXECUTE"))] and "client_products" in seen[-1]


def test_a_literal_percent_reaches_the_server_as_one_percent(pg_engine: Engine) -> None:
    """The driver escapes ``%`` as ``%%`` in a statement with parameters; PREPARE's text is sent as it is."""
    _seed_two_clients(pg_engine)
    statement = Prepared(select(Client.slug).where(Client.slug.like(literal_column("'a%'")), Client.id > 0))
    seen = _statements(pg_engine)
    with transaction_free(pg_engine) as conn:
        assert statement.execute(conn, {}).scalars().all() == ["acme"]
    [prepare] = [s for s in seen if s.startswith("PREPARE ")]
    assert "'a%'" in prepare and "%%" not in prepare
