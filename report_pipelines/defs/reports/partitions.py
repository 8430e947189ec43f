"""The partitions of the report cache: one per client-local date; every zone of it inside the run.

A partition is a local date. Its run computes that date for every served client of the zones it is
given (run config ``zones``; by default every zone where the date has ended), each client-day on the
bounded worker pool in zone-day batches. Why the zone is not a partition dimension (it was, until
the speed work): Dagster records events per partition and asset, so (date x zone) partitions of seven
report assets cost 262 event-log records and 0.76 MB for one day of ten zones, and a UI backfill of N
dates x all zones became N runs (Dagster cuts a two-dimensional selection into one range per date).
With one asset over dates, a day of every zone is one run of a dozen records, and a backfill of any
date range is one run (``BackfillPolicy.single_run``).

The daily dimension is cut in ``Etc/GMT-14``, the first zone on Earth to finish a day, so a date appears
as soon as it has ended *somewhere*; the zones where it has not ended yet are left out of a run of it
(the closed-days sensor asks for each zone when its day ends), and asked for by name they are
refused in one line (the current local day is computed live, never cached).

The first date is a setting (``REPORT_PIPELINES_HISTORY_START``, default 2020-01-01), so imported
history of earlier years can be extracted and backfilled once the setting is moved back; no sensor
ever asks for a date before it.
"""

from __future__ import annotations

import datetime as dt

import dagster as dg


def date_partitions(first: dt.date) -> dg.DailyPartitionsDefinition:
    return dg.DailyPartitionsDefinition(start_date=first.isoformat(), timezone="Etc/GMT-14", end_offset=0)
