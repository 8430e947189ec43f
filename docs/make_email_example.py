"""Regenerate the rendered report e-mail example in docs/ (used by the README).

    .venv/bin/python docs/make_email_example.py

Seeds a throw-away SQLite database with two weeks of demo calls for one New York client, then
writes the queue_performance e-mail of the week 2024-03-04..2024-03-10 (its Sunday is the
spring-forward day), compared with the week before, through ``write_demo_message``: the ``.eml``,
its HTML with the images inlined, and a headless-Chromium screenshot at a phone's width.
"""

from __future__ import annotations

import datetime as dt
import shutil
import tempfile
from pathlib import Path

from report_pipelines.adapters.db.engine import make_engine
from report_pipelines.adapters.db.migrate import upgrade
from report_pipelines.adapters.sources.synthetic import GeneratorConfig
from report_pipelines.app import App
from report_pipelines.services.clients import list_clients
from report_pipelines.services.demo import seed_demo
from report_pipelines.services.report_mail import write_demo_message
from report_pipelines.settings import Settings

DOCS = Path(__file__).resolve().parent
NOW = dt.datetime(2024, 3, 11, 12, tzinfo=dt.UTC)


def main() -> None:
    with tempfile.TemporaryDirectory() as work:
        folder = Path(work)
        url = f"sqlite:///{folder / 'app.sqlite3'}"
        engine = make_engine(url)
        upgrade(engine)
        seed_demo(engine, GeneratorConfig(start=dt.date(2024, 2, 26), days=14, clients=1, largest_daily_calls=900,
                                          smallest_daily_calls=900, zones=("America/New_York",)), now=NOW)
        settings = Settings(data_dir=folder, database_url=url, store_root=str(folder / "reports"), workers=1)
        client = list_clients(engine)[0]
        written = write_demo_message(App(settings), client.slug, "queue_performance", dt.date(2024, 3, 4),
                                     dt.date(2024, 3, 10), now=NOW, folder=folder / "out")
        for source, name in ((written.eml, "report-email-example.eml"), (written.html, "report-email-example.html"),
                             (written.screenshot, "report-email-example.png")):
            shutil.copy(source, DOCS / name)
            print(DOCS / name)


if __name__ == "__main__":
    main()
