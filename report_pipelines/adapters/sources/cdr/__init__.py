"""Readers of PBX call detail record files, one module per ``--format``, and the rejects file.

Each reader streams a binary file and yields one :class:`ParsedRow` or :class:`RejectedRow` per
non-blank physical line; a problem with the file as a whole (missing header columns, a mapping that
names a column the file lacks) is an ``InvalidInput`` raised before any row is yielded.
"""

from report_pipelines.adapters.sources.cdr.asterisk_csv import read_asterisk_csv
from report_pipelines.adapters.sources.cdr.asterisk_db import read_asterisk_db
from report_pipelines.adapters.sources.cdr.mapped_csv import read_mapped_csv
from report_pipelines.adapters.sources.cdr.mapping import CsvMapping, load_mapping, parse_mapping
from report_pipelines.adapters.sources.cdr.rejects import RejectsFile
from report_pipelines.adapters.sources.cdr.rows import ParsedRow, RejectedRow, Row

__all__ = [
    "CsvMapping",
    "ParsedRow",
    "RejectedRow",
    "RejectsFile",
    "Row",
    "load_mapping",
    "parse_mapping",
    "read_asterisk_csv",
    "read_asterisk_db",
    "read_mapped_csv",
]
