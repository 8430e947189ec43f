"""The schedules commands' options as a user types them: --body, --no-calls, --message, --reply-to,
--kind alert --condition, `schedules preview`, and hostile values refused in one line naming the field."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

from report_pipelines_tests.test_cli_schedules import NEW_YORK, ok, run  # noqa: F401  (the fixture)


def refused(result, field: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {field}: "), result.stderr
    assert "Traceback" not in result.stderr


def test_options_alerts_and_preview_through_the_cli(run, tmp_path: Path) -> None:  # noqa: F811
    ok(run("db", "upgrade"))
    ok(run("demo", "seed", "--clients", "2", "--days", "3", "--largest", "200", "--end", "2024-10-27"))
    added = ok(run("schedules", "add", "--client", NEW_YORK, "--report", "queue_performance", "--body", "table",
                   "--no-calls", "notice", "--message", "Hi <team>, see below.", "--reply-to", "Boss@Example.com",
                   "--to", "ops@example.com"))
    assert added.startswith("added schedule 1: queue_performance (yesterday) daily at 07:00 America/New_York, csv, "
                            "body table -> ops@example.com")
    shown = ok(run("schedules", "show", "1"))
    assert "  body: table; when the period had no calls: notice\n" in shown
    assert "  reply-to: Boss@example.com\n" in shown and "  message: Hi <team>, see below.\n" in shown

    out = tmp_path / "preview.eml"
    previewed = ok(run("schedules", "preview", "1", "--out", str(out)))
    assert f"wrote {out}" in previewed
    message = email.message_from_bytes(out.read_bytes(), policy=email.policy.default)
    assert message["Reply-To"] == "Boss@example.com" and message["To"] == "ops@example.com"
    assert message.get_content().startswith("No calls for ")  # the demo's calls ended long ago: the notice
    assert "no files yet" in ok(run("schedules", "show", "1"))  # the preview recorded nothing

    ok(run("schedules", "edit", "1", "--no-calls", "send", "--body", "summary", "--no-message"))
    ok(run("schedules", "preview", "1", "--out", str(out)))
    message = email.message_from_bytes(out.read_bytes(), policy=email.policy.default)
    assert message.get_body(("html",)) is not None and len(list(message.iter_attachments())) == 1

    alert = ok(run("schedules", "add", "--client", NEW_YORK, "--kind", "alert", "--condition",
                   "service_level<80 queue=support window=1h", "--to", "ops@example.com"))
    assert alert.startswith("added schedule 2: alert when service_level<80 queue=support window=1h every=15m "
                            "grace=30m (America/New_York), incident clear -> ops@example.com")
    assert "  condition: service_level<80 queue=support window=1h every=15m grace=30m; incident: clear" in ok(
        run("schedules", "show", "2"))

    refused(run("schedules", "add", "--client", NEW_YORK, "--kind", "alert", "--condition",
                "service_level<80 window=3d", "--to", "ops@example.com"), "condition.window")
    refused(run("schedules", "add", "--client", NEW_YORK, "--kind", "alert", "--to", "ops@example.com"), "condition")
    refused(run("schedules", "add", "--client", NEW_YORK, "--report", "hourly_volume", "--to", "ops@example.com",
                "--message", "hi\r\nBcc: spy@evil.example"), "message")
    refused(run("schedules", "edit", "1", "--reply-to", "boss@example.com\r\nBcc: spy@evil.example"), "reply_to")
    refused(run("schedules", "edit", "1", "--body", "fancy"), "body")
    refused(run("schedules", "edit", "2", "--format", "xlsx"), "fmt")
