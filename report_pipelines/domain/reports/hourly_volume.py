"""``hourly_volume``: traffic per local clock hour of the client's day."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pandas as pd
import pyarrow as pa

from report_pipelines.domain.reports._calls import prepare
from report_pipelines.domain.reports._maths import (
    INBOUND_COUNTS,
    INBOUND_MAXIMA,
    INBOUND_SUMS,
    count,
    inbound_measures,
    inbound_rates,
    regroup,
    totals_frame,
    unrated_if_mixed,
)
from report_pipelines.domain.reports.base import INSTANT, DayContext, ReportDefinition
from report_pipelines.domain.reports.local_time import day_clock

COUNTS = (*INBOUND_COUNTS, "outbound", "internal")
SUMS = INBOUND_SUMS
MAXIMA = INBOUND_MAXIMA


class HourlyVolumeReport(ReportDefinition):
    """Calls per local clock hour; a call counts in the hour its local start time shows.

    Day table: one row per local-hour bucket of the day (see ``local_time``), **every** hour of the
    day, with zeros where there were no calls, so a stored day is visibly complete: 24 rows, 23 on a
    spring-forward day, 25 on a fall-back day (the repeated hour twice, with its two
    ``utc_offset_minutes`` and ``hour_start_utc``). Keys: ``hour_start_utc`` (UTC instant the bucket
    starts), ``local_hour`` (0-23), ``utc_offset_minutes`` (local - UTC), ``service_level_seconds``.

    Counts (inbound traffic is what a contact centre is measured on):
    ``offered`` = inbound calls; ``answered`` / ``abandoned`` = inbound ANSWERED / ABANDONED;
    ``missed`` = inbound NO ANSWER, BUSY or FAILED (so answered + abandoned + missed = offered);
    ``answered_within_sl`` = inbound answered with wait <= threshold; ``abandoned_within_sl`` =
    inbound abandoned with (ended_at - wait start) <= threshold; ``outbound``, ``internal`` = calls of
    those directions. Sums and maxima are over inbound calls: ``wait_seconds_sum``/``_max`` over the
    answered (answered_at - wait start; max null when none), ``abandoned_wait_seconds_sum`` over the
    abandoned (ended_at - wait start), ``talk_seconds_sum`` over the answered (ended_at - answered_at).
    The wait starts at ``queued_at`` (the queue entry) when the PBX's queue_log said it, else at
    ``started_at``. Calls of direction ``unknown`` are in no count (not offered, not outbound or
    internal): the import counts and shows them.

    Period (:meth:`combine`): one row per ``local_hour`` (and threshold), counts and sums added, max
    of maxima, ``hour_buckets`` = how many day buckets were merged. A DST repeated hour is merged
    into its local hour: on a fall-back day both 01:00 buckets add to ``local_hour`` 1 (so that day
    gives hour 1 two hours of traffic and ``hour_buckets`` counts 2 for it); a spring-forward day adds
    nothing to the hour it skips. Thresholds that differ between days stay separate rows.
    """

    name: ClassVar[str] = "hourly_volume"
    title: ClassVar[str] = "Hourly volume"
    description: ClassVar[str] = "Offered, answered, abandoned and missed calls, waits and talk time per local hour."
    schema: ClassVar[pa.Schema] = pa.schema(
        [
            ("hour_start_utc", INSTANT),
            ("local_hour", pa.int32()),
            ("utc_offset_minutes", pa.int32()),
            ("service_level_seconds", pa.int32()),
            *[(name, pa.int64()) for name in COUNTS],
            *[(name, pa.float64()) for name in SUMS],
            *[(name, pa.float64()) for name in MAXIMA],
        ]
    )
    period_schema: ClassVar[pa.Schema] = pa.schema(
        [
            ("local_hour", pa.int32()),
            ("service_level_seconds", pa.int32()),
            ("hour_buckets", pa.int64()),
            *[(name, pa.int64()) for name in COUNTS],
            *[(name, pa.float64()) for name in SUMS],
            *[(name, pa.float64()) for name in MAXIMA],
        ]
    )

    def compute_day(self, calls: pa.Table, ctx: DayContext) -> pa.Table:
        c = prepare(calls, ctx)
        clock = day_clock(ctx.timezone, ctx.day)
        k = len(clock.hour_start_us)
        hour = clock.hour_bucket(c.start_us)
        columns = {
            "hour_start_utc": pa.array(clock.hour_start_us, type=pa.int64()).cast(INSTANT),
            "local_hour": pa.array(clock.hour_local, type=pa.int32()),
            "utc_offset_minutes": pa.array(clock.hour_offset_s // 60, type=pa.int32()),
            "service_level_seconds": pa.array(np.full(k, ctx.service_level_seconds), type=pa.int32()),
            **inbound_measures(c, hour, k, ctx.service_level_seconds),
            "outbound": count(hour, c.outbound, k),
            "internal": count(hour, c.internal, k),
        }
        return pa.Table.from_pydict(columns, schema=self.schema)

    def combine(self, days: pa.Table) -> pa.Table:
        return regroup(days, self.period_schema, keys=["local_hour", "service_level_seconds"],
                       sums=[*COUNTS, *SUMS], maxima=MAXIMA, counted="hour_buckets")

    def present(self, combined: pa.Table) -> pd.DataFrame:
        """The period per local hour with :func:`~report_pipelines.domain.reports._maths.inbound_rates` (sum over sum)."""
        return inbound_rates(combined)

    def totals(self, combined: pa.Table) -> pd.DataFrame:
        """The period's rows added up into one presented row (see ``ReportDefinition.totals``)."""
        return unrated_if_mixed(self.present(totals_frame(combined, sums=(*COUNTS, *SUMS), maxima=MAXIMA)), combined)
