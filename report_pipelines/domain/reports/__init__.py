"""The report definitions, by name.

Adding a report is one new module in this package that defines one
:class:`~report_pipelines.domain.reports.base.ReportDefinition` subclass, plus its module name in
:data:`REPORT_MODULES`. The registry imports the listed modules, instantiates the one subclass each
defines and checks its name and schema, so a mistake fails at import, not in a nightly run.

Pure domain code: see :mod:`report_pipelines.domain.reports.base` for the day / combine / present
contract, :mod:`~report_pipelines.domain.reports.screening` for the rows that may count.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from types import MappingProxyType

import pyarrow as pa

from report_pipelines.domain.errors import NotFound
from report_pipelines.domain.reports.base import REPORT_NAME, DayContext, ReportDefinition

#: The modules that each define one report, in the order reports are listed.
REPORT_MODULES: tuple[str, ...] = (
    "call_detail",
    "hourly_volume",
    "agent_performance",
    "queue_performance",
    "daily_summary",
    "wait_distribution",
    "abandonment_curve",
    "agent_availability",
)


def _load(module_name: str) -> ReportDefinition:
    module = importlib.import_module(f"{__name__}.{module_name}")
    defined = [
        obj for obj in vars(module).values()
        if inspect.isclass(obj) and issubclass(obj, ReportDefinition) and not inspect.isabstract(obj)
        and obj.__module__ == module.__name__
    ]
    if len(defined) != 1:
        raise TypeError(f"report module {module.__name__} must define exactly one ReportDefinition, found {len(defined)}")
    report = defined[0]()
    for attribute in ("name", "title", "description", "schema", "period_schema"):
        if not hasattr(report, attribute):
            raise TypeError(f"report {type(report).__name__} has no {attribute!r}")
    if not REPORT_NAME.fullmatch(report.name):
        raise TypeError(f"report name {report.name!r} must match {REPORT_NAME.pattern}")
    if not isinstance(report.schema, pa.Schema) or {"client", "client_id", "date"} & set(report.schema.names):
        raise TypeError(f"report {report.name}: schema must be a pyarrow Schema without client/date columns")
    return report


def _registry() -> Mapping[str, ReportDefinition]:
    found: dict[str, ReportDefinition] = {}
    for module_name in REPORT_MODULES:
        report = _load(module_name)
        if report.name in found:
            raise TypeError(f"two reports are named {report.name!r}")
        found[report.name] = report
    return MappingProxyType(found)


#: Every report, by name (read-only).
REPORTS: Mapping[str, ReportDefinition] = _registry()


def report_names() -> tuple[str, ...]:
    """The names of the known reports, in registry order."""
    return tuple(REPORTS)


def get_report(name: str) -> ReportDefinition:
    """The report called ``name``, or ``NotFound("report", ...)`` listing the known ones."""
    try:
        return REPORTS[name]
    except (KeyError, TypeError):
        raise NotFound("report", f"unknown report {name!r}; known: {', '.join(REPORTS)}") from None


__all__ = ["REPORTS", "REPORT_MODULES", "REPORT_NAME", "DayContext", "ReportDefinition", "get_report", "report_names"]
