"""CDR rules in the domain: no files, no database."""

from __future__ import annotations

import dataclasses
import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from report_pipelines.domain.calls import MAX_TEXT, Direction, Disposition
from report_pipelines.domain.cdr import (
    PBX_DISPOSITIONS,
    ClockCheck,
    Leg,
    LocalTimes,
    agent_from_channel,
    collapse,
    epoch_of_uniqueid,
    format_offset,
    infer_direction,
    map_disposition,
    queue_from_lastdata,
)
from report_pipelines.domain.errors import InvalidInput

UTC = dt.timezone.utc
NY = ZoneInfo("America/New_York")
LISBON = ZoneInfo("Europe/Lisbon")
T0 = dt.datetime(2024, 3, 9, 14, 15, 2, tzinfo=UTC)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def leg(line: int, *, call_id: str = "1709993702.100", uniqueid: str | None = "1709993702.100", start: float = 0,
        answer: float | None = None, end: float = 60, disposition: Disposition = Disposition.NO_ANSWER,
        **fields) -> Leg:  # noqa: ANN003
    return Leg(line=line, call_id=call_id, uniqueid=uniqueid, started_at=at(start), ended_at=at(end),
               answered_at=None if answer is None else at(answer), disposition=disposition, **fields)


# --- dispositions, channels, queues ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("pbx", "ours"),
    [("ANSWERED", Disposition.ANSWERED), ("NO ANSWER", Disposition.NO_ANSWER), ("BUSY", Disposition.BUSY),
     ("FAILED", Disposition.FAILED), ("CONGESTION", Disposition.FAILED), ("CANCEL", Disposition.NO_ANSWER),
     ("UNKNOWN", Disposition.FAILED), (" no answer ", Disposition.NO_ANSWER), ("busy", Disposition.BUSY)],
)
def test_disposition_table(pbx: str, ours: Disposition) -> None:
    assert map_disposition(pbx) is ours


def test_the_table_covers_every_asterisk_disposition_and_refuses_others() -> None:
    assert set(PBX_DISPOSITIONS) == {"ANSWERED", "NO ANSWER", "BUSY", "FAILED", "CONGESTION", "CANCEL", "UNKNOWN"}
    for bad in ("TRANSFERRED", "", "NOANSWER"):
        with pytest.raises(InvalidInput) as err:
            map_disposition(bad)
        assert err.value.field == "disposition"
        assert f"unknown disposition {bad!r}" in err.value.message


@pytest.mark.parametrize(
    ("channel", "agent"),
    [("SIP/201-00000a1b", "201"), ("PJSIP/201-00000a1b", "201"), ("Local/201@from-queue-0000;1", "201"),
     ("IAX2/4501-1234", "4501"), ("PJSIP/201", "201"), ("SIP/trunk-provider-0000001f", None),
     ("PJSIP/voipms-00000012", None), ("DAHDI/12-1", None), ("DAHDI/i1/5551234-1f", None), ("", None), ("garbage", None)],
)
def test_agent_from_channel(channel: str, agent: str | None) -> None:
    assert agent_from_channel(channel) == agent


@pytest.mark.parametrize(
    ("lastapp", "lastdata", "queue"),
    [("Queue", "support,t,,,300", "support"), ("queue", "sales|t|||300", "sales"), ("Queue", "", None),
     ("Dial", "SIP/201,20", None)],
)
def test_queue_from_lastdata(lastapp: str, lastdata: str, queue: str | None) -> None:
    assert queue_from_lastdata(lastapp, lastdata) == queue


@pytest.mark.parametrize(
    ("uniqueid", "epoch"),
    [("1710062102.345", 1710062102), ("pbx1-1710062102.7", 1710062102), ("", None), (None, None),
     ("legacy-0042", None), ("5.122", None), ("1710062102", None)],
)
def test_epoch_of_uniqueid(uniqueid: str | None, epoch: int | None) -> None:
    assert epoch_of_uniqueid(uniqueid) == epoch


# --- direction ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("origin", "others", "direction"),
    [
        (dict(channel="SIP/trunk-00000010", dcontext="ext-queues", dst="4000"), [], Direction.INBOUND),
        (dict(channel="DAHDI/1-1", dcontext="from-internal", dst="201"), [], Direction.INBOUND),
        (dict(channel="Local/s@ivr-0001;2", dcontext="from-trunk-voipms", dst="s"), [], Direction.INBOUND),
        (dict(channel="SIP/201-00000040", dstchannel="SIP/trunk-00000041", dcontext="from-internal", dst="9"), [],
         Direction.OUTBOUND),
        (dict(channel="PJSIP/203-00000060", dcontext="from-internal", dst="+442079460000"), [], Direction.OUTBOUND),
        (dict(channel="SIP/201-00000070", dstchannel="SIP/202-00000071", dcontext="from-internal", dst="202"), [],
         Direction.INTERNAL),
        # An extension calling a queue lands in ext-queues too: still internal, its origin is a phone.
        (dict(channel="PJSIP/203-00000080", dcontext="ext-queues", dst="4000", lastapp="Queue"), [], Direction.INTERNAL),
        # A leg further on dials out through a trunk (a follow-me to a mobile).
        (dict(channel="SIP/201-00000090", dstchannel="Local/202@from-internal-0001;1", dcontext="from-internal",
              dst="202"), [dict(channel="Local/202@from-internal-0001;2", dstchannel="SIP/trunk-00000092")],
         Direction.OUTBOUND),
        (dict(channel="SIP/trunk-00000010", direction=Direction.OUTBOUND), [], Direction.OUTBOUND),
    ],
)
def test_direction_rule(origin: dict, others: list[dict], direction: Direction) -> None:
    legs = [leg(1, **origin)] + [leg(2 + i, uniqueid=f"1709993703.{i}", **o) for i, o in enumerate(others)]
    assert infer_direction(legs) is direction


# --- collapsing -----------------------------------------------------------------------------------
def queue_call_legs() -> list[Leg]:
    """A queue call rang 201 (no answer), then 202 answered through a Local channel."""
    trunk = dict(channel="SIP/trunk-00000010", dcontext="ext-queues", src="+12125550101", dst="4000",
                 lastapp="Queue", lastdata="support,t,,,300")
    return [
        leg(1, end=18, dstchannel="Local/201@from-queue-00000011;1", **trunk),
        # The member's own leg starts 3 s later and is written before the caller's leg.
        leg(2, uniqueid="1709993705.103", start=3, answer=18, end=300, disposition=Disposition.ANSWERED,
            channel="Local/202@from-queue-00000012;2", dstchannel="SIP/202-00000013", dcontext="from-queue",
            src="+12125550101", dst="202", lastapp="Dial", lastdata="SIP/202,,tr"),
        leg(3, answer=18, end=300, disposition=Disposition.ANSWERED, dstchannel="Local/202@from-queue-00000012;1", **trunk),
    ]


def test_a_queue_call_collapses_into_one_answered_call() -> None:
    call = collapse(7, queue_call_legs())
    assert call.problems() == []
    assert (call.client_id, call.pbx_call_id, call.direction, call.disposition) == (
        7, "1709993702.100", Direction.INBOUND, Disposition.ANSWERED)
    assert (call.started_at, call.answered_at, call.ended_at) == (at(0), at(18), at(300))
    assert (call.queue, call.agent, call.caller, call.callee) == ("support", "202", "+12125550101", "4000")


def test_the_origin_is_the_leg_whose_uniqueid_is_the_linkedid() -> None:
    legs = queue_call_legs()
    # The member's leg starts at the same second as the caller's, and comes first in the file.
    member = legs[1]
    legs[1] = dataclasses.replace(member, started_at=at(0), line=0)
    call = collapse(7, legs)
    assert (call.direction, call.caller, call.callee) == (Direction.INBOUND, "+12125550101", "4000")


def test_a_caller_who_hangs_up_in_the_queue_is_abandoned_even_though_queue_answered_the_channel() -> None:
    trunk = dict(channel="SIP/trunk-00000014", dcontext="ext-queues", src="+13105550102", dst="4001",
                 lastapp="Queue", lastdata="sales,t,,,300")
    legs = [leg(1, end=45, dstchannel="Local/201@from-queue-00000015;1", **trunk),
            leg(2, answer=0, end=45, disposition=Disposition.ANSWERED, dstchannel="", **trunk)]
    call = collapse(1, legs)
    assert (call.disposition, call.answered_at, call.agent, call.queue) == (Disposition.ABANDONED, None, None, "sales")
    assert call.problems() == []


@pytest.mark.parametrize(
    ("dispositions", "expected"),
    [((Disposition.NO_ANSWER, Disposition.NO_ANSWER), Disposition.NO_ANSWER),
     ((Disposition.BUSY, Disposition.NO_ANSWER), Disposition.NO_ANSWER),
     ((Disposition.BUSY, Disposition.BUSY), Disposition.BUSY),
     ((Disposition.FAILED, Disposition.BUSY), Disposition.BUSY),
     ((Disposition.FAILED, Disposition.FAILED), Disposition.FAILED)],
)
def test_an_unanswered_ring_group_takes_the_most_telling_disposition(
        dispositions: tuple[Disposition, Disposition], expected: Disposition) -> None:
    legs = [leg(i, end=15, disposition=d, channel="PJSIP/provider-00000020", dcontext="from-pstn",
                dstchannel=f"SIP/20{i}-0000002{i}", lastapp="Dial", lastdata="SIP/201&SIP/202,20")
            for i, d in enumerate(dispositions, start=1)]
    call = collapse(1, legs)
    assert (call.disposition, call.direction, call.queue, call.agent) == (expected, Direction.INBOUND, None, None)


def test_an_inbound_queue_call_that_rang_out_is_abandoned_but_an_internal_one_is_not() -> None:
    queue = dict(dcontext="ext-queues", lastapp="Queue", lastdata="support", dstchannel="Local/201@from-queue-1;1",
                 disposition=Disposition.NO_ANSWER)
    assert collapse(1, [leg(1, channel="SIP/trunk-1", **queue)]).disposition is Disposition.ABANDONED
    assert collapse(1, [leg(1, channel="SIP/203-1", **queue)]).disposition is Disposition.NO_ANSWER


def test_an_outbound_call_is_the_placing_extensions() -> None:
    legs = [leg(1, answer=8, end=128, disposition=Disposition.ANSWERED, channel="SIP/201-00000040",
                dstchannel="SIP/trunk-00000041", dcontext="from-internal", src="201", dst="12125550199")]
    call = collapse(1, legs)
    assert (call.direction, call.agent, call.answered_at) == (Direction.OUTBOUND, "201", at(8))


def test_stated_fields_of_a_call_centre_export_win() -> None:
    legs = [leg(1, call_id="C-1", uniqueid=None, end=30, disposition=Disposition.ABANDONED, queue="Suporte",
                direction=Direction.INBOUND, src="+5511987654322")]
    call = collapse(1, legs)
    assert (call.disposition, call.queue, call.direction, call.caller) == (
        Disposition.ABANDONED, "Suporte", Direction.INBOUND, "+5511987654322")


def test_a_call_that_cannot_be_stored_says_why() -> None:
    legs = [leg(1, lastapp="Queue", lastdata="q" * (MAX_TEXT + 1) + ",t", channel="SIP/trunk-1")]
    assert collapse(1, legs).problems() == [f"queue: longer than {MAX_TEXT} characters"]
    broken = [leg(1, answer=90, end=60, disposition=Disposition.ANSWERED, dstchannel="SIP/201-1")]
    assert collapse(1, broken).problems() == ["answered_at: answered after the call ends"]


def test_collapse_needs_legs() -> None:
    with pytest.raises(ValueError):
        collapse(1, [])


# --- local times and DST --------------------------------------------------------------------------
def naive(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_ordinary_times_convert_with_the_offset_in_force() -> None:
    times = LocalTimes(NY)
    assert times.to_utc(naive("2024-03-09 09:15:02"), "start") == utc("2024-03-09 14:15:02")
    assert times.to_utc(naive("2024-07-01 09:00:00"), "start") == utc("2024-07-01 13:00:00")
    assert LocalTimes(UTC).to_utc(naive("2024-03-10 02:30:00"), "start") == utc("2024-03-10 02:30:00")


@pytest.mark.parametrize(
    ("zone", "wall", "before", "after"),
    [(NY, "2024-03-10 02:30:00", "UTC-05:00", "UTC-04:00"), (LISBON, "2024-03-31 01:30:00", "UTC+00:00", "UTC+01:00")],
)
def test_a_time_in_the_spring_forward_gap_is_refused(zone: ZoneInfo, wall: str, before: str, after: str) -> None:
    with pytest.raises(InvalidInput) as err:
        LocalTimes(zone).to_utc(naive(wall), "start")
    assert err.value.field == "start"
    assert err.value.message == (
        f"{wall} does not exist in {zone.key} (the clocks went forward from {before} to {after}; "
        "no uniqueid to tell which instant was meant)")


def test_the_uniqueid_epoch_can_resolve_a_gap_time() -> None:
    times = LocalTimes(NY)
    # A PBX that switched to EDT early logs 02:40 for 06:40Z; its uniqueid epoch says so.
    assert times.to_utc(naive("2024-03-10 02:40:00"), "start", expected=utc("2024-03-10 06:40:00")) == utc("2024-03-10 06:40:00")
    assert times.resolved_by_expected == 1
    # An epoch that matches neither candidate cannot resolve it.
    with pytest.raises(InvalidInput):
        times.to_utc(naive("2024-03-10 02:40:00"), "start", expected=utc("2024-03-10 12:00:00"))


@pytest.mark.parametrize(
    ("zone", "wall", "first", "second"),
    [(NY, "2024-11-03 01:30:00", "2024-11-03 05:30:00", "2024-11-03 06:30:00"),
     (LISBON, "2024-10-27 01:30:00", "2024-10-27 00:30:00", "2024-10-27 01:30:00")],
)
def test_a_fall_back_time_is_the_first_occurrence_unless_the_epoch_says_otherwise(
        zone: ZoneInfo, wall: str, first: str, second: str) -> None:
    times = LocalTimes(zone)
    assert times.to_utc(naive(wall), "start") == utc(first)
    assert times.overlaps_guessed == 1
    assert times.to_utc(naive(wall), "start", expected=utc(second) + dt.timedelta(seconds=1)) == utc(second)
    assert times.to_utc(naive(wall), "start", expected=utc(first)) == utc(first)
    assert times.overlaps_guessed == 1  # those two were not guesses


def test_an_ambiguous_end_is_never_placed_before_its_start() -> None:
    times = LocalTimes(NY)
    # A call from the first 01:50 (EDT) to 01:10 after the clocks went back (EST): 20 minutes.
    start = times.to_utc(naive("2024-11-03 01:50:00"), "start", expected=utc("2024-11-03 05:50:00"))
    assert start == utc("2024-11-03 05:50:00")
    assert times.to_utc(naive("2024-11-03 01:10:00"), "end", not_before=start) == utc("2024-11-03 06:10:00")
    # A call started on the second pass ends on the second pass too.
    start = times.to_utc(naive("2024-11-03 01:50:00"), "start", expected=utc("2024-11-03 06:50:00"))
    assert times.to_utc(naive("2024-11-03 01:55:00"), "end", not_before=start) == utc("2024-11-03 06:55:00")
    assert times.overlaps_guessed == 0


def test_unset_clocks_and_future_times_are_refused() -> None:
    times = LocalTimes(NY, latest=utc("2025-01-01 00:00:00"))
    with pytest.raises(InvalidInput, match="before 2000"):
        times.to_utc(naive("1970-01-01 00:00:00"), "start")
    with pytest.raises(InvalidInput, match="in the future"):
        times.to_utc(naive("2031-01-01 00:00:00"), "end")


# --- the epoch cross-check ------------------------------------------------------------------------
def test_times_that_agree_with_uniqueid_raise_no_warning() -> None:
    check = ClockCheck("America/New_York")
    times = LocalTimes(NY)
    for minute in range(0, 600, 7):
        wall = naive("2024-03-09 08:00:00") + dt.timedelta(minutes=minute)
        started = times.to_utc(wall, "start")
        check.observe(wall, started, int(started.timestamp()) + 1)  # uniqueid one second early is normal
    assert check.samples > 50 and check.warning() is None


def test_times_logged_in_another_zone_are_named() -> None:
    check = ClockCheck("Europe/Lisbon")
    times = LocalTimes(LISBON)
    for minute in range(0, 600, 7):
        instant = utc("2024-01-15 12:00:00") + dt.timedelta(minutes=minute)
        wall = (instant - dt.timedelta(hours=3)).replace(tzinfo=None)  # the PBX logs UTC-03:00 (Sao Paulo)
        check.observe(wall, times.to_utc(wall, "start"), int(instant.timestamp()))
    assert check.median_deviation_minutes() == -180
    warning = check.warning()
    assert warning is not None
    assert warning.startswith("times look like UTC-03:00 but the zone Europe/Lisbon was used (UTC+00:00 at those times)")


def test_a_few_odd_rows_do_not_trigger_the_warning() -> None:
    check = ClockCheck("UTC")
    for i in range(20):
        instant = utc("2024-01-15 12:00:00") + dt.timedelta(minutes=i)
        check.observe(instant.replace(tzinfo=None), instant, int(instant.timestamp()) + (7200 if i < 5 else 0))
    assert check.warning() is None


def test_format_offset() -> None:
    assert [format_offset(dt.timedelta(minutes=m)) for m in (-180, 0, 330, -30)] == [
        "UTC-03:00", "UTC+00:00", "UTC+05:30", "UTC-00:30"]
