"""Repairing the report cache after a crash: the manifest and the files agree again.

A client-day is written as: forget its manifest rows, replace each report's file atomically
(``fsync``, rename, ``fsync`` the folder), record the new rows. A process killed in between leaves
files without rows, never a row that describes other bytes; readers trust a file only with its row, so
they see such a day as not cached (and recompute it). This pass, run daily and after incidents
(``report-pipelines cache repair``, ``repair_report_cache_job``), makes that state tidy:

* a file without a row gets its row back from what the file itself records (report, client, date,
  source count, checksum and watermark, rejected rows: the provenance every day file carries in its
  Parquet metadata); a file that does not carry it is deleted (the day is simply not cached);
* a row whose file is gone is deleted;
* with ``verify``, a row whose checksum differs from its file's bytes is deleted (the day is then
  recomputed by the next run or read);
* temporary files older than the grace period (a killed writer's) are deleted.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field

from report_pipelines.adapters.db.repositories import CacheManifestRepository
from report_pipelines.adapters.report_store import TEMP_GRACE_S
from report_pipelines.app import App
from report_pipelines.domain.cache import CachedDay
from report_pipelines.domain.reports import REPORTS

PROVENANCE = ("report", "client", "date", "source_rows", "source_checksum", "source_watermark", "rejected_reasons")


@dataclass
class RepairSummary:
    files: int = 0
    rows_restored: list[tuple[str, int, dt.date]] = field(default_factory=list)
    files_deleted: list[str] = field(default_factory=list)
    rows_deleted: list[tuple[str, int, dt.date]] = field(default_factory=list)
    temporaries_deleted: list[str] = field(default_factory=list)


def repair_cache(app: App, *, verify: bool = False, grace_s: float = TEMP_GRACE_S) -> RepairSummary:
    store, manifest = app.store, CacheManifestRepository(app.engine)
    summary = RepairSummary()
    rows = {(e.report, e.client_id, e.local_date): e for e in manifest.all_entries()}
    files = store.day_files()
    summary.files = len(files)
    on_disk = set()
    for report, client_id, day, path in files:
        key = (report, client_id, day)
        on_disk.add(key)
        row = rows.get(key)
        if row is not None and not verify:
            continue
        meta, n_rows, size, checksum = store.file_metadata(path)
        if row is not None:
            if row.checksum != checksum:
                manifest.forget(client_id, day, (report,))
                summary.rows_deleted.append(key)
            continue
        if report not in REPORTS or any(name not in meta for name in PROVENANCE) or (
                meta["report"], meta["client"], meta["date"]) != (report, str(client_id), day.isoformat()):
            store.delete_file(path)
            summary.files_deleted.append(path)
            continue
        watermark = dt.datetime.fromisoformat(meta["source_watermark"]) if meta["source_watermark"] else None
        rejected = json.loads(meta["rejected_reasons"])
        manifest.replace([CachedDay(
            report=report, client_id=client_id, local_date=day, path=path, rows=n_rows, bytes=size, checksum=checksum,
            source_rows=int(meta["source_rows"]), source_checksum=meta["source_checksum"], source_watermark=watermark,
            rejected_rows=sum(rejected.values()), rejected_reasons=rejected, computed_at=app.now(), run_id="repair")])
        summary.rows_restored.append(key)
    for key in sorted(set(rows) - on_disk):
        manifest.forget(key[1], key[2], (key[0],))
        summary.rows_deleted.append(key)
    for path in store.stale_temporaries(grace_s):
        store.delete_file(path)
        summary.temporaries_deleted.append(path)
    return summary
