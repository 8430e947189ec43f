"""Realistic, deterministic PBX call data for the demo, the tests and the benchmarks.

What makes it look like a real multi-tenant PBX:

* **Client sizes are heavy-tailed** (Zipf): one contact centre with thousands of calls a day, a
  handful of mid-sized companies, and a long tail of small offices with a few dozen.
* **Arrivals follow the local clock**: a weekday curve with a morning peak (~10:30) and an afternoon
  peak (~14:30) and a small night floor; weekends are much quieter (Saturday ~30 %, Sunday ~15 %).
  The curve is applied to the client's *local* wall clock, minute by minute, so DST days of 23 or 25
  hours get 23 or 25 hours of calls and every call starts inside its client's local day.
* **Some days are much heavier**: daily noise (log-normal) plus rare spikes (x2-x4: an outage, a
  campaign), during which waits grow and callers abandon more.
* **Queues and agents per client** (agents are 4-digit extensions, as the PBX logs them), waits
  that grow with load, caller patience, abandonment when patience runs out, talk times that are
  log-normal, outbound and internal calls with their own outcomes, and an ingest delay (a few calls
  arrive hours or days late, which the late-data machinery must notice).

Determinism: every random draw comes from a stream derived from ``(seed, client index, block of
days)``, so the same configuration always yields the same rows, whatever order clients are
generated or loaded in. Generation is vectorised with NumPy: no Python loop per call.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from report_pipelines.adapters.db.bulk import CALL_EVENT_SCHEMA
from report_pipelines.domain.errors import InvalidInput
from report_pipelines.domain.timezones import local_midnight_utc, parse_zone

#: Zones of the demo: DST in both hemispheres, a half-hour offset and a half-hour DST shift.
DEMO_ZONES: tuple[str, ...] = (
    "America/Sao_Paulo",
    "America/New_York",
    "Europe/Lisbon",
    "Australia/Sydney",
    "America/Los_Angeles",
    "Europe/Berlin",
    "Asia/Kolkata",
    "Australia/Lord_Howe",
    "Asia/Tokyo",
    "Africa/Johannesburg",
)

# (country code, area code) used to make plausible E.164 numbers per zone.
_DIALLING = {
    "America/Sao_Paulo": ("55", "11"),
    "America/New_York": ("1", "212"),
    "Europe/Lisbon": ("351", "21"),
    "Australia/Sydney": ("61", "2"),
    "America/Los_Angeles": ("1", "213"),
    "Europe/Berlin": ("49", "30"),
    "Asia/Kolkata": ("91", "22"),
    "Australia/Lord_Howe": ("61", "2"),
    "Asia/Tokyo": ("81", "3"),
    "Africa/Johannesburg": ("27", "11"),
}

_KINDS = (
    "contact-centre", "insurance", "clinic", "logistics", "telecom", "bank", "school", "hotel",
    "law-firm", "retail", "utilities", "travel", "software", "garage", "pharmacy", "realty",
)
_QUEUES = ("support", "sales", "billing", "retention", "technical", "vip", "returns", "general")

#: Weekday factors, Monday first: Mondays are the busiest, Sundays the quietest.
WEEKDAY_FACTORS = np.array([1.15, 1.05, 1.0, 1.0, 0.9, 0.3, 0.15])

BLOCK_DAYS = 7  # days generated per random stream and per Arrow batch


def diurnal_weight(hour: np.ndarray, weekend: np.ndarray) -> np.ndarray:
    """Relative call intensity at local ``hour`` (fractional, 0-24); peaks at 1.0."""
    weekday_curve = (
        0.02
        + 0.95 * np.exp(-0.5 * ((hour - 10.5) / 1.5) ** 2)
        + 0.80 * np.exp(-0.5 * ((hour - 14.75) / 1.9) ** 2)
        + 0.10 * np.exp(-0.5 * ((hour - 19.0) / 1.5) ** 2)
    )
    weekend_curve = 0.02 + 0.75 * np.exp(-0.5 * ((hour - 12.0) / 2.5) ** 2)
    return np.where(weekend, weekend_curve, weekday_curve)


@dataclass(frozen=True)
class SyntheticClient:
    """One generated tenant and the parameters of its traffic."""

    index: int
    slug: str
    name: str
    timezone: str
    daily_calls: float  # mean calls on an ordinary Wednesday
    queues: tuple[str, ...]
    agents: int
    inbound_share: float
    outbound_share: float
    did: str  # the number callers dial


@dataclass(frozen=True)
class GeneratorConfig:
    """What to generate. Identical configurations give identical rows."""

    start: dt.date
    days: int = 35
    clients: int = 12
    largest_daily_calls: float = 3000.0
    smallest_daily_calls: float = 12.0
    seed: int = 20240601
    zones: tuple[str, ...] = DEMO_ZONES
    spike_probability: float = 0.04

    def __post_init__(self) -> None:
        if self.days < 1:
            raise InvalidInput("days", "must be at least 1")
        if self.clients < 1:
            raise InvalidInput("clients", "must be at least 1")
        if not 0 < self.smallest_daily_calls <= self.largest_daily_calls:
            raise InvalidInput("largest_daily_calls", "must be at least the smallest client's daily calls (> 0)")
        if not self.zones:
            raise InvalidInput("zones", "at least one time zone is needed")
        for zone in self.zones:
            parse_zone(zone, field="zones")

    @property
    def end(self) -> dt.date:
        """Last generated local date (inclusive)."""
        return self.start + dt.timedelta(days=self.days - 1)

    @cached_property
    def as_of(self) -> dt.datetime:
        """The instant the generated data is "read": one hour after the last local day ended everywhere.

        Late ingests are capped here, so generated data never claims to arrive after it was made.
        """
        ends = [local_midnight_utc(self.end + dt.timedelta(days=1), parse_zone(z)) for z in self.zones]
        return max(ends) + dt.timedelta(hours=1)


def plan_clients(config: GeneratorConfig) -> list[SyntheticClient]:
    """The tenants to generate: sizes follow a Zipf law from the largest to the smallest."""
    n = config.clients
    alpha = 0.0 if n == 1 else math.log(config.largest_daily_calls / config.smallest_daily_calls) / math.log(n)
    rng = np.random.default_rng(np.random.SeedSequence(config.seed, spawn_key=(0xC1,)))
    jitter = rng.uniform(0.85, 1.15, size=n)
    jitter[0] = jitter[-1] = 1.0  # keep the stated extremes exact
    planned = []
    for i in range(n):
        zone = config.zones[i % len(config.zones)]
        volume = config.largest_daily_calls * (i + 1) ** (-alpha) * jitter[i]
        city = zone.split("/")[-1].lower().replace("_", "")
        kind = _KINDS[i % len(_KINDS)]
        # Agents sized for ~60 calls per agent per day, at least one.
        agents = max(1, int(round(volume / 60)))
        queues = _QUEUES[: int(np.clip(1 + int(math.log10(max(volume, 1)) * 2), 1, len(_QUEUES)))]
        inbound = float(rng.uniform(0.55, 0.85))
        outbound = float((1 - inbound) * rng.uniform(0.6, 0.9))
        cc, area = _DIALLING.get(zone, ("1", "555"))
        planned.append(
            SyntheticClient(
                index=i,
                slug=f"{city}-{kind}-{i + 1:02d}",
                name=f"{city.title()} {kind.replace('-', ' ').title()} {i + 1}",
                timezone=zone,
                daily_calls=float(volume),
                queues=tuple(queues),
                agents=agents,
                inbound_share=inbound,
                outbound_share=outbound,
                did=f"+{cc}{area}{3000000 + i:07d}",
            )
        )
    return planned


@dataclass
class _ZoneGrid:
    """Every minute of the generated local days of one zone, with its weight (shared by clients)."""

    minute_epoch: np.ndarray  # UTC epoch second at which each minute starts
    weight: np.ndarray  # diurnal weight of that minute (0-1)
    day_first_minute: np.ndarray  # index of each local day's first minute (len days + 1)
    cdf: np.ndarray = field(repr=False)  # per-day normalised CDF, offset by the day index
    weekday: np.ndarray = field(repr=False)  # weekday (0 = Monday) of each local day


def _zone_grid(zone_name: str, start: dt.date, days: int) -> _ZoneGrid:
    zone = parse_zone(zone_name)
    t0 = local_midnight_utc(start, zone)
    t1 = local_midnight_utc(start + dt.timedelta(days=days), zone)
    minutes = int((t1 - t0).total_seconds() // 60)
    utc = pd.date_range(t0, periods=minutes, freq="min")
    local = utc.tz_convert(zone_name).tz_localize(None)
    day_index = np.asarray((local.normalize() - pd.Timestamp(start)).days, dtype=np.int64)
    hour = np.asarray(local.hour + local.minute / 60.0, dtype=np.float64)
    weekday = np.array([(start + dt.timedelta(days=d)).weekday() for d in range(days)])
    weight = diurnal_weight(hour, weekday[day_index] >= 5)
    first = np.searchsorted(day_index, np.arange(days + 1), side="left")
    day_sum = np.add.reduceat(weight, first[:-1])
    cum = np.cumsum(weight)
    before_day = np.concatenate(([0.0], cum[first[1:-1] - 1]))
    cdf = (cum - before_day[day_index]) / day_sum[day_index] + day_index
    epoch0 = int(t0.timestamp())
    return _ZoneGrid(
        minute_epoch=epoch0 + 60 * np.arange(minutes, dtype=np.int64),
        weight=weight / weight.max(),
        day_first_minute=first,
        cdf=cdf,
        weekday=weekday,
    )


class CallGenerator:
    """Generates the calls of every planned client, block of days by block of days."""

    def __init__(self, config: GeneratorConfig) -> None:
        self.config = config
        self.clients = plan_clients(config)
        self._grids: dict[str, _ZoneGrid] = {}

    def grid(self, zone: str) -> _ZoneGrid:
        if zone not in self._grids:
            self._grids[zone] = _zone_grid(zone, self.config.start, self.config.days)
        return self._grids[zone]

    def day_volumes(self, client: SyntheticClient) -> np.ndarray:
        """Expected calls per local day: weekday pattern x daily noise x rare spikes."""
        cfg = self.config
        rng = np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=(client.index, 0xDA)))
        weekday = self.grid(client.timezone).weekday
        noise = rng.lognormal(mean=0.0, sigma=0.15, size=cfg.days)
        spikes = np.where(rng.random(cfg.days) < cfg.spike_probability, rng.uniform(2.0, 4.0, cfg.days), 1.0)
        return client.daily_calls * WEEKDAY_FACTORS[weekday] * noise * spikes

    def iter_tables(self, client: SyntheticClient, client_id: int) -> Iterator[pa.Table]:
        """The client's calls as Arrow tables of :data:`CALL_EVENT_SCHEMA`, one per block of days."""
        volumes = self.day_volumes(client)
        spike = volumes / (client.daily_calls * WEEKDAY_FACTORS[self.grid(client.timezone).weekday])
        for block, first_day in enumerate(range(0, self.config.days, BLOCK_DAYS)):
            days = np.arange(first_day, min(first_day + BLOCK_DAYS, self.config.days))
            rng = np.random.default_rng(np.random.SeedSequence(self.config.seed, spawn_key=(client.index, block)))
            table = self._block(client, client_id, block, days, volumes[days], spike[days], rng)
            if table.num_rows:
                yield table

    def _block(self, client: SyntheticClient, client_id: int, block: int, days: np.ndarray,
               volumes: np.ndarray, load: np.ndarray, rng: np.random.Generator) -> pa.Table:
        grid = self.grid(client.timezone)
        counts = rng.poisson(volumes)
        n = int(counts.sum())
        day_of_call = np.repeat(days, counts)
        load_of_call = np.repeat(load, counts)
        minute = np.searchsorted(grid.cdf, day_of_call + rng.random(n), side="right")
        minute = np.minimum(minute, grid.day_first_minute[day_of_call + 1] - 1)  # float safety at day end
        start = grid.minute_epoch[minute] + rng.integers(0, 60, size=n)
        order = np.argsort(start, kind="stable")
        start, minute, load_of_call = start[order], minute[order], load_of_call[order]
        intensity = grid.weight[minute]

        kind = rng.random(n)
        inbound = kind < client.inbound_share
        outbound = (~inbound) & (kind < client.inbound_share + client.outbound_share)
        internal = ~(inbound | outbound)

        # --- inbound: queue, wait, patience, abandonment, night-time no-answer --------------------
        queue_weights = 1.0 / np.arange(1, len(client.queues) + 1)
        queue_idx = rng.choice(len(client.queues), size=n, p=queue_weights / queue_weights.sum())
        pressure = (0.4 + 1.6 * intensity) * load_of_call  # busier minutes and spike days wait longer
        wait = np.clip(rng.lognormal(mean=np.log(7.0), sigma=0.9, size=n) * pressure, 1, 1800)
        patience = np.clip(rng.exponential(160.0, size=n), 3, 3600)
        after_hours = intensity < 0.08
        outcome = rng.random(n)
        ring = rng.integers(8, 35, size=n)  # seconds of ringing before giving up / being answered
        disposition = np.full(n, "ANSWERED", dtype=object)

        in_closed = inbound & after_hours & (outcome < 0.6)
        in_busy = inbound & ~in_closed & (outcome > 0.992)
        in_failed = inbound & ~in_closed & ~in_busy & (outcome > 0.985)
        in_abandoned = inbound & ~(in_closed | in_busy | in_failed) & (patience < wait)
        in_answered = inbound & ~(in_closed | in_busy | in_failed | in_abandoned)

        # --- outbound and internal: ring, then an outcome ------------------------------------------
        out_answered = outbound & (outcome < 0.65)
        out_noanswer = outbound & (outcome >= 0.65) & (outcome < 0.90)
        out_busy = outbound & (outcome >= 0.90) & (outcome < 0.97)
        out_failed = outbound & (outcome >= 0.97)
        int_answered = internal & (outcome < 0.80)
        int_noanswer = internal & (outcome >= 0.80) & (outcome < 0.95)
        int_busy = internal & (outcome >= 0.95)

        talk_median = np.where(inbound, 185.0, np.where(outbound, 125.0, 55.0))
        talk = np.clip(rng.lognormal(mean=np.log(talk_median), sigma=0.8), 4, 7200).astype(np.int64)

        answered = in_answered | out_answered | int_answered
        delay_to_answer = np.where(in_answered, wait, ring).astype(np.int64)
        until_end = np.where(answered, delay_to_answer + talk, 0)
        until_end = np.where(in_abandoned, patience.astype(np.int64), until_end)
        until_end = np.where(in_closed | out_noanswer | int_noanswer, ring + 20, until_end)
        until_end = np.where(in_busy | in_failed | out_busy | out_failed | int_busy, rng.integers(1, 6, size=n), until_end)

        disposition[in_abandoned] = "ABANDONED"
        disposition[in_closed | out_noanswer | int_noanswer] = "NO ANSWER"
        disposition[in_busy | out_busy | int_busy] = "BUSY"
        disposition[in_failed | out_failed] = "FAILED"

        # --- people and numbers (string work in Arrow: much faster than NumPy's str) ---------------
        def text(values: np.ndarray) -> pa.Array:
            return pa.array(values).cast(pa.string())

        agent_ext = text(1000 + rng.integers(0, client.agents, size=n))
        other_ext = text(1000 + rng.integers(0, max(client.agents, 2), size=n))
        cc, area = _DIALLING.get(client.timezone, ("1", "555"))
        external = pc.binary_join_element_wise(f"+{cc}{area}", text(rng.integers(2_000_000, 9_999_999, size=n)), "")
        is_inbound, is_outbound = pa.array(inbound), pa.array(outbound)
        caller = pc.if_else(is_inbound, external, agent_ext)
        callee = pc.if_else(is_inbound, pa.scalar(client.did), pc.if_else(is_outbound, external, other_ext))
        # The agent is who took an inbound call, or who placed an outbound or internal one.
        agent = pc.if_else(pa.array(inbound & ~answered), pa.scalar(None, pa.string()), agent_ext)
        queue_names = pa.array(client.queues, type=pa.string()).take(pa.array(queue_idx))
        queue = pc.if_else(pa.array(inbound & ~in_closed), queue_names, pa.scalar(None, pa.string()))
        direction = pa.array(np.array(["inbound", "outbound", "internal"], dtype=object)[
            np.where(inbound, 0, np.where(outbound, 1, 2))], type=pa.string())

        # --- instants ------------------------------------------------------------------------------
        answered_at = start + delay_to_answer
        ended_at = start + until_end
        late = rng.random(n)
        ingest_delay = np.where(
            late < 0.97,
            rng.lognormal(np.log(20.0), 0.6, size=n),
            np.where(late < 0.995, rng.uniform(60, 1800, size=n), rng.uniform(3600, 2 * 86400, size=n)),
        ).astype(np.int64)
        as_of = int(self.config.as_of.timestamp())
        ingested_at = np.maximum(ended_at, np.minimum(ended_at + ingest_delay, as_of))

        seq = np.arange(n, dtype=np.int64) + block * 10_000_000
        pbx_call_id = pc.binary_join_element_wise(
            pa.array(start).cast(pa.string()), pa.array(seq).cast(pa.string()), "."
        )

        def ts(seconds: np.ndarray, mask: np.ndarray | None = None) -> pa.Array:
            return pa.array(seconds * 1_000_000, type=pa.int64(), mask=mask).cast(CALL_EVENT_SCHEMA.field("started_at").type)

        return pa.Table.from_arrays(
            [
                pa.array(np.full(n, client_id, dtype=np.int64)),
                pbx_call_id,
                direction,
                queue,
                agent,
                caller,
                callee,
                ts(start),
                ts(answered_at, mask=~answered),
                ts(ended_at),
                pa.array(disposition, type=pa.string()),
                pa.nulls(n, CALL_EVENT_SCHEMA.field("queued_at").type),  # no queue_log: waits from the start
                ts(ingested_at),
            ],
            schema=CALL_EVENT_SCHEMA,
        )
