"""`demo` (what `make demo` runs), `dev` (what `make dev` runs) and `serve` (what `make prod` runs)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from report_pipelines.cli.base import _app, main


# --- demo -----------------------------------------------------------------------------------------
@main.group()
def demo() -> None:
    """Demo data and the end-to-end demo run (what `make demo` calls)."""


@demo.command("seed")
@click.option("--clients", default=12, show_default=True, help="How many clients to generate.")
@click.option("--days", default=35, show_default=True, help="How many local days of calls per client.")
@click.option("--end", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="Last local day generated [default: the day before yesterday (UTC), the newest "
                   "local day that has ended in every time zone].")
@click.option("--largest", default=3000.0, show_default=True, help="Calls per weekday of the largest client.")
@click.option("--smallest", default=12.0, show_default=True, help="Calls per weekday of the smallest client.")
@click.option("--seed", default=20240601, show_default=True, help="Random seed: same seed, same data.")
@click.option("--reset", is_flag=True, help="Replace demo clients that already exist (and their calls).")
def demo_seed(clients: int, days: int, end, largest: float, smallest: float, seed: int, reset: bool) -> None:
    """Generate realistic clients and calls and bulk-load them (COPY on PostgreSQL)."""
    import datetime as dt

    from report_pipelines.adapters.sources.synthetic import GeneratorConfig
    from report_pipelines.services.demo import seed_demo

    app = _app()
    last = end.date() if end else app.now().date() - dt.timedelta(days=2)
    config = GeneratorConfig(start=last - dt.timedelta(days=days - 1), days=days, clients=clients,
                             largest_daily_calls=largest, smallest_daily_calls=smallest, seed=seed)
    click.echo(f"seeding {clients} clients, local days {config.start} .. {config.end} (seed {seed})")
    summary = seed_demo(app.engine, config, now=app.now(), reset=reset, store=app.store, progress=click.echo)
    total = summary.generate_seconds + summary.load_seconds
    click.echo(
        f"seeded {summary.events:,} calls for {summary.clients} clients in {total:.1f} s "
        f"(generate {summary.generate_seconds:.1f} s, load {summary.load_seconds:.1f} s)"
    )


@demo.command("run")
@click.option("--days", default=7, show_default=True, help="Closed local days to extract for every zone.")
@click.option("--end", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="Last local day [default: the day before yesterday, UTC, as `demo seed`].")
def demo_run(days: int, end) -> None:
    """Run the jobs in-process on the Dagster instance in DAGSTER_HOME and say where results are."""
    import os

    from report_pipelines.demo_runner import run_demo
    from report_pipelines.domain.errors import InvalidInput

    if not os.environ.get("DAGSTER_HOME"):
        raise InvalidInput("DAGSTER_HOME", "set it to a folder holding dagster.yaml (make demo does)")
    ok = run_demo(_app(), echo=click.echo, days=days, last_day=end.date() if end else None)
    sys.exit(0 if ok else 1)


@demo.command("cluster")
@click.option("--days", default=3, show_default=True, help="Closed local dates to backfill.")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 8), help="Celery workers to start.")
@click.option("--end", type=click.DateTime(formats=["%Y-%m-%d"]), default=None,
              help="Last local date [default: the day before yesterday, UTC, as `demo seed`].")
def demo_cluster(days: int, workers: int, end) -> None:
    """Start Celery workers, backfill through them, show who computed what, stop them (make demo-cluster)."""
    import os

    from report_pipelines.demo_cluster import run_cluster_demo
    from report_pipelines.domain.errors import InvalidInput

    if not os.environ.get("DAGSTER_HOME"):
        raise InvalidInput("DAGSTER_HOME", "set it to a folder holding dagster.yaml (make demo-cluster does)")
    ok = run_cluster_demo(_app(), echo=click.echo, days=days, workers=workers, last_day=end.date() if end else None)
    sys.exit(0 if ok else 1)


def dev_command(cwd: Path, host: str, port: int) -> list[str]:
    """``dagster dev`` on the ``workspace.yaml`` of ``cwd`` if it has one (as ``dagster dev`` itself would
    take), else the repository's, else the installed package's definitions."""
    import shutil

    here, repository = cwd / "workspace.yaml", Path(__file__).resolve().parents[2] / "workspace.yaml"
    workspace = here if here.exists() else repository
    beside = Path(sys.executable).with_name("dagster")  # the venv's, even when it is not on PATH
    dagster = str(beside) if beside.exists() else (shutil.which("dagster") or "dagster")
    args = [dagster, "dev", "-h", host, "-p", str(port)]
    return args + (["-w", str(workspace)] if workspace.exists() else ["-m", "report_pipelines.definitions"])


@main.command("dev")
@click.option("--port", default=3000, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
def dev(port: int, host: str) -> None:
    """Start `dagster dev` (UI + daemon) on this code location.

    The workspace is the `workspace.yaml` of the current folder if there is one, else the
    repository's. A process started with `&` from a script inherits SIGINT ignored and dagster dev
    copies that onto SIGTERM, so it could not be stopped; both handlers are reset to default before exec.
    """
    import os
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    args = dev_command(Path.cwd(), host, port)
    os.execvp(args[0], args)


def serve_commands(cwd: Path, host: str, port: int) -> list[list[str]]:
    """The two production processes on this code location: ``dagster-webserver`` and ``dagster-daemon``
    (what ``dagster dev`` starts too, but without its development-only code reloading and with the
    instance of ``$DAGSTER_HOME`` as it is: the production profile's queue, storage and limits)."""
    dev_args = dev_command(cwd, host, port)
    location = dev_args[dev_args.index("-w"):] if "-w" in dev_args else ["-m", "report_pipelines.definitions"]
    bin_dir = Path(sys.executable).parent

    def tool(name: str) -> str:
        import shutil

        beside = bin_dir / name
        return str(beside) if beside.exists() else (shutil.which(name) or name)

    return [[tool("dagster-webserver"), "-h", host, "-p", str(port), *location],
            [tool("dagster-daemon"), "run", *location]]


@main.command("dagster-up")
@click.option("--port", default=3000, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
def dagster_up(port: int, host: str) -> None:
    """Start the Dagster webserver and daemon on $DAGSTER_HOME's instance (what `make prod` runs).

    Both run until one of them exits or this command gets SIGINT/SIGTERM; then the other is stopped
    too (SIGTERM, then SIGKILL after 20 s) and the exit status is the first one's."""
    import os
    import signal
    import subprocess
    import time

    from report_pipelines.domain.errors import InvalidInput

    home = os.environ.get("DAGSTER_HOME")
    if not home or not (Path(home) / "dagster.yaml").is_file():
        raise InvalidInput("DAGSTER_HOME", "set it to a folder holding dagster.yaml (make prod copies "
                                           "deploy/dagster.production.yaml there)")
    stopping = False

    def stop(signum, frame) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    reset = lambda: [signal.signal(s, signal.SIG_DFL) for s in (signal.SIGINT, signal.SIGTERM)]
    processes = [subprocess.Popen(args, preexec_fn=reset) for args in serve_commands(Path.cwd(), host, port)]
    click.echo(f"webserver on http://{host}:{port} (pid {processes[0].pid}), daemon (pid {processes[1].pid}), "
               f"instance {home}")
    status = 0
    while not stopping:
        done = [p for p in processes if p.poll() is not None]
        if done:
            status = done[0].returncode
            break
        time.sleep(0.5)
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    sys.exit(status)
