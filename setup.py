"""report_pipelines: the reporting back end of a multi-tenant cloud PBX, on Dagster.

The Dagster family is pinned to one release line on purpose: unpinned, pip takes a newer dagster and
silently falls back to an ancient dagster-postgres whose psycopg2 crashes on import
(see ../shared/DAGSTER_NOTES.md). ``report_pipelines_tests/test_packaging.py`` imports the set.
"""

from setuptools import find_packages, setup

DAGSTER = "1.13.27"
DAGSTER_LIBS = "0.29.27"

setup(
    name="report_pipelines",
    version="0.1.0",
    description="Per-client, per-local-day call reports for a multi-tenant cloud PBX, on Dagster.",
    packages=find_packages(exclude=["report_pipelines_tests", "report_pipelines_tests.*", "benchmarks"]),
    package_data={"report_pipelines": ["adapters/db/migrations/*.ini", "adapters/db/migrations/*.mako",
                                       "adapters/db/migrations/versions/*.py", "demo_data/*"]},
    include_package_data=True,
    python_requires=">=3.11,<3.14",
    install_requires=[
        f"dagster=={DAGSTER}",
        f"dagster-webserver=={DAGSTER}",
        f"dagster-postgres=={DAGSTER_LIBS}",
        "psycopg2-binary>=2.9.9,<3",
        "SQLAlchemy>=2.0.30,<2.2",
        "alembic>=1.13,<2",
        "pandas>=2.2,<4",
        "pyarrow>=16,<27",
        # bulk load of call events: COPY BINARY from Arrow (adapters/db/bulk.py)
        "adbc-driver-manager==1.13.0",
        "adbc-driver-postgresql==1.13.0",
        "numpy>=1.26,<3",
        "tzdata>=2024.1",
        "PyYAML>=6.0",
        "filelock>=3.13",
        "click>=8.1,<9",
        "XlsxWriter>=3.1,<4",
        "email-validator>=2.1,<3",
        "matplotlib>=3.8,<4",  # report e-mail charts (Agg backend, no display)
        "fpdf2>=2.7,<3",  # PDF attachments (pure Python, no browser)
        "charset-normalizer>=3.3,<4",
        "python-calamine>=0.2,<1",
        # the HTTP API (report-pipelines serve)
        "fastapi>=0.115,<1",
        "uvicorn>=0.30,<1",
        "httpx>=0.27,<1",
        # REPORT_PIPELINES_POOL=celery: the run's batches on Celery workers (Redis broker and results)
        "celery>=5.5,<6",
        "redis>=5,<9",
    ],
    extras_require={
        "test": [
            "pytest>=8,<10",
            "pytest-xdist>=3.6,<4",  # make test: the suite on PYTEST_WORKERS processes (whole files each)
            "hypothesis>=6.100,<7",
            "aiosmtpd>=1.4.6,<2",
            "openpyxl>=3.1,<4",
            "ruff>=0.17,<0.18",
            "pypdf>=4,<8",
            "schemathesis>=4.0,<5",
            "moto[server]>=5.1,<6",  # a local S3-compatible server for the object-storage store tests
            "boto3>=1.34,<2",  # creates the test buckets
            "playwright>=1.50,<2",  # drives Debian's Chromium through the Dagster UI (no browser download)
        ],
        "bench": ["duckdb>=1.0"],
        # the Kubernetes image (deploy/Dockerfile): the K8sRunLauncher and k8s executor, same release line
        "k8s": [f"dagster-k8s=={DAGSTER_LIBS}"],
    },
    entry_points={"console_scripts": ["report-pipelines=report_pipelines.cli:main"]},
)
