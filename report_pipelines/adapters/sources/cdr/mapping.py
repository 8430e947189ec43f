"""The column mapping of a ``mapped-csv`` file (a call-centre export), read from YAML or JSON.

Example (YAML; the same keys in JSON)::

    call_id: Call ID            # required: the column that identifies a call (rows sharing it are one call)
    start: Start                # required: when the call started; or a date and a time column:
                                #   start: {date: Date, time: Time}  (read as "<date> <time>" in date_format)
    queued: Queued at           # optional: when the caller entered the queue (waits are measured from it)
    answer: Answered at         # optional: when it was answered (empty = not answered)
    end: End                    # the end, or durations instead:
    wait_seconds: Wait          #   ring/wait seconds: answer = start + wait
    talk_seconds: Talk          #   talk seconds: end = start + wait + talk
    queue: Queue                # optional columns, stored as they are
    agent: Agent
    caller: From
    callee: To
    direction:                  # optional; without it every call is inbound
      column: Dir
      values: {IN: inbound, OUT: outbound, INT: internal}
      default: inbound          # for an empty cell
    outcome:                    # required: how the export's outcomes map to our dispositions
      column: Result
      values: {Answered: ANSWERED, Abandoned: ABANDONED, Missed: NO ANSWER, Busy: BUSY, Error: FAILED}
    date_format: "%d/%m/%Y %H:%M:%S"   # a strptime format, or "iso" (default), or "epoch" (seconds, UTC)
    timezone: Europe/Lisbon     # optional: the zone of naive times (else --timezone, else the client's)
    delimiter: ";"              # optional, default ","
    sheet: Calls                # XLSX/ODS only: the sheet (name or 0-based index), default the first

The file may be CSV, XLSX or ODS (by its name's ending); in a spreadsheet, cells that hold real dates,
times and numbers are used as they are (``date_format`` is for text cells). Any time column
(``start``, ``answer``, ``end``, ``queued``) may be given as ``{date: <column>, time: <column>}``.
Durations are seconds (``12``, ``12.5``) or ``[H:]MM:SS``. Every refusal is an
:class:`InvalidInput` whose field is ``--mapping <key>``.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from report_pipelines.domain.calls import DIRECTIONS, DISPOSITIONS, Direction, Disposition
from report_pipelines.domain.errors import InvalidInput
from report_pipelines.domain.timezones import parse_zone

COLUMN_KEYS: tuple[str, ...] = (
    "call_id", "start", "answer", "end", "queued", "wait_seconds", "talk_seconds", "queue", "agent", "caller", "callee",
)
#: Keys whose column may be a date column and a time column: ``{date: D, time: T}``.
TIME_KEYS: tuple[str, ...] = ("start", "answer", "end", "queued")
KEYS: tuple[str, ...] = (*COLUMN_KEYS, "direction", "outcome", "date_format", "timezone", "delimiter", "sheet")
#: A mapping file nested deeper than this is refused (a real one is 3 levels deep).
MAX_DEPTH = 8
DATE_FORMATS_NAMED = ("iso", "epoch")


@dataclass(frozen=True)
class CsvMapping:
    call_id: str
    start: str
    outcome: str
    outcome_values: Mapping[str, Disposition]
    answer: str | None = None
    end: str | None = None
    queued: str | None = None
    wait_seconds: str | None = None
    talk_seconds: str | None = None
    queue: str | None = None
    agent: str | None = None
    caller: str | None = None
    callee: str | None = None
    direction: str | None = None
    direction_values: Mapping[str, Direction] = field(default_factory=dict)
    default_direction: Direction = Direction.INBOUND
    date_format: str = "iso"
    timezone: str | None = None
    delimiter: str = ","
    #: The time column of a time key given as {date, time} (the key's own column is then the date).
    time_columns: Mapping[str, str] = field(default_factory=dict)
    sheet: str | int | None = None

    def columns(self) -> dict[str, str]:
        """``{mapping key: column name}`` of every column the mapping uses."""
        used = {key: getattr(self, key) for key in COLUMN_KEYS if getattr(self, key)}
        for key, column in self.time_columns.items():
            used[f"{key}.date"] = used.pop(key)
            used[f"{key}.time"] = column
        used["outcome.column"] = self.outcome
        if self.direction:
            used["direction.column"] = self.direction
        return used


def _fail(key: str, message: str) -> InvalidInput:
    return InvalidInput(f"--mapping {key}" if key else "--mapping", message)


def _unknown_keys(given: Mapping[Any, Any], known: tuple[str, ...], prefix: str = "") -> None:
    for key in given:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise _fail(f"{prefix}{key}", f"unknown key (known keys: {', '.join(known)}){hint}")


def _column(raw: Mapping[str, Any], key: str, shown: str | None = None) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise _fail(shown or key, f"must be a column name (a non-empty string), got {value!r}")
    return value.strip()


def _value_map(raw: Any, key: str, allowed: tuple[str, ...], what: str) -> dict[str, str]:
    if not isinstance(raw, Mapping) or not raw:
        raise _fail(key, f"must map the file's values to {what} ({', '.join(allowed)})")
    by_name = {name.replace("_", " ").upper(): name for name in allowed}
    result: dict[str, str] = {}
    for value, target in raw.items():
        if isinstance(value, bool) or value is None or not isinstance(value, (str, int, float)):
            raise _fail(f"{key}.{value}", "quote this value in the mapping file (YAML reads yes/no/null as booleans)")
        chosen = by_name.get(str(target).replace("_", " ").upper()) if isinstance(target, str) else None
        if chosen is None:
            raise _fail(f"{key}.{value}", f"{target!r} is not one of our {what} ({', '.join(allowed)})")
        result[str(value).strip()] = chosen
    return result


def parse_mapping(raw: Any) -> CsvMapping:
    """Validate a mapping already read from YAML/JSON."""
    if not isinstance(raw, Mapping):
        raise _fail("", f"must be a set of keys ({', '.join(KEYS)}), got {type(raw).__name__}")
    _unknown_keys(raw, KEYS)
    time_columns: dict[str, str] = {}
    raw = dict(raw)
    for key in TIME_KEYS:
        value = raw.get(key)
        if isinstance(value, Mapping):
            _unknown_keys(value, ("date", "time"), f"{key}.")
            date_column = _column(value, "date", f"{key}.date")
            time_column = _column(value, "time", f"{key}.time")
            if date_column is None or time_column is None:
                raise _fail(key, "a date and a time column: {date: <column>, time: <column>}")
            raw[key] = date_column
            time_columns[key] = time_column
    columns = {key: _column(raw, key) for key in COLUMN_KEYS}
    for key in ("call_id", "start"):
        if columns[key] is None:
            raise _fail(key, "required: the column that holds the call's " + ("id" if key == "call_id" else "start time"))
    if columns["end"] is None and columns["wait_seconds"] is None and columns["talk_seconds"] is None:
        raise _fail("end", "give the end column, or the durations wait_seconds and/or talk_seconds")

    outcome = raw.get("outcome")
    if outcome is None:
        raise _fail("outcome", "required: {column: <the outcome column>, values: {<its values>: <our disposition>}}")
    if not isinstance(outcome, Mapping):
        raise _fail("outcome", "must be {column: ..., values: {...}}")
    _unknown_keys(outcome, ("column", "values"), "outcome.")
    outcome_column = _column(outcome, "column", "outcome.column")
    if outcome_column is None:
        raise _fail("outcome.column", "required: the column that holds the call's outcome")
    outcome_values = {k: Disposition(v) for k, v in
                      _value_map(outcome.get("values"), "outcome.values", DISPOSITIONS, "dispositions").items()}

    direction_column: str | None = None
    direction_values: dict[str, Direction] = {}
    default_direction = Direction.INBOUND
    direction = raw.get("direction")
    if direction is not None:
        if not isinstance(direction, Mapping):
            raise _fail("direction", "must be {column: ..., values: {...}, default: inbound}")
        _unknown_keys(direction, ("column", "values", "default"), "direction.")
        direction_column = _column(direction, "column", "direction.column")
        if direction_column is not None:
            direction_values = {k: Direction(v) for k, v in
                                _value_map(direction.get("values"), "direction.values", DIRECTIONS, "directions").items()}
        if "default" in direction:
            default = str(direction["default"]).strip().lower()
            if default not in DIRECTIONS:
                raise _fail("direction.default", f"{direction['default']!r} is not one of {', '.join(DIRECTIONS)}")
            default_direction = Direction(default)

    date_format = raw.get("date_format", "iso")
    if not isinstance(date_format, str) or not (date_format in DATE_FORMATS_NAMED or "%" in date_format):
        raise _fail("date_format", f"{date_format!r} is neither 'iso', 'epoch' nor a strptime format such as '%d/%m/%Y %H:%M'")

    timezone = raw.get("timezone")
    if timezone is not None:
        timezone = parse_zone(timezone if isinstance(timezone, str) else "", field="--mapping timezone").key

    delimiter = raw.get("delimiter", ",")
    if not isinstance(delimiter, str) or len(delimiter) != 1 or delimiter in "\"\r\n":
        raise _fail("delimiter", f"must be one character other than a quote or a newline, got {delimiter!r}")

    sheet = raw.get("sheet")
    if sheet is not None and (isinstance(sheet, bool) or not isinstance(sheet, (str, int)) or sheet == ""):
        raise _fail("sheet", f"must be a sheet name or a 0-based index, got {sheet!r}")

    return CsvMapping(
        call_id=columns["call_id"],  # type: ignore[arg-type]
        start=columns["start"],  # type: ignore[arg-type]
        outcome=outcome_column,
        outcome_values=outcome_values,
        answer=columns["answer"],
        end=columns["end"],
        queued=columns["queued"],
        wait_seconds=columns["wait_seconds"],
        talk_seconds=columns["talk_seconds"],
        queue=columns["queue"],
        agent=columns["agent"],
        caller=columns["caller"],
        callee=columns["callee"],
        direction=direction_column,
        direction_values=direction_values,
        default_direction=default_direction,
        date_format=date_format,
        timezone=timezone,
        delimiter=delimiter,
        time_columns=time_columns,
        sheet=sheet,
    )


def load_mapping(path: str | Path) -> CsvMapping:
    """Read and validate a mapping file: ``.json`` as JSON, anything else as YAML."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInput("--mapping", f"no such file: {path}")
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise InvalidInput("--mapping", f"cannot read {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise InvalidInput("--mapping", f"{path.name} is not UTF-8 text") from exc
    too_deep = InvalidInput("--mapping", f"{path.name} is nested more than {MAX_DEPTH} levels deep "
                                         "(a mapping is keys, values and one level of tables)")
    if _bracket_depth(text) > MAX_DEPTH:
        raise too_deep
    try:
        if path.suffix.lower() == ".json":
            try:
                raw = json.loads(text)
            except json.JSONDecodeError as exc:
                raise InvalidInput("--mapping", f"{path.name} is not valid JSON: line {exc.lineno} column {exc.colno}: "
                                                f"{exc.msg}") from exc
        else:
            try:
                raw = yaml.safe_load(text)
            except yaml.YAMLError as exc:
                where = getattr(exc, "problem_mark", None)
                at = f" at line {where.line + 1} column {where.column + 1}" if where is not None else ""
                raise InvalidInput("--mapping", f"{path.name} is not valid YAML{at}: {getattr(exc, 'problem', exc)}") from exc
    except RecursionError:
        raise too_deep from None
    if _depth(raw) > MAX_DEPTH:
        raise too_deep
    return parse_mapping(raw)


def _bracket_depth(text: str) -> int:
    """How deeply ``[``/``{`` nest in the text (an upper bound of flow-style nesting), cheaply."""
    depth = deepest = 0
    for char in text:
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth = max(0, depth - 1)
    return deepest


def _depth(value: Any, level: int = 0) -> int:
    if level > MAX_DEPTH:
        return level
    if isinstance(value, Mapping):
        return max((_depth(v, level + 1) for v in value.values()), default=level + 1)
    if isinstance(value, list):
        return max((_depth(v, level + 1) for v in value), default=level + 1)
    return level
