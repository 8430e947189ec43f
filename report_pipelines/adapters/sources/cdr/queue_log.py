"""Asterisk's ``/var/log/asterisk/queue_log`` (pipe-separated, epoch seconds): the events of
:mod:`report_pipelines.domain.queue_log`, line by line; a line that cannot be read is rejected with
its reason and never stops the file."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import BinaryIO

from report_pipelines.adapters.sources.cdr.rows import Decoder, RejectedRow, numbered_lines
from report_pipelines.domain.errors import InvalidInput
from report_pipelines.domain.queue_log import QueueLog, parse_event


@dataclass
class QueueLogFile:
    log: QueueLog
    rejects: list[RejectedRow] = field(default_factory=list)
    rows: int = 0


def read_queue_log(stream: BinaryIO, decoder: Decoder | None = None) -> QueueLogFile:
    result = QueueLogFile(QueueLog())
    for item in numbered_lines(stream, decoder):
        result.rows += 1
        if isinstance(item, RejectedRow):
            result.rejects.append(item)
            continue
        number, text = item
        try:
            result.log.add(parse_event(number, text))
        except InvalidInput as exc:
            result.rejects.append(RejectedRow(number, str(exc), text))
    return result
