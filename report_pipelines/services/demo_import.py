"""The demo's PBX import (``make demo``): a small Asterisk ``Master.csv`` + ``queue_log`` pair of a
Berlin contact centre (``report_pipelines/demo_data/``) imported for its client, the import summary,
and the queue report of that day computed from the imported calls."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine

from report_pipelines.adapters.db.repositories import CallEventRepository, ClientRepository
from report_pipelines.domain.errors import NotFound
from report_pipelines.domain.reports import get_report
from report_pipelines.domain.reports.base import DayContext
from report_pipelines.domain.reports.screening import screen_calls
from report_pipelines.domain.timezones import local_day_window, parse_zone

DEMO_DATA = Path(__file__).resolve().parent.parent / "demo_data"
SLUG, ZONE, DAY = "berlin-contact-centre", "Europe/Berlin", dt.date(2024, 3, 9)


def import_demo_pbx(engine: Engine, data_dir: str | Path, echo: Callable[[str], None] = print,
                    step: str = "7") -> list[str]:
    """Import the sample pair, print the summary and the day's queue report; return what was printed."""
    from report_pipelines.services.cdr_import import import_cdr
    from report_pipelines.services.clients import add_client

    printed: list[str] = []

    def say(line: str) -> None:
        printed.append(line)
        echo(line)

    try:
        client = ClientRepository(engine).get_by_slug(SLUG)
    except NotFound:
        client = add_client(engine, SLUG, "Berlin contact centre (PBX import)", ZONE)
    summary = import_cdr(engine, SLUG, "asterisk-csv", DEMO_DATA / "Master.csv", queue_log_path=DEMO_DATA / "queue_log",
                         data_dir=data_dir)
    say(f"{step}. import-cdr --client {SLUG} --format asterisk-csv --queue-log queue_log Master.csv:")
    for line in summary.lines():
        say(f"   {line.strip()}")
    for warning in summary.warnings:
        say(f"   warning: {warning}")
    calls = CallEventRepository(engine).day_calls(client.id, *local_day_window(DAY, parse_zone(ZONE)))
    ctx = DayContext(client.id, ZONE, DAY)
    report = get_report("queue_performance")
    table = report.present(report.combine(report.compute_day(screen_calls(calls, ctx).clean, ctx)))
    columns = ["queue", "offered", "answered", "abandoned", "missed", "service_level", "average_speed_of_answer"]
    say(f"   queue_performance of {DAY} (waits from the queue entry the queue_log gives):")
    table["queue"] = table["queue"].fillna("(no queue)")
    for line in table[columns].round(3).to_string(index=False).splitlines():
        say(f"   {line}")
    return printed
