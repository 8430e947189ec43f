"""Call detail records (CDR) as a PBX writes them, and how they become calls. Pure Python.

A PBX logs one row per *leg*: a call that rang a queue's three members and was answered by the
third is four or five rows (the caller's leg towards each member, the members' own legs...). Asterisk
ties them together with ``linkedid`` (the ``uniqueid`` of the channel that started it all). This
module holds the leg record (:class:`Leg`), the rules that read its fields (dispositions, channels,
queues, direction), the rule that turns a PBX's naive local times into UTC instants across DST
(:class:`LocalTimes`), the cross-check of those times against the epoch in ``uniqueid``
(:class:`ClockCheck`), and :func:`collapse`, which turns the legs of one call into one
:class:`~report_pipelines.domain.calls.Call`.

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

UTC = dt.timezone.utc

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
#: At the call level (:func:`collapse`) an *inbound* call that was in a ``Queue`` and that nobody
#: answered is ABANDONED, whatever its legs said (NO ANSWER, CANCEL, or the ANSWERED that the Queue
#: application itself logs when it picks up the caller to play music on hold).
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
#: An endpoint named with 2 to 6 digits is a phone (an extension: ``SIP/201-...``, ``PJSIP/4501-...``).
EXTENSION = re.compile(r"\d{2,6}")
#: Channel technologies that only ever carry PSTN lines (cards, gateways), whatever the endpoint.
TRUNK_TECHNOLOGIES = frozenset({"DAHDI", "ZAP", "MISDN", "SS7", "KHOMP", "DGV"})
#: A dialled number that leaves the PBX: 7 or more digits, optionally after ``+``.
EXTERNAL_NUMBER = re.compile(r"\+?\d{7,}")
#: Destination contexts of calls that came in from outside (FreePBX and common hand-written dialplans).
INBOUND_CONTEXT_PREFIXES: tuple[str, ...] = (
    "from-trunk",
    "from-pstn",
    "from-did",
    "from-external",
    "from-sip-external",
    "from-inbound",
    "ext-did",
    "ext-queues",
    "incoming",
    "inbound",
)


def split_channel(channel: str) -> tuple[str, str] | None:
    """``(technology, endpoint)`` of an Asterisk channel name, or None when it is not one.

    ``SIP/201-00000a1b`` -> ``("SIP", "201")`` (the suffix after the last ``-`` is the channel's
    sequence number); ``Local/201@from-queue-0000;1`` -> ``("Local", "201")`` (the extension before
    ``@``); ``SIP/trunk-provider-0000001f`` -> ``("SIP", "trunk-provider")``.
    """
    tech, slash, rest = channel.strip().partition("/")
    if not slash or not tech or not rest:
        return None
    if tech.upper() == "LOCAL":
        endpoint = rest.split("@", 1)[0]
    else:
        endpoint = rest.rsplit("-", 1)[0] if "-" in rest else rest
    return tech, endpoint


def is_trunk_channel(channel: str) -> bool:
    """A channel to or from the outside: a PSTN technology, or an endpoint that is not an extension."""
    parts = split_channel(channel)
    if parts is None:
        return False
    tech, endpoint = parts
    if tech.upper() in TRUNK_TECHNOLOGIES:
        return True
    if tech.upper() == "LOCAL":
        return False
    return EXTENSION.fullmatch(endpoint) is None


def is_phone_channel(channel: str) -> bool:
    """A channel of one of the PBX's own phones (``SIP/201-...``, ``PJSIP/201-...``, ``IAX2/201-...``)."""
    parts = split_channel(channel)
    if parts is None:
        return False
    tech, endpoint = parts
    return tech.upper() not in TRUNK_TECHNOLOGIES and tech.upper() != "LOCAL" and bool(EXTENSION.fullmatch(endpoint))


def agent_from_channel(channel: str) -> str | None:
    """The extension behind a channel, when it is a phone or a Local channel to an extension.

    ``SIP/201-00000a1b``, ``PJSIP/201-00000a1b`` and ``Local/201@from-queue-0000;1`` all give ``201``;
    a trunk (``SIP/voipms-00000012``, ``DAHDI/i1/5551234-1``) gives None.
    """
    parts = split_channel(channel)
    if parts is None:
        return None
    tech, endpoint = parts
    if tech.upper() in TRUNK_TECHNOLOGIES or not EXTENSION.fullmatch(endpoint):
        return None
    return endpoint


def queue_from_lastdata(lastapp: str, lastdata: str) -> str | None:
    """The queue of a leg whose last application was ``Queue``: the first argument of ``lastdata``.

    ``Queue`` + ``support,t,,,300`` -> ``support`` (``|`` separated arguments of Asterisk 1.4 too).
    """
    if lastapp.strip().lower() != "queue":
        return None
    name = re.split(r"[,|]", lastdata, maxsplit=1)[0].strip()
    return name or None


def looks_external(number: str | None) -> bool:
    return bool(number) and EXTERNAL_NUMBER.fullmatch(number.strip()) is not None


def is_inbound_context(context: str) -> bool:
    return context.strip().lower().startswith(INBOUND_CONTEXT_PREFIXES)


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

    @property
    def in_queue_app(self) -> bool:
        return self.lastapp.strip().lower() == "queue"

    @property
    def answered_by_someone(self) -> bool:
        """Answered by a person or a service, not merely by the Queue application.

        ``Queue()`` answers the caller's channel to play music on hold, so a caller who hangs up in
        the queue leaves an ANSWERED leg with an empty ``dstchannel``: that is not an answer.
        """
        if self.answered_at is None or self.disposition is not Disposition.ANSWERED:
            return False
        return not (self.in_queue_app and not self.dstchannel.strip())


def origin_leg(legs: Sequence[Leg]) -> Leg:
    """The leg that started the call: the one whose ``uniqueid`` is the call's ``linkedid``, else the
    earliest (then the first in the file)."""
    ordered = sorted(legs, key=lambda leg: (leg.started_at, leg.line))
    for leg in ordered:
        if leg.uniqueid and leg.uniqueid == leg.call_id:
            return leg
    return ordered[0]


def infer_direction(legs: Sequence[Leg], origin: Leg | None = None) -> Direction:
    """Inbound, outbound or internal, from the origin leg's channel and context. In order:

    0. a direction the file states (a mapped column) wins;
    1. the origin channel is a trunk (``SIP/voipms-...``, ``DAHDI/...``) -> INBOUND;
    2. the origin channel is one of our phones (``SIP/201-...``): OUTBOUND if any leg dialled a trunk
       channel or the dialled number looks external (7+ digits, optional ``+``), else INTERNAL
       (an extension calling a queue, whose context is ``ext-queues``, stays INTERNAL);
    3. otherwise (a Local channel, an originate, no channel): an inbound destination context
       (:data:`INBOUND_CONTEXT_PREFIXES`: from-trunk*, from-pstn*, ext-queues...) -> INBOUND;
       else OUTBOUND / INTERNAL as in 2.
    """
    origin = origin or origin_leg(legs)
    stated = origin.direction or next((leg.direction for leg in legs if leg.direction), None)
    if stated is not None:
        return stated
    if is_trunk_channel(origin.channel):
        return Direction.INBOUND
    dials_out = looks_external(origin.dst) or any(is_trunk_channel(leg.dstchannel) for leg in legs)
    if not is_phone_channel(origin.channel) and is_inbound_context(origin.dcontext):
        return Direction.INBOUND
    return Direction.OUTBOUND if dials_out else Direction.INTERNAL


def collapse(client_id: int, legs: Sequence[Leg]) -> Call:
    """One call from the legs that share a ``call_id`` (check the result with ``Call.problems()``).

    - start = earliest leg start; end = latest leg end; caller/callee = the origin leg's src/dst;
    - ANSWERED if any leg was answered by someone (:attr:`Leg.answered_by_someone`); answered_at =
      the earliest such answer, so wait = answered_at - start;
    - agent = the first answering leg's stated agent, else the extension of its ``dstchannel``;
      an OUTBOUND call's agent is the extension that placed it; an unanswered call has no agent
      unless the file states one;
    - queue = the first stated queue, else the first ``Queue`` leg's first argument;
    - unanswered: the first disposition of :data:`UNANSWERED_PRIORITY` that a leg has (a leg that
      only the Queue application answered counts as NO ANSWER); an inbound call that was in a
      ``Queue`` and that nobody answered is ABANDONED.
    """
    if not legs:
        raise ValueError("collapse() needs at least one leg")
    ordered = sorted(legs, key=lambda leg: (leg.started_at, leg.line))
    origin = origin_leg(ordered)
    direction = infer_direction(ordered, origin)
    started_at = ordered[0].started_at
    ended_at = max(leg.ended_at for leg in ordered)

    queue = next((leg.queue for leg in ordered if leg.queue), None)
    if queue is None:
        queue = next((q for q in (queue_from_lastdata(leg.lastapp, leg.lastdata) for leg in ordered) if q), None)

    answering = sorted((leg for leg in ordered if leg.answered_by_someone), key=lambda leg: (leg.answered_at, leg.line))
    agent: str | None = None
    answered_at: dt.datetime | None = None
    if answering:
        disposition = Disposition.ANSWERED
        answered_at = answering[0].answered_at
        for leg in answering:
            agent = leg.agent or agent_from_channel(leg.dstchannel)
            if agent:
                break
    else:
        seen = {Disposition.NO_ANSWER if leg.disposition is Disposition.ANSWERED else leg.disposition for leg in ordered}
        disposition = next(d for d in UNANSWERED_PRIORITY if d in seen)
        if direction is Direction.INBOUND and any(leg.in_queue_app for leg in ordered):
            disposition = Disposition.ABANDONED
        agent = next((leg.agent for leg in ordered if leg.agent), None)
    if agent is None and direction is Direction.OUTBOUND:
        agent = agent_from_channel(origin.channel)

    return Call(
        client_id=client_id,
        pbx_call_id=origin.call_id,
        direction=direction,
        started_at=started_at,
        ended_at=ended_at,
        disposition=disposition,
        answered_at=answered_at,
        queue=queue,
        agent=agent,
        caller=origin.src or None,
        callee=origin.dst or None,
    )


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
