"""The partitions of every report asset: (client-local date x client time zone).

``date x client`` would be 5.5 million partitions at 5,000 clients over three years, far past
Dagster's guidance of 100,000 per asset. A partition is one local date of one time zone, and covers
every client of that zone (a handful of zones in practice): ~1,100 dates x ~10 zones.

The daily dimension is cut in ``Etc/GMT-14``, the first zone on Earth to finish a day, so a date
appears as soon as it has ended *somewhere*; a zone where it has not ended yet is refused by the run
with a clear error (the current local day is computed live, never cached).
"""

from __future__ import annotations

import dagster as dg

#: First date of the daily dimension (three years of history before the project started).
PARTITIONS_START = "2023-01-01"

#: The IANA zones licensed clients use; the client_timezones_sensor adds new ones.
TIMEZONE_PARTITIONS = dg.DynamicPartitionsDefinition(name="client_timezones")

DATE_PARTITIONS = dg.DailyPartitionsDefinition(start_date=PARTITIONS_START, timezone="Etc/GMT-14", end_offset=0)

REPORT_PARTITIONS = dg.MultiPartitionsDefinition({"date": DATE_PARTITIONS, "timezone": TIMEZONE_PARTITIONS})


def partition_key(day: str, timezone: str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({"date": day, "timezone": timezone})
