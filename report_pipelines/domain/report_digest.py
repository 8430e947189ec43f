"""What a report e-mail says, as data: the headline KPIs of a period, their change against the
previous period of the same length, the series a chart draws, and a small table.

Pure domain code (pyarrow and pandas over report tables; no I/O, no rendering): the HTML, the plain
text, the PDF and the charts are adapters that render a :class:`ReportDigest`.

**The KPIs** come from the ``daily_summary`` days of the period (one rule, so the e-mail agrees
with ``summarize_report``): counts added over the days, then each rate a sum over a sum:

* offered = inbound calls; answered; answer rate = answered / offered;
* service level = answered within the threshold / (offered - abandoned within the threshold), the
  threshold shown with it ("within 20 s"); when the period's days used different thresholds the
  counts cannot be added and the service level is not given;
* average speed of answer = total wait of answered calls / answered;
* abandoned rate = abandoned / offered;
* average handle time = talk time of answered inbound calls / answered. A CDR records neither
  hold nor wrap-up time, so handle time here is talk time.

**The comparison** is with the previous period of the same number of local days, ending the day
before the period starts (a 7-day week against the 7 days before it; a 31-day month against the 31
days before it). When that period starts before the client's first day, there is no comparison
(a partial period would mislead). Counts change by a difference and a percentage
("▲ 120 (+8.0 %)"), rates by percentage points ("▼ 2.1 pp"), durations by seconds ("▲ 3 s").
Whether a change is good is said separately (``better``) so a renderer never relies on colour
alone: ▲/▼ is the direction, the word or colour the judgement.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd
import pyarrow as pa

from report_pipelines.domain.errors import InvalidInput
from report_pipelines.domain.reports import get_report
from report_pipelines.domain.reports._maths import inbound_rates  # the rates' one definition
from report_pipelines.domain.reports.wait_distribution import describe_percentile, speed_of_answer_percentiles
from report_pipelines.domain.timezones import parse_zone

BODY_OPTIONS: tuple[str, ...] = ("summary", "table", "none")
#: The service-level target drawn as a line (the industry's common "80 % within 20 s").
DEFAULT_SERVICE_LEVEL_TARGET = 0.8
SUMMARY_ROWS = 5  # rows of the small table in a "summary" body
TABLE_ROWS = 50  # rows of the table in a "table" body
UP, DOWN = "▲", "▼"


# --- periods --------------------------------------------------------------------------------------------
def period_days(start: dt.date, end: dt.date) -> list[dt.date]:
    """The local days ``start..end`` (refused, naming ``end``, when it is before ``start``)."""
    if end < start:
        raise InvalidInput("end", f"{end} is before start {start}")
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


def describe_period(start: dt.date, end: dt.date, timezone: str) -> str:
    """``"2024-03-04 to 2024-03-10 (7 local days, America/New_York)"``, ``"Sun 2024-03-10 (local
    day, America/New_York)"``."""
    if start == end:
        return f"{start:%a %Y-%m-%d} (local day, {timezone})"
    return f"{start} to {end} ({len(period_days(start, end))} local days, {timezone})"


def previous_period(start: dt.date, end: dt.date, first_day: dt.date | None = None) -> tuple[dt.date, dt.date] | None:
    """The period of the same number of local days that ends the day before ``start``; ``None``
    when it would start before ``first_day`` (the client's first day of reports)."""
    length = len(period_days(start, end))
    previous = (start - dt.timedelta(days=length), start - dt.timedelta(days=1))
    if first_day is not None and previous[0] < first_day:
        return None
    return previous


# --- KPIs -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Kpis:
    """The headline figures of a period (rates in 0..1, durations in seconds; ``None``: undefined,
    e.g. a rate of a period without offered calls)."""

    offered: int
    answered: int
    abandoned: int
    answer_rate: float | None
    service_level: float | None
    service_level_seconds: int | None
    average_speed_of_answer: float | None
    abandon_rate: float | None
    average_handle_seconds: float | None


def _number(value: object) -> float | None:
    if value is None or (isinstance(value, float) and math.isnan(value)) or pd.isna(value):
        return None
    return float(value)


def period_kpis(daily_summary_days: pa.Table) -> Kpis:
    """The KPIs of a period from its ``daily_summary`` day tables (as ``read_report_arrow`` returns
    them, or the store's ``read_days``: the day rows with their ``date``)."""
    report = get_report("daily_summary")
    days = daily_summary_days.drop_columns([c for c in ("client",) if c in daily_summary_days.column_names])
    total = report.totals(report.combine(days)).iloc[0]
    threshold = _number(total["service_level_seconds"])
    return Kpis(
        offered=int(total["offered"]),
        answered=int(total["answered"]),
        abandoned=int(total["abandoned"]),
        answer_rate=_number(total["answer_rate"]),
        service_level=_number(total["service_level"]),
        service_level_seconds=None if threshold is None else int(threshold),
        average_speed_of_answer=_number(total["average_speed_of_answer"]),
        abandon_rate=_number(total["abandon_rate"]),
        average_handle_seconds=_number(total["average_talk_seconds"]),
    )


@dataclass(frozen=True)
class KpiLine:
    """One KPI as shown: its value, and its change against the previous period when there is one.

    ``direction`` is ``"up"``, ``"down"``, ``"same"`` or ``None`` (nothing to compare);
    ``better`` is True/False when the change is good/bad news, ``None`` when neither (offered calls,
    handle time) or unknown.
    """

    key: str
    label: str
    value: float | int | None
    shown: str
    previous_shown: str | None = None
    change: str | None = None
    direction: str | None = None
    better: bool | None = None


# (key, label, kind, which direction is good: +1 up, -1 down, 0 neither)
_KPI_ROWS = (
    ("offered", "Offered", "count", 0),
    ("answered", "Answered", "count", +1),
    ("answer_rate", "Answer rate", "rate", +1),
    ("service_level", "Service level", "rate", +1),
    ("average_speed_of_answer", "Average speed of answer", "duration", -1),
    ("abandon_rate", "Abandoned rate", "rate", -1),
    ("average_handle_seconds", "Average handle time", "duration", 0),
)


def format_count(value: float | int | None) -> str:
    return "–" if value is None else f"{int(value):,}"


def format_rate(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f} %"


def format_duration(seconds: float | None) -> str:
    """``"42 s"``, ``"3 min 05 s"``, ``"1 h 02 min"``; ``"–"`` when undefined."""
    if seconds is None:
        return "–"
    whole = int(round(seconds))
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def _shown(kind: str, value: float | int | None) -> str:
    return {"count": format_count, "rate": format_rate, "duration": format_duration}[kind](value)


def _change(kind: str, now: float, before: float) -> tuple[str, str]:
    """``(direction, text)`` of the change from ``before`` to ``now``."""
    if kind == "count":
        difference = int(now) - int(before)
        relative = f" ({difference / before * 100:+.1f} %)" if before else ""
        magnitude = f"{abs(difference):,}{relative}"
    elif kind == "rate":
        difference = round((now - before) * 100, 1)  # percentage points, as shown
        magnitude = f"{abs(difference):.1f} pp"
    else:
        difference = round(now) - round(before)  # whole seconds, as shown
        magnitude = format_duration(abs(difference))
    if difference == 0:
        return "same", "= no change"
    direction = "up" if difference > 0 else "down"
    return direction, f"{UP if direction == 'up' else DOWN} {magnitude}"


def compare_kpis(current: Kpis, previous: Kpis | None) -> tuple[KpiLine, ...]:
    """The KPI lines in the order a manager reads them, each with its change against ``previous``
    (``None``: no comparison). The service level's label names its threshold."""
    lines = []
    for key, label, kind, good in _KPI_ROWS:
        value = getattr(current, key)
        if key == "service_level":
            label = (f"Service level (within {current.service_level_seconds} s)" if current.service_level_seconds is not None
                     else "Service level (thresholds differ in the period)")
        line = KpiLine(key=key, label=label, value=value, shown=_shown(kind, value))
        before = getattr(previous, key) if previous is not None else None
        comparable = key != "service_level" or (previous is not None
                                                and previous.service_level_seconds == current.service_level_seconds)
        if previous is not None:
            line = dataclasses.replace(line, previous_shown=_shown(kind, before))
        if value is not None and before is not None and comparable:
            direction, text = _change(kind, float(value), float(before))
            better = None if good == 0 or direction == "same" else (direction == "up") == (good > 0)
            line = dataclasses.replace(line, change=text, direction=direction, better=better)
        lines.append(line)
    return tuple(lines)


# --- chart series ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrafficSeries:
    """What the charts draw: one point per local hour (a one-day period: 23, 24 or 25 points on a
    DST day, each labelled by its local clock) or per local day (longer periods).

    ``labels`` are local: ``"09:00"`` (the repeated hour of a fall-back day carries its zone
    abbreviation, ``"01:00 EDT"`` / ``"01:00 EST"``), or ``"Mon 03"`` for a day. ``marked``: points
    whose label a chart must show even when it thins its labels out (around a DST change).
    ``service_level`` per point is NaN where nothing was offered.
    """

    unit: str  # "hour" or "day"
    labels: tuple[str, ...]
    marked: tuple[bool, ...]
    offered: tuple[int, ...]
    answered: tuple[int, ...]
    abandoned: tuple[int, ...]
    missed: tuple[int, ...]
    service_level: tuple[float, ...]
    service_level_seconds: int | None
    target: float
    axis_label: str
    note: str = ""  # e.g. "a 25-hour day: clocks went back at 02:00"


def _service_levels(frame: pd.DataFrame) -> tuple[float, ...]:
    return tuple(float(v) if pd.notna(v) else math.nan for v in frame["service_level"])


def _single_threshold(frame: pd.DataFrame) -> int | None:
    thresholds = set(frame["service_level_seconds"].dropna().astype(int))
    return thresholds.pop() if len(thresholds) == 1 else None


def hourly_series(hourly_day: pa.Table, timezone: str, target: float = DEFAULT_SERVICE_LEVEL_TARGET) -> TrafficSeries:
    """The series of ONE local day from its ``hourly_volume`` day table (every local-hour bucket,
    in order: 23 on a spring-forward day, 25 on a fall-back day)."""
    zone = parse_zone(timezone)
    frame = hourly_day.to_pandas().sort_values("hour_start_utc").reset_index(drop=True)
    if "date" in frame and frame["date"].nunique() > 1:
        raise InvalidInput("tables", "an hourly chart draws one local day; this table holds several")
    frame = inbound_rates(frame)
    repeated = frame["local_hour"].duplicated(keep=False)
    labels, marked = [], []
    previous_offset = None
    for start, offset, again in zip(frame["hour_start_utc"], frame["utc_offset_minutes"], repeated, strict=True):
        local = pd.Timestamp(start).tz_convert(zone)
        label = local.strftime("%H:%M")
        if again:
            label += f" {local.tzname()}"
        labels.append(label)
        marked.append(bool(again) or (previous_offset is not None and offset != previous_offset))
        previous_offset = offset
    hours = len(frame)
    note = ""
    if any(marked):
        shift = "went forward" if hours < 24 else "went back"
        length = (frame["utc_offset_minutes"].iloc[0] - frame["utc_offset_minutes"].iloc[-1]) / 60 + 24
        note = f"a {length:g}-hour day: clocks {shift}"
    return TrafficSeries(
        unit="hour", labels=tuple(labels), marked=tuple(marked),
        offered=tuple(int(v) for v in frame["offered"]), answered=tuple(int(v) for v in frame["answered"]),
        abandoned=tuple(int(v) for v in frame["abandoned"]), missed=tuple(int(v) for v in frame["missed"]),
        service_level=_service_levels(frame), service_level_seconds=_single_threshold(frame), target=target,
        axis_label=f"local hour ({timezone})", note=note,
    )


def daily_series(daily_summary_days: pa.Table, timezone: str, start: dt.date, end: dt.date,
                 target: float = DEFAULT_SERVICE_LEVEL_TARGET) -> TrafficSeries:
    """The series of a period, one point per local day ``start..end`` (a day missing from the
    table is drawn as zero), from its ``daily_summary`` day tables."""
    report = get_report("daily_summary")
    days = daily_summary_days.drop_columns([c for c in ("client",) if c in daily_summary_days.column_names])
    frame = report.present(report.combine(days)).set_index("date")
    wanted = period_days(start, end)
    frame = frame.reindex(wanted)
    counts = ["offered", "answered", "abandoned", "missed"]
    frame[counts] = frame[counts].fillna(0)
    long_days = [f"{d:%a %d} had {s / 3600:g} hours" for d, s in zip(wanted, frame["day_seconds"], strict=True)
                 if pd.notna(s) and s != 86_400]
    return TrafficSeries(
        unit="day", labels=tuple(f"{d:%a %d}" if len(wanted) <= 14 else f"{d:%d %b}" for d in wanted),
        marked=tuple(False for _ in wanted),
        offered=tuple(int(v) for v in frame["offered"]), answered=tuple(int(v) for v in frame["answered"]),
        abandoned=tuple(int(v) for v in frame["abandoned"]), missed=tuple(int(v) for v in frame["missed"]),
        service_level=_service_levels(frame), service_level_seconds=_single_threshold(frame.dropna(subset=["day_seconds"])),
        target=target, axis_label=f"local day ({timezone})",
        note=f"DST: {', '.join(long_days)}" if long_days else "",
    )


# --- the small table ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DigestTable:
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    numeric: tuple[bool, ...]  # right-aligned columns


def _text(value: object) -> str:
    return "(no queue)" if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA \
        else str(value)


def _rate_or_dash(value: object) -> str:
    return format_rate(_number(value))


def _duration_or_dash(value: object) -> str:
    return format_duration(_number(value))


def _table(title: str, frame: pd.DataFrame, spec: Sequence[tuple[str, str, object]]) -> DigestTable:
    """``spec``: (column heading, source column, formatter) per column; the first is the row key."""
    rows = tuple(tuple(fmt(row[source]) for _, source, fmt in spec) for _, row in frame.iterrows())
    return DigestTable(title=title, columns=tuple(h for h, _, _ in spec), rows=rows,
                       numeric=tuple(i > 0 for i in range(len(spec))))


_TRAFFIC = (("Offered", "offered", format_count), ("Answered", "answered", format_count),
            ("Service level", "service_level", _rate_or_dash), ("Avg speed of answer", "average_speed_of_answer", _duration_or_dash),
            ("Abandoned", "abandon_rate", _rate_or_dash))


def report_table(report_name: str, tables: Mapping[str, pa.Table], limit: int) -> DigestTable | None:
    """The table a report's e-mail shows (at most ``limit`` rows): the top queues by offered calls
    (queue_performance), the top agents by calls handled (agent_performance), the speed-of-answer
    percentiles per queue (wait_distribution), when callers hang up per queue (abandonment_curve),
    the agents by logged-in time with their paused and talk time and occupancy (agent_availability),
    every day (daily_summary: the busiest first in a summary), or else the busiest local hours of
    the period (from hourly_volume)."""
    def combined(name: str) -> pd.DataFrame | None:
        if name not in tables:
            return None
        report = get_report(name)
        days = tables[name]
        return report.present(report.combine(days.drop_columns([c for c in ("client",) if c in days.column_names])))

    if report_name == "queue_performance" and (frame := combined(report_name)) is not None:
        frame = frame[frame["offered"] > 0].sort_values(["offered", "queue"], ascending=[False, True]).head(limit)
        return _table("Top queues by offered calls", frame, (("Queue", "queue", _text), *_TRAFFIC))
    if report_name == "agent_performance" and (frame := combined(report_name)) is not None:
        frame = frame.sort_values(["calls_handled", "agent"], ascending=[False, True]).head(limit)
        return _table("Top agents by calls handled", frame, (
            ("Agent", "agent", _text), ("Handled", "calls_handled", format_count),
            ("Inbound answered", "inbound_answered", format_count),
            ("Avg talk", "average_talk_seconds", _duration_or_dash), ("Avg handle", "average_handle_seconds", _duration_or_dash)))
    if report_name == "wait_distribution" and report_name in tables:
        return _percentile_table(tables[report_name], limit)
    if report_name == "abandonment_curve" and (frame := combined(report_name)) is not None:
        return _abandonment_table(frame, limit)
    if report_name == "agent_availability" and (frame := combined(report_name)) is not None:
        frame = frame[frame["pause_reason"].isna()]  # each agent's own row; the reason rows are in the attachment
        frame = frame.sort_values(["logged_in_seconds", "talk_seconds_sum", "agent"], ascending=[False, False, True])
        return _table("Agents by logged-in time", frame.head(limit), (
            ("Agent", "agent", _text), ("Logged in", "logged_in_seconds", _duration_or_dash),
            ("Paused", "paused_seconds", _duration_or_dash), ("Talk", "talk_seconds_sum", _duration_or_dash),
            ("Occupancy", "occupancy", _rate_or_dash)))
    if report_name == "daily_summary" and (frame := combined(report_name)) is not None:
        frame = frame.sort_values(["offered", "date"], ascending=[False, True]) if limit <= SUMMARY_ROWS else frame
        return _table("Busiest days" if limit <= SUMMARY_ROWS else "Days", frame.head(limit),
                      (("Day", "date", lambda d: f"{d:%a %Y-%m-%d}"), *_TRAFFIC))
    if (frame := combined("hourly_volume")) is not None:
        frame = frame[frame["offered"] > 0].sort_values(["offered", "local_hour"], ascending=[False, True]).head(limit)
        return _table("Busiest local hours of the period", frame,
                      (("Hour", "local_hour", lambda h: f"{int(h):02d}:00"), *_TRAFFIC))
    return None


def _percentile_table(days: pa.Table, limit: int) -> DigestTable:
    report = get_report("wait_distribution")
    combined = report.combine(days.drop_columns([c for c in ("client",) if c in days.column_names]))
    found = speed_of_answer_percentiles(combined, (50, 90))
    rows = []
    for (queue, everything), group in found.groupby([found["queue"].map(_text), "all_queues"], sort=False):
        by = {int(r["percentile"]): r for r in group.to_dict("records")}
        rows.append((everything, -int(by[50]["answered"]), queue, (
            "All queues" if everything else queue, format_count(by[50]["answered"]),
            describe_percentile(by[50]).split(" ", 1)[1], describe_percentile(by[90]).split(" ", 1)[1])))
    rows.sort(key=lambda r: (not r[0], r[1], r[2]))  # "All queues" first, then the queues answering most
    rows = [r[3] for r in rows[:limit]]
    return DigestTable(title="Speed of answer per queue (p50, p90)", columns=("Queue", "Answered", "p50", "p90"),
                       rows=tuple(rows), numeric=(False, True, True, True))


def _abandonment_table(frame: pd.DataFrame, limit: int) -> DigestTable:
    rows = []
    key = frame["queue"].map(_text)
    for queue, group in frame.groupby(key, sort=False):
        total = int(group["abandoned"].sum())
        if not total:
            continue
        upper = group["waited_to_seconds"]
        within = {s: int(group.loc[upper.notna() & (upper <= s), "abandoned"].sum()) for s in (30, 60)}
        rows.append((total, queue, (queue, format_count(total), format_rate(within[30] / total),
                                    format_rate(within[60] / total), format_rate((total - within[60]) / total))))
    rows.sort(key=lambda r: (-r[0], r[1]))
    return DigestTable(title="When callers hang up (share of each queue's abandoned calls)",
                       columns=("Queue", "Abandoned", "within 30 s", "within 60 s", "after 60 s"),
                       rows=tuple(r[2] for r in rows[:limit]), numeric=(False, True, True, True, True))


# --- the digest -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReportDigest:
    """Everything a report e-mail (HTML, text) or its PDF shows, already formatted."""

    client_name: str
    timezone: str
    report_name: str
    report_title: str
    start: dt.date
    end: dt.date
    body: str
    kpis: Kpis
    kpi_lines: tuple[KpiLine, ...]
    previous: tuple[dt.date, dt.date] | None
    series: TrafficSeries  # what the charts draw (an e-mail shows them in a "summary" body; a PDF always)
    table: DigestTable | None
    notes: tuple[str, ...] = field(default=())
    message: str | None = None  # the subscriber's own paragraph (lines), shown first

    @property
    def period_text(self) -> str:
        return describe_period(self.start, self.end, self.timezone)

    @property
    def previous_text(self) -> str:
        if self.previous is None:
            return "no previous period to compare with"
        a, b = self.previous
        return f"compared with {a:%a %Y-%m-%d}" if a == b else f"compared with {a} to {b}"


def build_digest(client_name: str, timezone: str, report_name: str, start: dt.date, end: dt.date,
                 tables: Mapping[str, pa.Table], previous_tables: Mapping[str, pa.Table] | None, *,
                 body: str = "summary", previous: tuple[dt.date, dt.date] | None = None,
                 service_level_target: float = DEFAULT_SERVICE_LEVEL_TARGET) -> ReportDigest:
    """The digest of ``report_name`` for a client's period ``start..end`` (local days in ``timezone``).

    ``tables``: day tables by report name, as ``read_report_arrow`` returns them; ``daily_summary``
    is required (the KPIs and a longer period's chart), ``hourly_volume`` draws a one-day period by
    hour and gives the busiest hours, the report's own tables give its table.
    ``previous_tables``: the previous period's (``daily_summary`` is what is used), ``None``: no
    comparison; ``previous``: that period's days, for the text.
    """
    if body not in BODY_OPTIONS:
        raise InvalidInput("body", f"{body!r} is not one of {', '.join(BODY_OPTIONS)}")
    parse_zone(timezone)
    report = get_report(report_name)
    if "daily_summary" not in tables:
        raise InvalidInput("tables", "the daily_summary day tables of the period are required (the KPIs come from them)")
    if not 0 < service_level_target <= 1:
        raise InvalidInput("service_level_target", f"a share in (0, 1] is required, not {service_level_target!r}")
    days = period_days(start, end)
    kpis = period_kpis(tables["daily_summary"])
    before = period_kpis(previous_tables["daily_summary"]) if previous_tables and "daily_summary" in previous_tables else None
    if len(days) == 1 and "hourly_volume" in tables:
        series = hourly_series(tables["hourly_volume"], timezone, service_level_target)
    else:
        series = daily_series(tables["daily_summary"], timezone, start, end, service_level_target)
    table = None
    if body in ("summary", "table"):
        table = report_table(report.name, tables, SUMMARY_ROWS if body == "summary" else TABLE_ROWS)
    notes = []
    if kpis.offered == 0:
        notes.append("No inbound calls were offered in this period.")
    return ReportDigest(client_name=client_name, timezone=timezone, report_name=report.name, report_title=report.title,
                        start=start, end=end, body=body, kpis=kpis, kpi_lines=compare_kpis(kpis, before),
                        previous=previous if before is not None else None, series=series, table=table,
                        notes=tuple(notes))


__all__ = ["BODY_OPTIONS", "DEFAULT_SERVICE_LEVEL_TARGET", "DigestTable", "KpiLine", "Kpis", "ReportDigest",
           "TrafficSeries", "build_digest", "compare_kpis", "daily_series", "describe_period", "format_duration", "format_rate",
           "hourly_series", "period_days", "period_kpis", "previous_period", "report_table"]
