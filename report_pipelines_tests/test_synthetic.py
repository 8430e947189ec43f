"""The demo data generator: deterministic, inside local days across DST, shaped like a call centre."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from sqlalchemy import Engine

from report_pipelines.adapters.db.repositories import CallEventRepository
from report_pipelines.adapters.sources.synthetic import DEMO_ZONES, CallGenerator, GeneratorConfig, plan_clients
from report_pipelines.domain.errors import Conflict, InvalidInput
from report_pipelines.domain.timezones import local_day_window
from report_pipelines.services.demo import seed_demo

UTC = dt.UTC
SEEDED_AT = dt.datetime(2024, 1, 1, tzinfo=UTC)


def generate(config: GeneratorConfig) -> dict[str, pa.Table]:
    gen = CallGenerator(config)
    return {c.slug: pa.concat_tables(list(gen.iter_tables(c, c.index + 1))) for c in gen.clients}


def frame(config: GeneratorConfig) -> pd.DataFrame:
    tables = generate(config)
    zones = {c.index + 1: c.timezone for c in plan_clients(config)}
    df = pa.concat_tables(tables.values()).to_pandas()
    df["timezone"] = df["client_id"].map(zones)
    return df


@pytest.fixture(scope="module")
def month() -> pd.DataFrame:
    """Five weeks for twelve clients, the demo's default shape."""
    return frame(GeneratorConfig(start=dt.date(2024, 5, 6), days=35, clients=12, seed=7))


def test_same_seed_same_data_and_another_seed_other_data() -> None:
    config = GeneratorConfig(start=dt.date(2024, 3, 1), days=10, clients=5, largest_daily_calls=400, seed=11)
    first, second = generate(config), generate(config)
    assert first.keys() == second.keys()
    for slug in first:
        assert first[slug].equals(second[slug])
    other = generate(GeneratorConfig(start=dt.date(2024, 3, 1), days=10, clients=5, largest_daily_calls=400, seed=12))
    assert not all(first[s].equals(other[s]) for s in first)


def test_one_client_does_not_depend_on_the_others() -> None:
    config = GeneratorConfig(start=dt.date(2024, 3, 1), days=9, clients=4, largest_daily_calls=300, seed=3)
    gen = CallGenerator(config)
    alone = pa.concat_tables(list(CallGenerator(config).iter_tables(gen.clients[2], 3)))
    together = generate(config)[gen.clients[2].slug]
    assert alone.equals(together)


@pytest.mark.parametrize(("start", "days"), [(dt.date(2024, 3, 1), 45), (dt.date(2024, 9, 25), 45)])
def test_every_call_starts_inside_its_clients_local_days_across_dst(start: dt.date, days: int) -> None:
    # Both windows hold a DST change of every DST zone of the demo (US, EU, Sydney, Lord Howe).
    config = GeneratorConfig(start=start, days=days, clients=len(DEMO_ZONES), largest_daily_calls=500,
                             smallest_daily_calls=40, seed=5)
    df = frame(config)
    assert len(df) > 10_000
    for zone_name, calls in df.groupby("timezone"):
        zone = ZoneInfo(zone_name)
        first, _ = local_day_window(config.start, zone)
        _, last = local_day_window(config.end, zone)
        starts = calls["started_at"]
        assert starts.min() >= first and starts.max() < last, zone_name
        local_dates = starts.dt.tz_convert(zone_name).dt.date
        assert set(local_dates) <= {config.start + dt.timedelta(days=d) for d in range(days)}


def test_a_25_hour_day_has_calls_in_both_passes_of_the_repeated_hour() -> None:
    config = GeneratorConfig(start=dt.date(2024, 11, 3), days=1, clients=1, largest_daily_calls=30_000,
                             zones=("America/New_York",), seed=1)
    starts = frame(config)["started_at"]
    window = local_day_window(config.start, ZoneInfo("America/New_York"))
    assert window[1] - window[0] == dt.timedelta(hours=25)
    first_pass = starts[(starts >= "2024-11-03 05:00Z") & (starts < "2024-11-03 06:00Z")]  # 01:xx EDT
    second_pass = starts[(starts >= "2024-11-03 06:00Z") & (starts < "2024-11-03 07:00Z")]  # 01:xx EST
    assert len(first_pass) > 5 and len(second_pass) > 5


def test_a_23_hour_day_is_23_hours_of_calls() -> None:
    config = GeneratorConfig(start=dt.date(2024, 3, 10), days=1, clients=1, largest_daily_calls=30_000,
                             zones=("America/New_York",), seed=1)
    starts = frame(config)["started_at"]
    assert starts.min() >= pd.Timestamp("2024-03-10 05:00Z")
    assert starts.max() < pd.Timestamp("2024-03-11 04:00Z")
    local = starts.dt.tz_convert("America/New_York")
    assert not ((local.dt.hour == 2).any())  # 02:xx does not exist that day


def test_every_generated_call_is_internally_consistent(month: pd.DataFrame) -> None:
    answered = month["disposition"] == "ANSWERED"
    assert month.loc[answered, "answered_at"].notna().all()
    assert month.loc[~answered, "answered_at"].isna().all()
    assert (month["ended_at"] >= month["started_at"]).all()
    assert (month.loc[answered, "answered_at"] >= month.loc[answered, "started_at"]).all()
    assert (month.loc[answered, "answered_at"] <= month.loc[answered, "ended_at"]).all()
    assert (month["ingested_at"] >= month["ended_at"]).all()
    assert not month.duplicated(["client_id", "pbx_call_id"]).any()
    inbound = month["direction"] == "inbound"
    assert month.loc[inbound & answered, "agent"].notna().all()
    assert month.loc[inbound & ~answered, "agent"].isna().all()
    assert month.loc[month["disposition"] == "ABANDONED", "direction"].eq("inbound").all()


def test_answer_and_abandon_rates_look_like_a_call_centre(month: pd.DataFrame) -> None:
    # Industry figures: inbound contact centres answer 80-95 % of offered calls and lose 3-15 % to
    # abandonment; outbound campaigns connect with roughly half to three quarters of the numbers dialled.
    inbound = month[month["direction"] == "inbound"]
    rates = inbound["disposition"].value_counts(normalize=True)
    assert 0.80 <= rates["ANSWERED"] <= 0.95
    assert 0.03 <= rates["ABANDONED"] <= 0.15
    outbound = month[month["direction"] == "outbound"]
    assert 0.5 <= (outbound["disposition"] == "ANSWERED").mean() <= 0.8
    waits = (inbound["answered_at"] - inbound["started_at"]).dt.total_seconds().dropna()
    assert 5 <= waits.median() <= 60  # a median speed of answer of seconds, not minutes
    talk = (month["ended_at"] - month["answered_at"]).dt.total_seconds().dropna()
    assert 60 <= talk.median() <= 300


def test_arrivals_follow_the_local_business_day(month: pd.DataFrame) -> None:
    local = pd.Series(
        [ts.tz_convert(z) for ts, z in zip(month["started_at"], month["timezone"], strict=True)], index=month.index
    )
    hour = local.map(lambda t: t.hour)
    weekday = local.map(lambda t: t.weekday())
    weekdays = hour[weekday < 5]
    # Justified by the curve: two business-hour peaks, a 2 % night floor.
    assert weekdays.between(9, 17).mean() >= 0.75
    assert weekdays.value_counts().idxmax() in range(9, 16)
    assert weekdays.between(0, 5).mean() <= 0.06
    per_day = local.map(lambda t: t.date()).value_counts()
    weekend = per_day[[d.weekday() >= 5 for d in per_day.index]].mean()
    weekday_mean = per_day[[d.weekday() < 5 for d in per_day.index]].mean()
    assert 0.12 <= weekend / weekday_mean <= 0.35


def test_client_sizes_are_heavy_tailed_and_some_days_spike(month: pd.DataFrame) -> None:
    volumes = month.groupby("client_id").size().sort_values()
    assert volumes.iloc[-1] / volumes.median() >= 20
    assert volumes.iloc[-1] / volumes.iloc[0] >= 100


def test_some_days_are_much_heavier_than_others() -> None:
    config = GeneratorConfig(start=dt.date(2024, 5, 6), days=35, clients=12, seed=7)
    gen = CallGenerator(config)
    weekday = [(config.start + dt.timedelta(days=d)).weekday() for d in range(config.days)]
    ratios: list[float] = []
    for client in gen.clients:
        volumes = pd.Series(gen.day_volumes(client))
        ratios.extend(volumes / volumes.groupby(weekday).transform("median"))
    heavy = np.mean(np.array(ratios) >= 1.8)
    assert 0.01 <= heavy <= 0.10  # about 4 % of client-days are outage or campaign days


def test_bad_configuration_names_the_field() -> None:
    with pytest.raises(InvalidInput) as err:
        GeneratorConfig(start=dt.date(2024, 1, 1), zones=("Europe/Atlantis",))
    assert err.value.field == "zones"
    with pytest.raises(InvalidInput) as err:
        GeneratorConfig(start=dt.date(2024, 1, 1), days=0)
    assert err.value.field == "days"


def test_seed_loads_everything_and_refuses_to_mix_generations(engine: Engine) -> None:
    config = GeneratorConfig(start=dt.date(2024, 3, 25), days=8, clients=4, largest_daily_calls=600, seed=9)
    expected = {slug: table.num_rows for slug, table in generate(config).items()}
    summary = seed_demo(engine, config, now=SEEDED_AT)
    assert summary.events == sum(expected.values())
    marks = {m.slug: m.events for m in CallEventRepository(engine).watermarks()}
    assert marks == expected
    with pytest.raises(Conflict):
        seed_demo(engine, config, now=SEEDED_AT)
    again = seed_demo(engine, config, now=SEEDED_AT, reset=True)
    assert again.events == summary.events
    assert {m.slug: m.events for m in CallEventRepository(engine).watermarks()} == expected
    assert np.isclose(sum(marks.values()), summary.events)
