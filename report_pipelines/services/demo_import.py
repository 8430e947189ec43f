"""The demo's PBX import (``make demo``): a small Asterisk ``Master.csv`` + ``queue_log`` pair of a
Berlin contact centre (``report_pipelines/demo_data/``) imported for its client, the import summary,
and the queue and agent availability reports of that day computed from the imported calls and agent
sessions."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine

from report_pipelines.adapters.db.repositories import AgentIntervalRepository, CallEventRepository, ClientRepository
from report_pipelines.domain.errors import NotFound
from report_pipelines.domain.reports import get_report
from report_pipelines.domain.reports.base import DayContext
from report_pipelines.domain.reports.screening import screen_calls
from report_pipelines.domain.timezones import local_day_window, parse_zone

DEMO_DATA = Path(__file__).resolve().parent.parent / "demo_data"
SLUG, ZONE, DAY = "berlin-contact-centre", "Europe/Berlin", dt.date(2024, 3, 9)


def import_demo_pbx(engine: Engine, data_dir: str | Path, echo: Callable[[str], None] = print,
                    step: str = "7") -> list[str]:
    """Import the sample pair, print the summary and the day's queue and agent reports; return what was printed."""
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
    window = local_day_window(DAY, parse_zone(ZONE))
    calls = CallEventRepository(engine).day_calls(client.id, *window)
    ctx = DayContext(client.id, ZONE, DAY)
    screened = screen_calls(calls, ctx).clean
    inputs = {"agent_intervals": AgentIntervalRepository(engine).zone_day_intervals([client.id], *window)[client.id]}

    def show(name: str, columns: list[str], title: str, blanks: dict[str, str]) -> None:
        report = get_report(name)
        table = report.present(report.combine(report.compute_day_from(screened, ctx, inputs)))
        table = table.fillna(blanks)
        say(f"   {name} of {DAY} ({title}):")
        for line in table[columns].round(3).to_string(index=False).splitlines():
            say(f"   {line}")

    show("queue_performance", ["queue", "offered", "answered", "abandoned", "missed", "service_level",
                               "average_speed_of_answer"], "waits from the queue entry the queue_log gives",
         {"queue": "(no queue)"})
    show("agent_availability", ["agent", "pause_reason", "logged_in_seconds", "paused_seconds", "reason_paused_seconds",
                                "talk_seconds_sum", "open_intervals", "occupancy"],
         "sessions and pauses from the queue_log, talk from the calls", {"pause_reason": "(agent)"})
    return printed
