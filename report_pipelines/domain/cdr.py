"""Call detail records (CDR) as a PBX writes them, and how they become calls. Pure Python.

A PBX logs one row per *leg*: a call that rang a queue's three members and was answered by the
third is four or five rows (the caller's leg towards each member, the members' own legs...). Asterisk
ties them together with ``linkedid`` (the ``uniqueid`` of the channel that started it all). This
module holds the leg record (:class:`Leg`), the rules that read its fields (dispositions, queues,
applications, direction: :func:`decide_direction`, with channels read by
:mod:`~report_pipelines.domain.pbx`), the rule that turns a PBX's naive local times into UTC
instants across DST (:class:`LocalTimes`), the cross-check of those times against the epoch in
``uniqueid`` (:class:`ClockCheck`), and :func:`collapse`, which turns the legs of one call into one
:class:`~report_pipelines.domain.calls.Call` (by :mod:`~report_pipelines.domain.cdr_collapse`).

Nothing here reads files or speaks SQL: readers (``adapters.sources.cdr``) build the legs, the
service (``services.cdr_import``) groups them and stores the calls.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from report_pipelines.domain.calls import Call, Direction, Disposition
from report_pipelines.domain.errors import InvalidInput
from report_pipelines.domain.pbx import Context, Evidence, Kind, PbxConfig

UTC = dt.UTC

#: The ``--format`` values the CDR import understands.
CDR_FORMATS: tuple[str, ...] = ("asterisk-csv", "asterisk-db", "mapped-csv")

# --- dispositions ---------------------------------------------------------------------------------
#: Asterisk CDR disposition -> ours. Matched after trimming, case-insensitively; anything else is
#: refused (the row is rejected with the value it had).
#:
#: | Asterisk     | ours      | why                                                                 |
#: |--------------|-----------|---------------------------------------------------------------------|
#: | ANSWERED     | ANSWERED  | someone (or something: IVR, voicemail) picked up                    |
#: | NO ANSWER    | NO ANSWER | rang out                                                            |
#: | BUSY         | BUSY      | the far end was busy                                                |
#: | FAILED       | FAILED    | the channel could not be set up                                     |
#: | CONGESTION   | FAILED    | no route / trunk congestion: the call never reached anyone          |
#: | CANCEL       | NO ANSWER | the caller hung up while it rang (ABANDONED if queued, see below)   |
#: | UNKNOWN      | FAILED    | Asterisk could not tell: not a call anyone could have answered      |
#:
#: At the call level (:mod:`~report_pipelines.domain.cdr_collapse`) an *inbound* call no agent took
#: is NO ANSWER when it went to voicemail, ABANDONED when the PBX held it (in a ``Queue``, or answered
#: by an IVR or announcement: the ANSWERED those applications log is not an agent's answer) and the
#: caller hung up, whatever its legs said; a queue_log then has the last word on queue calls.
PBX_DISPOSITIONS: dict[str, Disposition] = {
    "ANSWERED": Disposition.ANSWERED,
    "NO ANSWER": Disposition.NO_ANSWER,
    "BUSY": Disposition.BUSY,
    "FAILED": Disposition.FAILED,
    "CONGESTION": Disposition.FAILED,
    "CANCEL": Disposition.NO_ANSWER,
    "UNKNOWN": Disposition.FAILED,
}

#: Which disposition an unanswered call gets from its legs: the first of these that any leg has.
#: A ring group where one phone was busy and the others rang out was not answered (NO ANSWER);
#: only when every leg was busy is the call BUSY; FAILED only when nothing else happened.
UNANSWERED_PRIORITY: tuple[Disposition, ...] = (
    Disposition.ABANDONED,
    Disposition.NO_ANSWER,
    Disposition.BUSY,
    Disposition.FAILED,
)


def map_disposition(value: str, field: str = "disposition") -> Disposition:
    """Our disposition for an Asterisk one (see :data:`PBX_DISPOSITIONS`), or refuse it."""
    found = PBX_DISPOSITIONS.get(value.strip().upper())
    if found is None:
        known = ", ".join(PBX_DISPOSITIONS)
        raise InvalidInput(field, f"unknown disposition {value!r} (expected one of {known})")
    return found


# --- channels, queues, numbers --------------------------------------------------------------------
#: A dialled number that leaves the PBX: 7 or more digits, optionally after ``+``.
EXTERNAL_NUMBER = re.compile(r"\+?\d{7,}")
#: Applications a call waits in for an agent (hanging up there is abandoning).
QUEUE_APPS = frozenset({"queue"})
#: Applications that take a message instead of an agent (a call that ends there was missed).
VOICEMAIL_APPS = frozenset({"voicemail", "voicemailmain", "vm", "minivmrecord"})


def agent_from_channel(channel: str, config: PbxConfig | None = None) -> str | None:
    """The extension behind a channel (see :meth:`PbxConfig.extension_of`); a trunk gives None."""
    return (config or PbxConfig()).extension_of(channel)


def queue_from_lastdata(lastapp: str, lastdata: str) -> str | None:
    """The queue of a leg whose last application was ``Queue``: the first argument of ``lastdata``.

    ``Queue`` + ``support,t,,,300`` -> ``support`` (``|`` separated arguments of Asterisk 1.4 too).
    """
    if lastapp.strip().lower() not in QUEUE_APPS:
        return None
    name = re.split(r"[,|]", lastdata, maxsplit=1)[0].strip()
    return name or None


def looks_external(number: str | None) -> bool:
    return bool(number) and EXTERNAL_NUMBER.fullmatch(number.strip()) is not None


def app_class(lastapp: str) -> str:
    """``queue``, ``voicemail`` or ``other``: what a leg's last application means for the caller."""
    name = lastapp.strip().lower()
    if name in QUEUE_APPS:
        return "queue"
    if name in VOICEMAIL_APPS:
        return "voicemail"
    return "other"


_UNIQUEID = re.compile(r"(?:^|-)(\d{9,10})\.\d+$")
_EPOCH_MIN = 946_684_800  # 2000-01-01
_EPOCH_MAX = 4_102_444_800  # 2100-01-01


def epoch_of_uniqueid(uniqueid: str | None) -> int | None:
    """The epoch second at which Asterisk created the channel, from its ``uniqueid``.

    ``1710062102.345`` -> ``1710062102`` (``.345`` is a channel counter, not a fraction of a second);
    ``pbx1-1710062102.345`` (``systemname`` set in asterisk.conf) too. Anything else -> None.
    """
    if not uniqueid:
        return None
    match = _UNIQUEID.search(uniqueid.strip())
    if match is None:
        return None
    epoch = int(match.group(1))
    return epoch if _EPOCH_MIN <= epoch < _EPOCH_MAX else None


# --- direction ------------------------------------------------------------------------------------
#: Why a call got its direction (the import summary counts calls by these).
BASES: dict[str, str] = {
    "stated": "stated by the file",
    "configured-trunk": "the caller's channel is a configured trunk",
    "configured-phone": "the caller's channel is a configured extension",
    "technology": "the caller's channel is a PSTN technology (DAHDI...)",
    "inbound-context": "an inbound dialplan context (from-pstn, from-trunk...)",
    "internal-context": "the phones' dialplan context (from-internal...)",
    "did": "the dialled number is one of the client's DIDs",
    "extension-shape": "the caller's channel looks like an extension (2-5 digits)",
    "named-peer": "the caller's channel is a named peer, like a trunk",
    "no-evidence": "nothing in the records says (pass --trunk, --extensions or --did)",
}


def decide_direction(stated: Direction | None, origin: tuple[Kind, Evidence], context: Context,
                     dst_is_did: bool, dst_external: bool, dials_trunk: bool) -> tuple[Direction, str]:
    """A call's direction from its origin leg and what its legs dialled, and the basis (a key of
    :data:`BASES`). The strongest evidence present decides, in this order:

    1. a direction the file states (a mapped column);
    2. the caller's channel by the client's configuration: a trunk -> INBOUND, an extension ->
       placed by a phone;
    3. a PSTN-only technology (DAHDI...) -> INBOUND;
    4. the origin leg's dialplan context: inbound (from-pstn...) -> INBOUND, the phones' context
       (from-internal...) -> placed by a phone;
    5. a dialled number that is one of the client's DIDs -> INBOUND;
    6. the channel's shape: 2-5 digits -> placed by a phone; a named peer -> INBOUND;
    7. otherwise UNKNOWN: never guessed, counted in the import summary.

    A call placed by a phone is OUTBOUND when a leg dialled a trunk or the dialled number looks
    external (7+ digits, optional ``+``), else INTERNAL.
    """
    if stated is not None:
        return stated, "stated"
    kind, evidence = origin
    placed: str | None = None
    if evidence is Evidence.CONFIGURED and kind is Kind.TRUNK:
        return Direction.INBOUND, "configured-trunk"
    if evidence is Evidence.CONFIGURED and kind is Kind.PHONE:
        placed = "configured-phone"
    elif evidence is Evidence.TECHNOLOGY and kind is Kind.TRUNK:
        return Direction.INBOUND, "technology"
    elif context is Context.INBOUND:
        return Direction.INBOUND, "inbound-context"
    elif context is Context.INTERNAL:
        placed = "internal-context"
    elif dst_is_did:
        return Direction.INBOUND, "did"
    elif evidence is Evidence.SHAPE and kind is Kind.PHONE:
        placed = "extension-shape"
    elif evidence is Evidence.SHAPE and kind is Kind.TRUNK:
        return Direction.INBOUND, "named-peer"
    else:
        return Direction.UNKNOWN, "no-evidence"
    return (Direction.OUTBOUND if dials_trunk or dst_external else Direction.INTERNAL), placed


# --- the leg record -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Leg:
    """One CDR row, read and checked: instants in UTC, disposition already ours.

    ``call_id`` is what groups legs into a call (``linkedid``, else ``uniqueid``, else the mapped call
    id column). ``queue``, ``agent`` and ``direction`` are set when the file says them outright (a
    call-centre export); for a PBX they are derived from the channel fields by :func:`collapse`.
    ``local_start`` (as logged, naive) and ``epoch`` (from ``uniqueid``) feed :class:`ClockCheck`.
    """

    line: int
    call_id: str
    started_at: dt.datetime
    ended_at: dt.datetime
    disposition: Disposition
    answered_at: dt.datetime | None = None
    uniqueid: str | None = None
    src: str | None = None
    dst: str | None = None
    dcontext: str = ""
    channel: str = ""
    dstchannel: str = ""
    lastapp: str = ""
    lastdata: str = ""
    queue: str | None = None
    agent: str | None = None
    direction: Direction | None = None
    local_start: dt.datetime | None = None
    epoch: int | None = None
    queued_at: dt.datetime | None = None


def collapse(client_id: int, legs: Sequence[Leg], config: PbxConfig | None = None) -> Call:
    """One call from the legs that share a ``call_id``: the rules of
    :func:`report_pipelines.domain.cdr_collapse.collapse_legs`, applied to one call."""
    from report_pipelines.domain.cdr_collapse import collapse_legs, legs_table

    if not legs:
        raise ValueError("collapse() needs at least one leg")
    if len({leg.call_id for leg in legs}) != 1:
        raise ValueError("collapse() takes the legs of one call")
    [call] = collapse_legs(legs_table(legs), client_id, config or PbxConfig()).calls()
    return call


def infer_direction(legs: Sequence[Leg], config: PbxConfig | None = None) -> Direction:
    """The direction :func:`collapse` gives these legs (see :func:`decide_direction`)."""
    return collapse(0, legs, config).direction


# --- local times ----------------------------------------------------------------------------------
def format_offset(offset: dt.timedelta) -> str:
    """``UTC-03:00``, ``UTC+05:30``, ``UTC+00:00``."""
    minutes = round(offset.total_seconds() / 60)
    sign = "-" if minutes < 0 else "+"
    hours, minutes = divmod(abs(minutes), 60)
    return f"UTC{sign}{hours:02d}:{minutes:02d}"


def zone_name(zone: dt.tzinfo) -> str:
    return getattr(zone, "key", None) or str(zone)


class LocalTimes:
    """Turns a PBX's naive wall-clock times, in one zone, into UTC instants. The DST rules:

    - **Fall-back overlap** (a wall time that happens twice): the candidate within ``tolerance`` of
      ``expected`` (the ``uniqueid`` epoch for a start; start + duration for an end) wins; without
      one, the first candidate not before ``not_before``; else the first occurrence (``fold=0``),
      counted in :attr:`overlaps_guessed` so the import can say so.
    - **Spring-forward gap** (a wall time that never happened): only ``expected`` can say which
      instant was meant (a PBX whose clock switched early or late); without it the time is refused.
    - Instants before 2000 or after ``latest`` (the import's instant plus a day) are refused: a PBX
      with an unset clock logs 1970, and a far-future time would break the streaming grouping.

    Errors are :class:`InvalidInput` naming ``field`` (the file's column).
    """

    def __init__(self, zone: dt.tzinfo, *, latest: dt.datetime | None = None,
                 tolerance: dt.timedelta = dt.timedelta(minutes=10)) -> None:
        self.zone = zone
        self.name = zone_name(zone)
        self.earliest = dt.datetime(2000, 1, 1, tzinfo=UTC)
        self.latest = latest
        self.tolerance = tolerance
        self.overlaps_guessed = 0
        self.resolved_by_expected = 0
        # (fold=0 offset, fold=1 offset) by wall-clock minute: DST transitions fall on whole minutes.
        self._offsets: dict[tuple[int, int, int, int, int], tuple[dt.timedelta, dt.timedelta]] = {}

    def check_range(self, instant: dt.datetime, field: str, shown: str) -> dt.datetime:
        if instant < self.earliest:
            raise InvalidInput(field, f"{shown} is before 2000 (is the PBX clock set?)")
        if self.latest is not None and instant > self.latest:
            raise InvalidInput(field, f"{shown} is in the future")
        return instant

    def to_utc(self, naive: dt.datetime, field: str, *, expected: dt.datetime | None = None,
               not_before: dt.datetime | None = None) -> dt.datetime:
        key = (naive.year, naive.month, naive.day, naive.hour, naive.minute)
        offsets = self._offsets.get(key)
        if offsets is None:
            if len(self._offsets) > 100_000:
                self._offsets.clear()
            wall = naive.replace(second=0, microsecond=0)
            offsets = self._offsets[key] = (wall.replace(tzinfo=self.zone, fold=0).utcoffset() or dt.timedelta(0),
                                            wall.replace(tzinfo=self.zone, fold=1).utcoffset() or dt.timedelta(0))
        off0, off1 = offsets
        first = naive.replace(tzinfo=UTC, fold=0) - off0
        if off0 == off1:
            if first < self.earliest or (self.latest is not None and first > self.latest):
                self.check_range(first, field, naive.isoformat(sep=" "))
            return first
        shown = naive.isoformat(sep=" ")
        second = naive.replace(tzinfo=UTC, fold=0) - off1
        candidates = (first, second)
        if expected is not None:
            nearest = min(candidates, key=lambda c: abs(c - expected))
            if abs(nearest - expected) <= self.tolerance:
                self.resolved_by_expected += 1
                return self.check_range(nearest, field, shown)
        if off1 > off0:  # the clocks went forward: this wall time never happened
            raise InvalidInput(
                field,
                f"{shown} does not exist in {self.name} (the clocks went forward from {format_offset(off0)} "
                f"to {format_offset(off1)}; no uniqueid to tell which instant was meant)",
            )
        # The clocks went back: the wall time happened twice, first at `first` (fold=0), then at `second`.
        if not_before is not None:
            if first < not_before <= second:
                return self.check_range(second, field, shown)
        self.overlaps_guessed += 1
        return self.check_range(first, field, shown)


class ClockCheck:
    """Do the times read from a file agree with the epoch in Asterisk's ``uniqueid``?

    ``uniqueid`` starts with the epoch second at which the channel was created, which is the leg's
    start in UTC. For each observed leg, the deviation (start as we converted it - that epoch) and
    the offset the PBX actually used (its wall time - that epoch) are counted, rounded to minutes and
    to 15 minutes; memory stays bounded whatever the file's size. When the median deviation is more
    than ``threshold``, :meth:`warning` says which offset the times look like.
    """

    def __init__(self, zone_label: str, threshold: dt.timedelta = dt.timedelta(minutes=5)) -> None:
        self.zone_label = zone_label
        self.threshold_minutes = threshold.total_seconds() / 60
        # (deviation in minutes, offset used in 15-minute steps) -> rows
        self.counts: Counter[tuple[int, int]] = Counter()
        self.samples = 0

    def observe(self, local_start: dt.datetime, started_at: dt.datetime, epoch: int) -> None:
        started = started_at.timestamp()
        used = (local_start - _EPOCH0_NAIVE).total_seconds() - started
        deviation = max(-1440, min(1440, round((started - epoch) / 60)))
        self.counts[(deviation, round(used / 900))] += 1
        self.samples += 1

    def observe_many(self, local_us, started_us, epochs) -> None:
        """:meth:`observe` for arrays: local wall times and starts in epoch microseconds, epochs in seconds."""
        import numpy as np

        started = started_us / 1e6
        used = local_us / 1e6 - started
        deviation = np.clip(np.round((started - epochs) / 60), -1440, 1440).astype(np.int64)
        steps = np.round(used / 900).astype(np.int64)
        keys, counts = np.unique((deviation + 1440) * 1_000_000 + (steps + 500_000), return_counts=True)
        for key, count in zip(keys.tolist(), counts.tolist(), strict=False):
            dev, step = divmod(key, 1_000_000)
            self.counts[(dev - 1440, step - 500_000)] += count
        self.samples += int(counts.sum())

    def _sum_by(self, index: int) -> Counter[int]:
        result: Counter[int] = Counter()
        for key, count in self.counts.items():
            result[key[index]] += count
        return result

    def median_deviation_minutes(self) -> int | None:
        if not self.samples:
            return None
        deviations = self._sum_by(0)
        middle = (self.samples - 1) // 2
        seen = 0
        for value in sorted(deviations):
            seen += deviations[value]
            if seen > middle:
                return value
        raise AssertionError("unreachable")  # pragma: no cover

    def warning(self) -> str | None:
        median = self.median_deviation_minutes()
        if median is None or abs(median) <= self.threshold_minutes:
            return None
        # The offset the PBX used = the offset we used minus the deviation, most often seen.
        actual_counts: Counter[int] = Counter()
        for (deviation, used_steps), count in self.counts.items():
            actual_counts[round((used_steps * 15 + deviation) / 15) * 15] += count
        actual = actual_counts.most_common(1)[0][0]
        used = "/".join(format_offset(dt.timedelta(minutes=15 * m)) for m in sorted(self._sum_by(1)))
        return (
            f"times look like {format_offset(dt.timedelta(minutes=actual))} but the zone {self.zone_label} was used "
            f"({used} at those times): the epoch in uniqueid disagrees with the start by a median of "
            f"{median:+d} minutes over {self.samples} rows"
        )


_EPOCH0_NAIVE = dt.datetime(1970, 1, 1)
