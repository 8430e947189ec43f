"""THE CHAOS TEST of the scheduled reports (marked ``chaos``; about two minutes).

Builders and senders as separate OS processes on PostgreSQL, SIGKILLed at random moments and
restarted, against a real SMTP relay that is sometimes slow, greylists recipients, refuses one
address for good and drops connections after DATA. Then: every occurrence built exactly once,
every recipient delivered or failed and visible, no duplicate outside the documented window (each
one counted by cause), nothing lost, no row stuck. ``benchmarks/soak_schedules.py`` runs the same
harness longer and bigger. Deselect with ``-m 'not chaos'``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from report_pipelines.adapters.db.engine import make_engine
from report_pipelines.adapters.db.migrate import upgrade
from report_pipelines_tests.chaos_support import ChaosConfig, run


@pytest.mark.chaos
def test_chaos_no_scheduled_report_is_lost_or_doubled_outside_the_window(pg_url: str, tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture) -> None:
    engine = make_engine(pg_url)
    upgrade(engine)
    config = ChaosConfig(url=pg_url, workdir=str(tmp_path), schedules=60, builders=2, senders=3, storm_s=40)
    try:
        verdict, storm = run(config, engine, log=print)
    finally:
        engine.dispose()
    with capsys.disabled():
        print("\nchaos test:\n  " + "\n  ".join(verdict.lines(storm)))
    # The storm really happened: processes were killed, the relay misbehaved in every way.
    assert len(storm.kills) >= 15
    assert verdict.relay["greylisted 450"] > 0 and verdict.relay["refused 550"] > 0
    assert verdict.relay["dropped before taking it"] > 0 and verdict.relay["taken, reply lost"] > 0
    # And nothing broke.
    assert storm.drained_s is not None, verdict.stuck[:10]
    assert verdict.stuck == [] and verdict.not_advanced == []
    assert verdict.files == verdict.occurrences == 60
    assert verdict.built_once + verdict.builds_failed == 60
    assert verdict.lost == [] and verdict.unexplained == [], (verdict.lost[:5], verdict.unexplained[:5])
    assert set(verdict.recipients) <= {"accepted", "refused", "failed"}
    # REFUSED is on every 5th schedule's list: refused once, never retried, never received
    assert verdict.recipients["refused"] == sum(1 for i in range(60) if i % config.refused_every == 0)
    # asked again only when the sender that heard the 550 died before recording it
    assert verdict.recipients["refused"] <= verdict.relay["refused 550"] <= verdict.recipients["refused"] + len(
        [k for k in storm.kills if k[1] == "sender"])
