"""What a report is: a day table computed from one client's calls of one local day, and a period.

A report definition has three steps, and the split is what makes the cache exact:

1. :meth:`ReportDefinition.compute_day` turns the (screened) calls of ONE client for ONE client-local
   day into a *day table* of :attr:`ReportDefinition.schema`. The store keeps it as Parquet under
   ``<report>/client=<id>/date=<YYYY-MM-DD>/``; client and date are hive partition keys, never columns.
2. :meth:`ReportDefinition.combine` re-aggregates many stored day tables (concatenated, plus a
   ``date`` column) into a *period table*. Only additive quantities are stored in a day table
   (counts, sums, maxima), so a period is re-aggregated exactly: sum of sums, count of counts, max of
   maxima. Nothing stored is an average or a rate.
3. :meth:`ReportDefinition.present` derives averages, rates and percentages from the period table:
   always a sum over a sum (``wait_seconds_sum / answered``), never an average of daily averages.

Durations are float64 seconds. Day sums are accumulated in integer microseconds and divided once, so
a day table does not depend on the order of its input rows; PBX CDRs carry whole seconds, for which
every sum and re-aggregation is exact (float64 holds integers exactly up to 2**53).

Pure domain code: pyarrow, pandas and NumPy only; no database, no Dagster, no file I/O.
"""

from __future__ import annotations

import abc
import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import pandas as pd
import pyarrow as pa

from report_pipelines.domain.calls import INSTANT  # noqa: F401 - re-exported: the type of every instant in calls and report tables
from report_pipelines.domain.errors import InvalidInput
from report_pipelines.domain.timezones import local_day_window, parse_zone

#: A report name is used in paths and URLs.
REPORT_NAME = re.compile(r"^[a-z_]+$")

#: Default service-level threshold: a call answered within this many seconds of waiting is "in SL".
DEFAULT_SERVICE_LEVEL_SECONDS = 20


@dataclass(frozen=True)
class DayContext:
    """Which client-day a day table is for, and the parameters its maths needs.

    ``day`` is the client-*local* date: the day is ``[local midnight, next local midnight)`` in
    ``timezone`` (23, 24 or 25 hours long). ``service_level_seconds``: a call answered after waiting
    at most this long (``wait <= threshold``, the threshold itself included) is within service level.
    """

    client_id: int
    timezone: str
    day: dt.date
    service_level_seconds: int = DEFAULT_SERVICE_LEVEL_SECONDS

    def __post_init__(self) -> None:
        if isinstance(self.client_id, bool) or not isinstance(self.client_id, int):
            raise InvalidInput("client_id", f"an integer is required, not {self.client_id!r}")
        parse_zone(self.timezone)
        if isinstance(self.day, dt.datetime) or not isinstance(self.day, dt.date):
            raise InvalidInput("day", f"a date is required, not {self.day!r}")
        seconds = self.service_level_seconds
        if isinstance(seconds, bool) or not isinstance(seconds, int) or seconds < 0:
            raise InvalidInput("service_level_seconds", f"a whole number of seconds >= 0 is required, not {seconds!r}")

    @property
    def window_utc(self) -> tuple[dt.datetime, dt.datetime]:
        """``[start, end)`` of the local day, as aware UTC datetimes."""
        return local_day_window(self.day, parse_zone(self.timezone))


class ReportDefinition(abc.ABC):
    """One report. Subclass it in its own module under ``domain/reports/`` and list the module in
    ``domain/reports/__init__.py``; the registry instantiates it (no constructor arguments)."""

    name: ClassVar[str]
    title: ClassVar[str]
    description: ClassVar[str]
    #: Schema of the stored day table (no client/date columns: those are hive partition keys).
    schema: ClassVar[pa.Schema]
    #: Schema of the period table :meth:`combine` returns.
    period_schema: ClassVar[pa.Schema]
    #: Inputs besides the calls that :meth:`compute_day` takes, as keyword arguments (Arrow tables of
    #: the same client, covering the day): ``"agent_intervals"`` (the queue_log's agent sessions and
    #: pauses, :data:`~report_pipelines.domain.queue_log.AGENT_INTERVAL_SCHEMA`). The extractor reads
    #: an input only when a report it computes needs it; most reports need none.
    extra_inputs: ClassVar[tuple[str, ...]] = ()

    @abc.abstractmethod
    def compute_day(self, calls: pa.Table, ctx: DayContext) -> pa.Table:
        """The day table of ``ctx``'s client-day from its calls.

        ``calls`` are already screened (:func:`~report_pipelines.domain.reports.screening.screen_calls`)
        and all start inside the local day; a call that does not is refused with ``InvalidInput``
        rather than silently counted. Returns exactly :attr:`schema`, rows in a deterministic order;
        no calls give a valid (possibly empty) table.
        """

    @abc.abstractmethod
    def combine(self, days: pa.Table) -> pa.Table:
        """The period table: stored day tables (concatenated, plus a ``date`` date32 column)
        re-aggregated exactly (sums, counts, maxima). Rows in a deterministic order."""

    def compute_day_from(self, calls: pa.Table, ctx: DayContext, inputs: Mapping[str, pa.Table | None]) -> pa.Table:
        """:meth:`compute_day` with the :attr:`extra_inputs` it declares taken from ``inputs``
        (a missing one is None: the report computes without it)."""
        return self.compute_day(calls, ctx, **{name: inputs.get(name) for name in self.extra_inputs})

    def present(self, combined: pa.Table) -> pd.DataFrame:
        """The period as people read it. The default shows the period table as it is."""
        return combined.to_pandas()

    def totals(self, combined: pa.Table) -> pd.DataFrame | None:
        """The whole period as one presented row (a spreadsheet's "Total" line): counts and sums
        added over the period table's rows, the maximum of maxima, rates recomputed from them (sum
        over sum). ``None`` when a total makes no sense (one row per call, a distribution)."""
        return None

    def empty_day(self) -> pa.Table:
        """A day table with no rows."""
        return self.schema.empty_table()

    def __repr__(self) -> str:
        return f"<report {self.name}>"
