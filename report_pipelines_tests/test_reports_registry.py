"""The registry of report definitions, and the contract every report keeps on empty input."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pyarrow as pa
import pytest

from report_pipelines.adapters.db.bulk import CALL_EVENT_SCHEMA
from report_pipelines.domain.errors import InvalidInput, NotFound
from report_pipelines.domain.reports import (
    REPORT_MODULES,
    REPORTS,
    DayContext,
    ReportDefinition,
    get_report,
    report_names,
)
from report_pipelines.domain.reports._calls import CALL_SCHEMA

CTX = DayContext(client_id=1, timezone="America/New_York", day=dt.date(2024, 11, 3))


def test_known_reports() -> None:
    assert report_names() == ("call_detail", "hourly_volume", "agent_performance", "queue_performance",
                              "daily_summary", "wait_distribution", "abandonment_curve", "agent_availability")
    assert len(REPORT_MODULES) == len(REPORTS)
    for name in report_names():
        report = get_report(name)
        assert isinstance(report, ReportDefinition) and report.name == name
        assert report.title and report.description
        assert not {"client", "client_id", "date"} & set(report.schema.names)
    with pytest.raises(TypeError):
        REPORTS["x"] = REPORTS["call_detail"]  # type: ignore[index]


def test_unknown_report_is_not_found_and_names_the_known_ones() -> None:
    with pytest.raises(NotFound) as caught:
        get_report("hourly")
    assert caught.value.field == "report"
    assert str(caught.value) == (
        "report: unknown report 'hourly'; known: call_detail, hourly_volume, agent_performance, queue_performance, "
        "daily_summary, wait_distribution, abandonment_curve, agent_availability")


@pytest.mark.parametrize("name", list(REPORTS))
def test_every_report_returns_exactly_its_schema_on_empty_input(name: str) -> None:
    report = get_report(name)
    day = report.compute_day(CALL_EVENT_SCHEMA.empty_table(), CTX)
    assert day.schema.equals(report.schema, check_metadata=True)
    # hourly_volume writes every hour of the day even without calls (a 25-hour day here), daily_summary
    # the one row of the day; the others have no row without calls
    assert day.num_rows == {"hourly_volume": 25, "daily_summary": 1}.get(name, 0)
    days = day.append_column("date", pa.array([CTX.day] * day.num_rows, type=pa.date32()))
    combined = report.combine(days)
    assert combined.schema.equals(report.period_schema)
    empty_period = report.combine(report.empty_day().append_column("date", pa.array([], type=pa.date32())))
    assert empty_period.num_rows == 0 and empty_period.schema.equals(report.period_schema)
    assert isinstance(report.present(empty_period), pd.DataFrame)
    assert isinstance(report.present(combined), pd.DataFrame)


def test_reports_read_the_columns_of_the_call_event_schema() -> None:
    """The domain keeps its own copy of the call columns (it may not import the database adapter)."""
    for field in CALL_SCHEMA:
        assert CALL_EVENT_SCHEMA.field(field.name).type == field.type


def test_day_context_refuses_what_it_cannot_use() -> None:
    with pytest.raises(InvalidInput, match="timezone"):
        DayContext(1, "Mars/Olympus", dt.date(2024, 1, 1))
    with pytest.raises(InvalidInput, match="service_level_seconds"):
        DayContext(1, "UTC", dt.date(2024, 1, 1), service_level_seconds=-1)
    with pytest.raises(InvalidInput, match="day"):
        DayContext(1, "UTC", dt.datetime(2024, 1, 1))  # type: ignore[arg-type]
