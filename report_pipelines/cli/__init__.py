"""``report-pipelines``: the command line over the same services the Dagster definitions use.

Expected problems (bad input, unknown names, conflicts) print one line naming the field and exit
with status 2; nothing is half-written. Anything else is a bug and keeps its traceback. Each group
lives in its own module; importing this package registers them all on :data:`main`. Commands import
what they use lazily, so the CLI never pays Dagster's import time.
"""

from report_pipelines.cli import (  # noqa: F401  (registration)
    api,
    cache,
    clients,
    commercial,
    demo,
    imports,
    periods,
    schedules,
    worker,
)
from report_pipelines.cli.base import main

__all__ = ["main"]
