"""Local wall-clock maths for one client-local day, vectorised.

Converting every call's instant to local time through the zone (a zone lookup per value) is the
slow part of local-time reports. A day has at most a transition or two, so we find the spans of
constant UTC offset inside the day once (a few dozen ``utcoffset`` calls, cached per zone and day)
and then map any number of instants with one ``searchsorted``.

Hour buckets: a day is cut into *local clock hours*. A bucket is the part of one span during which
the local wall clock shows one hour ``HH:00-HH:59``, so:

* a 24-hour day has 24 buckets, local hours 0-23;
* a spring-forward day (America/New_York 2024-03-10) has 23: local hour 2 does not exist;
* a fall-back day (America/New_York 2024-11-03) has 25: local hour 1 twice, once per UTC offset
  (EDT -240 then EST -300), told apart by ``hour_start_utc`` and ``utc_offset_minutes``;
* half-hour shifts (Australia/Lord_Howe) give half-hour buckets: on 2024-04-07 at 02:00 (+11) the
  clock goes back to 01:30 (+10:30), so local hour 1 appears as 01:00-02:00 (+11) and again as
  01:30-02:00 (+10:30), the second bucket only 30 minutes long;
* a day whose midnight falls in a gap starts at the transition, with the first existing hour.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from report_pipelines.domain.timezones import UTC, local_day_window, parse_zone

_US = 1_000_000
#: Sampling step when looking for offset transitions inside a day (then bisected to the second).
#: Two transitions closer together than this would be seen as one; tzdata has none.
_PROBE_SECONDS = 900


@dataclass(frozen=True)
class DayClock:
    """The spans of constant UTC offset and the local-hour buckets of one local day.

    All instants are integer microseconds since the Unix epoch (UTC), ready for NumPy.
    """

    start_us: int
    end_us: int
    span_start_us: np.ndarray  # int64, ascending; span i is [span_start_us[i], span_start_us[i+1] or end)
    span_offset_s: np.ndarray  # int64, UTC offset in seconds of each span
    hour_start_us: np.ndarray  # int64, ascending start of each local-hour bucket
    hour_local: np.ndarray  # int64, the local hour (0-23) each bucket shows
    hour_offset_s: np.ndarray  # int64, UTC offset of each bucket

    def offsets_s(self, instants_us: np.ndarray) -> np.ndarray:
        """UTC offset (seconds) in force at each instant (instants must lie inside the day)."""
        span = np.searchsorted(self.span_start_us, instants_us, side="right") - 1
        return self.span_offset_s[span]

    def local_seconds(self, instants_us: np.ndarray) -> np.ndarray:
        """Local wall-clock time of each instant, as whole seconds since 1970-01-01 00:00 local
        (the sub-second part is dropped: floor)."""
        return np.floor_divide(instants_us, _US) + self.offsets_s(instants_us)

    def hour_bucket(self, instants_us: np.ndarray) -> np.ndarray:
        """Index of the local-hour bucket each instant falls in (instants must lie inside the day)."""
        return np.searchsorted(self.hour_start_us, instants_us, side="right") - 1


def _offset_at(zone, epoch_s: int) -> int:
    return int(dt.datetime.fromtimestamp(epoch_s, tz=zone).utcoffset().total_seconds())


def _spans(zone, start_s: int, end_s: int) -> list[tuple[int, int]]:
    """``[(span start, offset)]`` covering ``[start_s, end_s)`` (whole seconds)."""
    probes = list(range(start_s, end_s, _PROBE_SECONDS)) + [end_s - 1]
    spans = [(start_s, _offset_at(zone, start_s))]
    previous = probes[0]
    for probe in probes[1:]:
        offset = _offset_at(zone, probe)
        if offset != spans[-1][1]:
            lo, hi = previous, probe  # offset(lo) is the old one, offset(hi) the new one
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if _offset_at(zone, mid) == spans[-1][1]:
                    lo = mid
                else:
                    hi = mid
            spans.append((hi, offset))  # tzdata transitions fall on whole seconds
        previous = probe
    return spans


def _ints(values: list[int]) -> np.ndarray:
    return np.asarray(values, dtype=np.int64)


@lru_cache(maxsize=8192)
def day_clock(timezone: str, day: dt.date) -> DayClock:
    """The :class:`DayClock` of local ``day`` in ``timezone`` (cached)."""
    zone = parse_zone(timezone)
    start, end = local_day_window(day, zone)
    start_s, end_s = int(start.timestamp()), int(end.timestamp())
    spans = _spans(zone, start_s, end_s)
    bucket_start: list[int] = []
    bucket_hour: list[int] = []
    bucket_offset: list[int] = []
    for i, (span_start, offset) in enumerate(spans):
        span_end = spans[i + 1][0] if i + 1 < len(spans) else end_s
        hour = (span_start + offset) // 3600  # local hours since the local epoch
        while hour * 3600 - offset < span_end:
            bucket_start.append(max(hour * 3600 - offset, span_start))
            bucket_hour.append(hour % 24)
            bucket_offset.append(offset)
            hour += 1
    return DayClock(
        start_us=start_s * _US,
        end_us=end_s * _US,
        span_start_us=_ints([s for s, _ in spans]) * _US,
        span_offset_s=_ints([o for _, o in spans]),
        hour_start_us=_ints(bucket_start) * _US,
        hour_local=_ints(bucket_hour),
        hour_offset_s=_ints(bucket_offset),
    )


def utc_datetime(epoch_us: int) -> dt.datetime:
    """An aware UTC datetime from epoch microseconds (for messages)."""
    return dt.datetime(1970, 1, 1, tzinfo=UTC) + dt.timedelta(microseconds=int(epoch_us))
