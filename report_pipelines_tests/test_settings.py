"""Settings: parsed from the environment in one place, each bad value refused naming its variable."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from report_pipelines.app import App, FixedClock, bootstrap, load_settings
from report_pipelines.domain.errors import InvalidInput
from report_pipelines.settings import Settings


def test_defaults_with_an_empty_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = Settings.from_env({})
    assert settings.data_dir == tmp_path / "data"
    assert settings.database_url == f"sqlite:///{tmp_path / 'data' / 'report_pipelines.sqlite3'}"
    assert settings.store_root == str(tmp_path / "data" / "reports")
    assert (settings.workers, settings.retention_days, settings.lock_timeout_s) == (2, 7, 3600.0)
    assert (settings.executor, settings.deployment) == ("in_process", "local")
    assert settings.files_dir == tmp_path / "data" / "report_files"
    assert settings.outbox_dir == tmp_path / "data" / "outbox"
    assert settings.mail.smtp_host is None and settings.mail.smtp_port == 587 and settings.mail.smtp_starttls


def test_every_variable_is_read(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    env = {
        "REPORT_PIPELINES_DATA_DIR": str(tmp_path / "d"), "REPORT_PIPELINES_DATABASE_URL": "postgresql://u@db/rp",
        "REPORT_PIPELINES_STORE": "s3://bucket/prefix", "REPORT_PIPELINES_WORKERS": " 8 ",
        "REPORT_PIPELINES_LOCK_TIMEOUT_S": "2.5", "REPORT_PIPELINES_EXECUTOR": "multiprocess",
        "REPORT_PIPELINES_DEPLOYMENT": "production", "REPORT_PIPELINES_FILES": str(tmp_path / "f"),
        "REPORT_PIPELINES_SMTP_HOST": "smtp.example.com", "REPORT_PIPELINES_SMTP_PORT": "2525",
        "REPORT_PIPELINES_SMTP_USER": "u", "REPORT_PIPELINES_SMTP_PASSWORD": "s3cret",
        "REPORT_PIPELINES_SMTP_STARTTLS": "off", "REPORT_PIPELINES_SMTP_CAFILE": str(ca),
        "REPORT_PIPELINES_OUTBOX": str(tmp_path / "o"), "REPORT_PIPELINES_MAIL_FROM": "r@example.com",
        "REPORT_PIPELINES_MAX_ATTACHMENT_MB": "3", "REPORT_PIPELINES_RETENTION_DAYS": "0",
        "REPORT_PIPELINES_MAX_ATTEMPTS": "9",
    }
    s = Settings.from_env(env)
    assert s.database_url == "postgresql+psycopg2://u@db/rp"  # the driver we install, explicitly
    assert (s.store_root, s.workers, s.lock_timeout_s, s.executor, s.deployment) == (
        "s3://bucket/prefix", 8, 2.5, "multiprocess", "production")
    assert (s.files_dir, s.outbox_dir, s.retention_days) == (tmp_path / "f", tmp_path / "o", 0)
    m = s.mail
    assert (m.smtp_host, m.smtp_port, m.smtp_user, m.smtp_password, m.smtp_starttls, m.smtp_cafile) == (
        "smtp.example.com", 2525, "u", "s3cret", False, str(ca))
    assert (m.mail_from, m.max_attachment_bytes, m.max_attempts) == ("r@example.com", 3 * 1024 * 1024, 9)
    assert "s3cret" not in repr(s)  # a secret never shows in a log line


@pytest.mark.parametrize(("variable", "value", "message"), [
    ("WORKERS", "two", "must be a whole number from 1 to 256, not 'two'"),
    ("WORKERS", "0", "must be a whole number from 1 to 256, not '0'"),
    ("WORKERS", "-3", "must be a whole number from 1 to 256, not '-3'"),
    ("WORKERS", "2.5", "must be a whole number from 1 to 256, not '2.5'"),
    ("WORKERS", "1e3", "must be a whole number from 1 to 256, not '1e3'"),
    ("SMTP_PORT", "70000", "must be a whole number from 1 to 65535, not '70000'"),
    ("RETENTION_DAYS", "-1", "must be a whole number from 0 to 3650, not '-1'"),
    ("MAX_ATTEMPTS", "0", "must be a whole number from 1 to 100, not '0'"),
    ("LOCK_TIMEOUT_S", "soon", "must be a number of seconds >= 0, not 'soon'"),
    ("LOCK_TIMEOUT_S", "-1", "must be a number of seconds >= 0, not '-1'"),
    ("LOCK_TIMEOUT_S", "nan", "must be a number of seconds >= 0, not 'nan'"),
    ("LOCK_TIMEOUT_S", "inf", "must be a number of seconds >= 0, not 'inf'"),
    ("SMTP_STARTTLS", "maybe", "must be true or false, not 'maybe'"),
    ("EXECUTOR", "celery-ish", "must be one of in_process, multiprocess, not 'celery-ish'"),
    ("DEPLOYMENT", "prod", "must be one of local, production, not 'prod'"),
    ("DATABASE_URL", "report_pipelines.sqlite3", "must be a database URL such as postgresql://user@host/db, "
                                                 "not 'report_pipelines.sqlite3'"),
    ("OUTBOX", "s3://bucket/outbox", "must be a local folder, not a URI ('s3://bucket/outbox')"),
    ("MAIL_FROM", "a@b.c\nBcc: x@y.z", "control characters are not allowed"),
])
def test_bad_values_are_refused_naming_the_variable(variable: str, value: str, message: str) -> None:
    with pytest.raises(InvalidInput) as err:
        Settings.from_env({f"REPORT_PIPELINES_{variable}": value})
    assert (err.value.field, err.value.message) == (f"REPORT_PIPELINES_{variable}", message)


def test_paths_that_are_not_folders_or_files_are_refused(tmp_path: Path) -> None:
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    for variable in ("DATA_DIR", "FILES", "OUTBOX"):
        with pytest.raises(InvalidInput) as err:
            Settings.from_env({f"REPORT_PIPELINES_{variable}": str(a_file)})
        assert err.value.field == f"REPORT_PIPELINES_{variable}" and "exists and is not a folder" in err.value.message
    with pytest.raises(InvalidInput) as err:
        Settings.from_env({"REPORT_PIPELINES_SMTP_CAFILE": str(tmp_path / "missing.pem")})
    assert err.value.field == "REPORT_PIPELINES_SMTP_CAFILE" and "is not a readable file" in err.value.message
    home = Settings.from_env({"REPORT_PIPELINES_DATA_DIR": "~/rp-data", "HOME": str(tmp_path)})
    assert home.data_dir.is_absolute() and "~" not in str(home.data_dir)


def test_blank_values_mean_the_default(tmp_path: Path) -> None:
    settings = Settings.from_env({"REPORT_PIPELINES_DATA_DIR": str(tmp_path), "REPORT_PIPELINES_WORKERS": "  ",
                                  "REPORT_PIPELINES_SMTP_HOST": ""})
    assert settings.workers == 2 and settings.mail.smtp_host is None


def test_overrides_go_through_the_same_parsing(tmp_path: Path) -> None:
    env = {"REPORT_PIPELINES_DATA_DIR": str(tmp_path), "REPORT_PIPELINES_WORKERS": "3"}
    assert load_settings({"REPORT_PIPELINES_WORKERS": "5"}, environ=env).workers == 5
    assert load_settings({"REPORT_PIPELINES_WORKERS": None}, environ=env).workers == 3  # None: not overridden
    with pytest.raises(InvalidInput) as err:
        load_settings({"REPORT_PIPELINES_WORKERS": "many"}, environ=env)
    assert err.value.field == "REPORT_PIPELINES_WORKERS"


def test_the_app_builds_its_pieces_once_and_reads_its_clock(tmp_path: Path) -> None:
    clock = FixedClock(dt.datetime(2024, 3, 10, 7, 30, tzinfo=dt.UTC))
    app = bootstrap(environ={"REPORT_PIPELINES_DATA_DIR": str(tmp_path)}, clock=clock)
    assert isinstance(app, App) and app.now() == clock.instant
    assert clock.advance(dt.timedelta(hours=1)) == app.now()
    assert app.engine is app.engine and app.store is app.store and app.locks is app.locks
    assert type(app.mailer).__name__ == "OutboxMailer"  # no SMTP host: the local outbox
    assert app.store.root == str(tmp_path / "reports") and app.engine.url.database.endswith("report_pipelines.sqlite3")
    app.dispose()
    with pytest.raises(ValueError):
        FixedClock(dt.datetime(2024, 3, 10, 7, 30))  # a clock reads aware instants


def test_only_the_composition_root_reads_the_environment() -> None:
    """`Settings.from_env` is called in one place: report_pipelines.app.load_settings."""
    root = Path(__file__).resolve().parent.parent / "report_pipelines"
    callers = sorted(str(p.relative_to(root)) for p in root.rglob("*.py")
                     if "Settings.from_env(" in p.read_text() and p.name != "settings.py")
    assert callers == ["app.py"]
    reads = ("os.environ.get(", "os.environ[", "os.getenv(")  # handing the environment to a child is no read
    readers = sorted(str(p.relative_to(root)) for p in root.rglob("*.py") if any(r in p.read_text() for r in reads))
    # DAGSTER_HOME is Dagster's own variable: the demo says where it is and refuses to run without it.
    assert set(readers) <= {"demo_runner.py", "cli/demo.py"}, readers
