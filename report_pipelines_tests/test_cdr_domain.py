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

UTC = dt.UTC
NY = ZoneInfo("America/New_York")
LISBON = ZoneInfo("Europe/Lisbon")
T0 = dt.datetime(2024, 3, 9, 14, 15, 2, tzinfo=UTC)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def leg(line: int, *, call_id: str = "1709993702.100", uniqueid: str | None = "1709993702.100", start: float = 0,
        answer: float | None = None, end: float = 60, disposition: Disposition = Disposition.NO_ANSWER,
        **fields) -> Leg:
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


# --- issue 10: graded evidence, agent answers, the columnar collapse --------------------------------
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from report_pipelines.domain.cdr import decide_direction  # noqa: E402
from report_pipelines.domain.pbx import Context, Evidence, Kind, PbxConfig, context_class, pbx_config  # noqa: E402
from report_pipelines.domain.queue_log import QueueLog, member_agent, parse_event  # noqa: E402


@pytest.mark.parametrize(
    ("channel", "config", "expected"),
    [("SIP/4055501-0000001", PbxConfig(), (Kind.UNKNOWN, Evidence.NONE)),  # a number proves nothing
     ("SIP/405550-0000001", PbxConfig(), (Kind.UNKNOWN, Evidence.NONE)),
     ("SIP/4055-0000001", PbxConfig(), (Kind.PHONE, Evidence.SHAPE)),
     ("SIP/voipms-0000001", PbxConfig(), (Kind.TRUNK, Evidence.SHAPE)),
     ("DAHDI/i1/5551234-1", PbxConfig(), (Kind.TRUNK, Evidence.TECHNOLOGY)),
     ("Local/201@from-queue-1;2", PbxConfig(), (Kind.LOCAL, Evidence.NONE)),
     ("SIP/4055501-0000001", pbx_config(trunks=["SIP/4055501"]), (Kind.TRUNK, Evidence.CONFIGURED)),
     ("SIP/4055-0000001", pbx_config(extensions=["100-399"]), (Kind.TRUNK, Evidence.CONFIGURED)),
     ("PJSIP/250-0000001", pbx_config(extensions=["100-399"]), (Kind.PHONE, Evidence.CONFIGURED)),
     ("PJSIP/trunk-a-0000001", pbx_config(trunks=["trunk-*"], extensions=["100-399"]), (Kind.TRUNK, Evidence.CONFIGURED))],
)
def test_channel_evidence(channel: str, config: PbxConfig, expected: tuple) -> None:
    assert config.classify(channel) == expected


@pytest.mark.parametrize(("context", "kind"), [("from-pstn", Context.INBOUND), ("from-trunk-voipms", Context.INBOUND),
                                               ("acme-pstn", Context.INBOUND), ("from-internal-xfer", Context.INTERNAL),
                                               ("ext-queues", Context.NEUTRAL), ("ivr-3", Context.NEUTRAL)])
def test_context_classes(context: str, kind: Context) -> None:
    assert context_class(context) is kind


def test_the_strongest_evidence_decides_and_nothing_is_guessed() -> None:
    phone, trunk = (Kind.PHONE, Evidence.SHAPE), (Kind.TRUNK, Evidence.SHAPE)
    unknown = (Kind.UNKNOWN, Evidence.NONE)
    # Configuration beats the context: a configured trunk in from-internal is still inbound.
    assert decide_direction(None, (Kind.TRUNK, Evidence.CONFIGURED), Context.INTERNAL, False, False, False) == (
        Direction.INBOUND, "configured-trunk")
    # The context beats the shape: a 4-digit trunk in from-pstn is inbound.
    assert decide_direction(None, phone, Context.INBOUND, False, False, False) == (Direction.INBOUND, "inbound-context")
    assert decide_direction(None, trunk, Context.INTERNAL, False, True, False) == (Direction.OUTBOUND, "internal-context")
    assert decide_direction(None, unknown, Context.NEUTRAL, True, False, False) == (Direction.INBOUND, "did")
    assert decide_direction(None, unknown, Context.NEUTRAL, False, True, True) == (Direction.UNKNOWN, "no-evidence")
    assert decide_direction(Direction.OUTBOUND, trunk, Context.INBOUND, False, False, False) == (Direction.OUTBOUND, "stated")


def test_an_ivr_answer_is_not_an_agent_answer() -> None:
    ivr = dict(channel="SIP/provider-00000001", dcontext="ivr-main", src="+4930111", dst="s", lastapp="BackGround")
    legs = [leg(1, answer=1, end=15, disposition=Disposition.ANSWERED, **ivr),
            leg(2, start=15, answer=42, end=300, disposition=Disposition.ANSWERED, **{**ivr, "lastapp": "Dial",
                                                                                     "dstchannel": "SIP/203-0002"})]
    call = collapse(1, legs)
    assert (call.direction, call.answered_at, call.agent, call.disposition) == (Direction.INBOUND, at(42), "203",
                                                                                Disposition.ANSWERED)
    # The caller hung up in the IVR: abandoned, never answered.
    alone = collapse(1, legs[:1])
    assert (alone.answered_at, alone.agent, alone.disposition) == (None, None, Disposition.ABANDONED)
    # Sent to voicemail: missed.
    vm = collapse(1, [legs[0], leg(2, start=15, answer=15, end=40, disposition=Disposition.ANSWERED,
                                   **{**ivr, "lastapp": "VoiceMail"})])
    assert vm.disposition is Disposition.NO_ANSWER
    # An internal call answered by a service (a conference) is answered.
    conf = collapse(1, [leg(1, answer=2, end=60, disposition=Disposition.ANSWERED, channel="SIP/201-1", dst="800",
                            dcontext="from-internal", lastapp="ConfBridge")])
    assert (conf.direction, conf.disposition, conf.answered_at) == (Direction.INTERNAL, Disposition.ANSWERED, at(2))


def test_ring_attempts_with_billsec_are_part_of_the_call() -> None:
    trunk = dict(channel="SIP/provider-1", dcontext="ext-queues", src="+4930111", dst="5000", lastapp="Queue",
                 lastdata="support,t")
    call = collapse(1, [leg(1, end=15, dstchannel="SIP/201-2", **trunk),  # rang out (its billsec ignored)
                        leg(2, start=15, answer=27, end=200, disposition=Disposition.ANSWERED, dstchannel="SIP/202-3",
                            **trunk)])
    assert (call.queue, call.agent, call.answered_at, call.ended_at) == ("support", "202", at(27), at(200))


LEG_FIELDS = st.fixed_dictionaries({
    "channel": st.sampled_from(["SIP/provider-1", "SIP/201-2", "Local/202@from-queue-3;2", "SIP/4055501-4", ""]),
    "dstchannel": st.sampled_from(["", "SIP/202-5", "Local/203@from-queue-6;1", "SIP/provider-7"]),
    "dcontext": st.sampled_from(["ext-queues", "from-pstn", "from-internal", "ivr-1", ""]),
    "lastapp": st.sampled_from(["Queue", "Dial", "BackGround", "VoiceMail"]),
    "lastdata": st.sampled_from(["support,t", "sales", "SIP/202", ""]),
    "disposition": st.sampled_from(list(Disposition)[:4]),
    "src": st.sampled_from(["+4930111", "201", ""]),
    "dst": st.sampled_from(["5000", "202", "004930222", ""]),
    "length": st.integers(10, 300),
    "origin": st.booleans(),
})


@settings(max_examples=200, deadline=None)
@given(st.lists(LEG_FIELDS, min_size=1, max_size=6), st.data())
def test_whatever_the_legs_order_in_the_file_the_call_is_the_same(fields: list[dict], data) -> None:
    """The file order of a call's legs (their line numbers) changes nothing: the rules order legs by
    their times and only fall back on the line for equal times, which these legs never have."""
    starts = data.draw(st.lists(st.integers(0, 100), min_size=len(fields), max_size=len(fields), unique=True))
    lines = data.draw(st.permutations(range(1, len(fields) + 1)))

    def legs_at(numbers) -> list[Leg]:
        legs = []
        for i, (f, line) in enumerate(zip(fields, numbers, strict=False)):
            start = 10 * starts[i]
            answered = f["disposition"] is Disposition.ANSWERED
            legs.append(Leg(line=line, call_id="1709993702.100", uniqueid="1709993702.100" if f["origin"] else f"9.{i}",
                            started_at=at(start), ended_at=at(start + f["length"]), disposition=f["disposition"],
                            answered_at=at(start + 1 + i) if answered else None, src=f["src"], dst=f["dst"],
                            dcontext=f["dcontext"], channel=f["channel"], dstchannel=f["dstchannel"],
                            lastapp=f["lastapp"], lastdata=f["lastdata"]))
        return legs

    in_order = collapse(3, legs_at(range(1, len(fields) + 1)))
    assert in_order.problems() == []
    shuffled = legs_at(lines)
    assert collapse(3, shuffled) == in_order
    assert collapse(3, list(reversed(shuffled))) == in_order  # and the order they are handed in


def test_queue_log_lines() -> None:
    event = parse_event(3, "1709978442|1709978400.1|support|SIP/202|CONNECT|27|1709978430.4|12")
    assert (event.at, event.callid, event.queue, event.event, event.data) == (
        dt.datetime(2024, 3, 9, 10, 0, 42, tzinfo=UTC), "1709978400.1", "support", "CONNECT", ("27", "1709978430.4", "12"))
    for text, field in (("1709978442|x|q|a", "queue_log"), ("12:00|x|q|a|CONNECT", "epoch"), ("1709978442|x|q|a|c o", "event")):
        with pytest.raises(InvalidInput) as err:
            parse_event(1, text)
        assert err.value.field == field
    assert [member_agent(a) for a in ("SIP/201", "PJSIP/202", "Local/203@from-queue/n", "Alice Smith", "NONE")] == [
        "201", "202", "203", "Alice Smith", None]
    log = QueueLog()
    # A CONNECT whose ENTERQUEUE was before the file began: entered = connect - holdtime.
    log.add(parse_event(1, "1709978442|1709978400.1|support|SIP/202|CONNECT|27|x|12"))
    log.add(parse_event(2, "1709978700|1709978400.1|support|SIP/202|COMPLETEAGENT|27|258|1"))
    [attempt] = log.attempts
    assert (attempt.entered_at, attempt.connected_at, attempt.ended_at, attempt.outcome) == (
        dt.datetime(2024, 3, 9, 10, 0, 15, tzinfo=UTC), dt.datetime(2024, 3, 9, 10, 0, 42, tzinfo=UTC),
        dt.datetime(2024, 3, 9, 10, 5, tzinfo=UTC), "answered")


def test_unknown_direction_passes_screening_and_counts_in_no_direction() -> None:
    from report_pipelines.domain.reports import DayContext, get_report
    from report_pipelines.domain.reports.screening import screen_calls
    from report_pipelines_tests.reports_support import call as row
    from report_pipelines_tests.reports_support import table

    calls = table([
        row("a", "inbound", "ANSWERED", "2024-06-12 09:00:00", "2024-06-12 09:05:00", answered="2024-06-12 09:00:10",
            queue="support", agent="201"),
        row("b", "unknown", "ANSWERED", "2024-06-12 09:10:00", "2024-06-12 09:15:00", answered="2024-06-12 09:10:04",
            queue="support", agent="202"),
        row("c", "sideways", "ANSWERED", "2024-06-12 09:20:00", "2024-06-12 09:21:00", answered="2024-06-12 09:20:04"),
    ])
    ctx = DayContext(7, "UTC", dt.date(2024, 6, 12))
    screened = screen_calls(calls, ctx)
    # "unknown" is ours (what an import could not tell); "sideways" is not a direction at all.
    assert (screened.clean.column("pbx_call_id").to_pylist(), screened.rejected) == (["a", "b"], {"unknown_direction": 1})
    [support] = get_report("queue_performance").compute_day(screened.clean, ctx).to_pylist()
    assert (support["offered"], support["answered"], support["wait_seconds_sum"]) == (1, 1, 10.0)  # only a
    hours = get_report("hourly_volume").compute_day(screened.clean, ctx).to_pylist()
    assert sum(h["offered"] + h["outbound"] + h["internal"] for h in hours) == 1
    agents = get_report("agent_performance").compute_day(screened.clean, ctx).column("agent").to_pylist()
    assert agents == ["201"]  # 202 only took a call of unknown direction: neither taken nor placed
    details = get_report("call_detail").compute_day(screened.clean, ctx)
    assert details.column("direction").to_pylist() == ["inbound", "unknown"]  # listed as it is
