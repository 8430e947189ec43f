"""The rejects file: one CSV row (line, reason, raw) per input row that was not imported.

It is created on the first reject only, and never over an existing file (``open(..., "x")``).
The raw text is the line as read (undecodable bytes shown as ``\\xNN``), so fixing and re-importing
the rows is possible; cells are written verbatim, formula-like ones included.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TextIO

HEADER = ("line", "reason", "raw")


class RejectsFile:
    def __init__(self, path: Path, *, find_free_name: bool = False) -> None:
        self.requested = path
        self.find_free_name = find_free_name
        self.path: Path | None = None
        self.count = 0
        self._file: TextIO | None = None
        self._writer = None

    def _open(self) -> None:
        self.requested.parent.mkdir(parents=True, exist_ok=True)
        candidate, attempt = self.requested, 1
        while True:
            try:
                self._file = candidate.open("x", encoding="utf-8", newline="")
                break
            except FileExistsError:
                if not self.find_free_name:
                    raise
                attempt += 1
                candidate = self.requested.with_name(f"{self.requested.stem}-{attempt}{self.requested.suffix}")
        self.path = candidate
        self._writer = csv.writer(self._file)
        self._writer.writerow(HEADER)

    def write(self, line: int, reason: str, raw: str) -> None:
        if self._writer is None:
            self._open()
        self._writer.writerow((line, reason, raw))  # type: ignore[union-attr]
        self.count += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
