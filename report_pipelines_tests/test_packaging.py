"""The pinned Dagster family imports together (an unpinned install silently breaks dagster-postgres)."""

from __future__ import annotations

from importlib.metadata import version

from packaging.version import Version


def test_dagster_family_is_one_release_line() -> None:
    import dagster
    import dagster_postgres
    import dagster_webserver

    assert dagster.__version__ == "1.13.27"
    assert dagster_webserver.__version__ == "1.13.27"
    assert dagster_postgres.__version__ == "0.29.27"


def test_psycopg2_is_a_modern_binary_that_imports() -> None:
    import psycopg2
    import psycopg2.extras

    assert Version(version("psycopg2-binary")) >= Version("2.9.9")
    assert psycopg2.__libpq_version__ >= 100000


def test_the_package_imports_without_dagster() -> None:
    import subprocess
    import sys

    code = (
        "import sys, report_pipelines.cli, report_pipelines.services.clients, report_pipelines.services.demo;"
        "assert 'dagster' not in sys.modules, 'the CLI must not pay Dagster import time'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
