"""Readers of PBX call detail record files, one module per ``--format``, the queue_log reader, and
the rejects file.

Each CDR reader streams a binary file and yields :class:`LegBatch` es (legs as Arrow, the rows it
rejected); a problem with the file as a whole (missing header columns, a layout that cannot be
told, a mapping that names a column the file lacks) is an ``InvalidInput`` raised before any row is
yielded.
"""

from report_pipelines.adapters.sources.cdr.asterisk_csv import parse_columns, read_asterisk_csv
from report_pipelines.adapters.sources.cdr.asterisk_db import parse_db_columns, read_asterisk_db
from report_pipelines.adapters.sources.cdr.mapped_csv import SPREADSHEET_SUFFIXES, read_mapped_csv, read_mapped_sheet
from report_pipelines.adapters.sources.cdr.mapping import CsvMapping, load_mapping, parse_mapping
from report_pipelines.adapters.sources.cdr.queue_log import QueueLogFile, read_queue_log
from report_pipelines.adapters.sources.cdr.rejects import RejectsFile
from report_pipelines.adapters.sources.cdr.rows import (
    DateFormat,
    Decoder,
    LegBatch,
    ParsedRow,
    RejectedRow,
    Row,
    batched,
    detect_code_page,
    sample_undecodable,
)

__all__ = [
    "SPREADSHEET_SUFFIXES",
    "CsvMapping",
    "DateFormat",
    "Decoder",
    "LegBatch",
    "ParsedRow",
    "QueueLogFile",
    "RejectedRow",
    "RejectsFile",
    "Row",
    "batched",
    "detect_code_page",
    "load_mapping",
    "parse_columns",
    "parse_db_columns",
    "parse_mapping",
    "read_asterisk_csv",
    "read_asterisk_db",
    "read_mapped_csv",
    "read_mapped_sheet",
    "read_queue_log",
    "sample_undecodable",
]
