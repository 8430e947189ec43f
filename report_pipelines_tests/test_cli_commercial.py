"""The commercial commands as a user runs them: catalogue, policies, a prospect's proposal through
approval and application to a served client, trials; one-line errors naming the field or option."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

CLI = str(Path(sys.executable).with_name("report-pipelines"))
PARALLEL = min(4, os.cpu_count() or 2)  # independent commands at once, as many as there are CPUs


@pytest.fixture
def run(tmp_path: Path):
    env = {**os.environ, "REPORT_PIPELINES_DATA_DIR": str(tmp_path / "data")}
    env.pop("REPORT_PIPELINES_DATABASE_URL", None)

    def _run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=120)

    return _run


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_a_prospect_becomes_a_served_client_through_the_cli(run) -> None:
    ok(run("db", "upgrade"))
    assert ok(run("products", "add", "REPORTS", "--name", "Call reports", "--unit", "licence", "--price", "49.90",
                  "--currency", "EUR")) == "added product REPORTS: Call reports, 49.90 EUR per licence\n"
    ok(run("products", "add", "SEATS", "--name", "Seats", "--unit", "seat", "--price", "12.345", "--currency", "EUR"))
    assert ok(run("policies", "add", "WELCOME10", "--name", "Welcome", "--kind", "percentage", "--value", "10",
                  "--from", "2024-01-01", "--max-uses", "5", "--by", "alice")) == \
        "added policy WELCOME10: Welcome, 10% off, 2024-01-01 to no end\n"
    ok(run("policies", "add", "FIVE", "--name", "Five off seats", "--kind", "amount", "--value", "5", "--currency",
           "EUR", "--products", "SEATS", "--from", "2024-01-01", "--stackable", "--by", "alice"))

    created = ok(run("proposals", "create", "--prospect-name", "Acme Ltd", "--prospect-email", "ops@acme.example",
                     "--timezone", "Europe/Lisbon", "--slug", "acme", "--item", "REPORTS=1", "--item", "SEATS=25",
                     "--valid-until", "2099-12-31", "--term-days", "365", "--by", "bob"))
    assert created.startswith("created proposal 1 (draft) for prospect Acme Ltd <ops@acme.example> (account acme, "
                              "Europe/Lisbon), valid until 2099-12-31, licences: 365 days\n")
    assert "  REPORTS  1 x 49.90 EUR = 49.90 EUR  discount 4.99 EUR  total 44.91 EUR  [WELCOME10]\n" in created
    assert "  SEATS    25 x 12.345 EUR = 308.63 EUR  discount 35.87 EUR  total 272.76 EUR  [WELCOME10, FIVE]\n" in created
    assert "  subtotal 358.53 EUR  discount 40.86 EUR  total 317.67 EUR\n" in created
    assert "WELCOME10 (10% off) applied, 35.85 EUR off" in created and "FIVE (5.00 EUR off each line, stackable)" in created

    assert ok(run("proposals", "submit", "1", "--by", "bob")) == "proposal 1 submitted by bob (total 317.67 EUR)\n"
    approved = ok(run("proposals", "approve", "1", "--by", "carol"))
    assert approved.startswith("proposal 1 approved by carol (total 317.67 EUR)\n")
    assert "report-pipelines proposals apply 1" in approved
    shown = ok(run("proposals", "show", "1"))
    history = [line.split()[3:] for line in shown.splitlines() if " UTC  " in line]
    assert history == [["create", "->", "draft", "by", "bob"], ["submit", "draft", "->", "submitted", "by", "bob"],
                       ["approve", "submitted", "->", "approved", "by", "carol"]]
    assert "proposal 1: approved, for prospect Acme Ltd" in shown and "  not applied yet" in shown
    assert "total 317.67 EUR" in shown and "pricing:" in shown

    applied = ok(run("proposals", "apply", "1"))
    assert applied.splitlines()[0] == "applied proposal 1 to client acme (id 1, created): 2 licences"
    assert "  SEATS x25 at 12.345 EUR, discount 35.87 EUR," in applied
    assert ok(run("proposals", "apply", "1")) == "proposal 1 already applied: nothing written\n"
    ok(run("proposals", "create", "--client", "acme", "--item", "SEATS=5", "--valid-until", "2099-12-31", "--by", "bob"))
    ok(run("trials", "start", "trial-co", "--name", "Trial Co", "--timezone", "Asia/Tokyo", "--days", "14"))

    with ThreadPoolExecutor(PARALLEL) as pool:  # read-only views, at once
        licences, trial, listed, policies = (ok(r) for r in pool.map(lambda args: run(*args), [
            ("clients", "licences", "acme"), ("clients", "licences", "trial-co"), ("proposals", "list"),
            ("policies", "list")]))
    lines = licences.splitlines()
    assert lines[0].startswith("licences of acme (id 1, Europe/Lisbon, today ")
    assert lines[1].startswith("  REPORTS x1 at 49.90 EUR, discount 4.99 EUR, ")
    assert lines[1].endswith(", paid, proposal 1: active today")
    assert lines[2].startswith("  SEATS x25 at 12.345 EUR, discount 35.87 EUR, ")
    assert lines[3].startswith("served by the pipelines: yes (an active REPORTS licence, through ")
    assert "REPORTS x1 at 0.00 EUR, discount 0.00 EUR" in trial and ", trial, no proposal: active today" in trial
    assert [line.split()[:3] for line in listed.splitlines()] == [
        ["1", "approved", "317.67"], ["2", "draft", "50.55"]]  # 5 seats: 61.73 - 10% - 5.00
    assert "client acme (Europe/Lisbon)" in listed.splitlines()[0] and ", applied " in listed.splitlines()[0]
    assert "WELCOME10  10% off" in policies and "used 1 of 5" in policies


def test_bad_input_is_one_line_naming_the_option_or_field(run) -> None:
    ok(run("db", "upgrade"))
    ok(run("products", "add", "REPORTS", "--name", "Call reports", "--unit", "licence", "--price", "49", "--currency", "EUR"))
    ok(run("proposals", "create", "--prospect-name", "Acme", "--prospect-email", "ops@acme.example", "--timezone", "UTC",
           "--slug", "acme", "--item", "REPORTS=1", "--valid-until", "2099-12-31", "--by", "bob"))
    create = ("proposals", "create", "--prospect-name", "Beta", "--prospect-email", "ops@beta.example",
              "--timezone", "UTC", "--slug", "beta", "--valid-until", "2099-12-31", "--by", "bob")
    cases = {
        ("products", "add", "REPORTS", "--name", "Again", "--unit", "seat", "--price", "1", "--currency", "EUR"):
            "error: code: a product with code 'REPORTS' already exists",
        ("products", "add", "SEATS", "--name", "Seats", "--unit", "seat", "--price", "12,50", "--currency", "EUR"):
            "error: --price: '12,50' is not a number (e.g. 49.90)",
        ("products", "add", "SEATS", "--name", "Seats", "--unit", "box", "--price", "1", "--currency", "EUR"):
            "error: unit: 'box' is not a unit (one of: seat, licence, flat)",
        (*create, "--item", "REPORTS=two"): "error: --item: 'REPORTS=two' must be CODE=QTY with a whole number, e.g. SEATS=25",
        (*create, "--item", "REPORTS"): "error: --item: 'REPORTS' must be CODE=QTY, e.g. REPORTS=1",
        (*create, "--item", "REPORTS=0"): "error: quantity: REPORTS: quantity must be at least 1, not 0",
        (*create, "--item", "NOPE=1"): "error: product: unknown product 'NOPE'; known: REPORTS",
        (*create, "--item", "REPORTS=1", "--policy", "NOPE"): "error: policy: unknown policy 'NOPE'; the candidates are: none",
        (*create, "--item", "REPORTS=1", "--term-days", "a year"): "error: --term-days: 'a year' is not a whole number",
        ("proposals", "create", "--prospect-name", "Beta", "--item", "REPORTS=1", "--valid-until", "2099-12-31",
         "--by", "bob"): "error: --prospect-email: required for a prospect",
        ("proposals", "create", "--client", "acme", "--item", "REPORTS=1", "--valid-until", "31/12/2099", "--by", "bob"):
            "error: --valid-until: '31/12/2099' is not a date (YYYY-MM-DD)",
        ("proposals", "approve", "1", "--by", "carol"): "error: status: cannot approve a draft proposal: submit it first",
        ("proposals", "apply", "1"): "error: status: proposal 1 is draft, not approved",
        ("proposals", "show", "99"): "error: proposal: no proposal with id 99",
        ("policies", "add", "P10", "--name", "Ten", "--kind", "percentage", "--value", "10", "--from", "2024-02-30",
         "--by", "alice"): "error: --from: '2024-02-30' is not a date (YYYY-MM-DD)",
        ("policies", "add", "P10", "--name", "Ten", "--kind", "amount", "--value", "10", "--from", "2024-01-01",
         "--by", "alice"): "error: currency: an amount policy needs the currency of its amount",
        ("clients", "licences", "nobody"): "error: client: no client 'nobody' (see: report-pipelines clients list)",
        ("trials", "start", "gamma", "--name", "Gamma", "--timezone", "UTC", "--days", "100"):
            "error: days: must be a whole number of days from 1 to 90, not 100",
        ("trials", "start", "gamma", "--name", "Gamma", "--timezone", "", "--days", "10"):
            "error: --timezone: must not be empty (leave the option out for its default)",
        ("proposals", "show", "first"): "error: proposal_id: 'first' is not a valid integer.",
        ("demo", "seed", "--days", "a week"): "error: --days: 'a week' is not a valid integer.",
        ("proposals", "frobnicate"): "error: usage: No such command 'frobnicate'. (see report-pipelines proposals --help)",
    }
    with ThreadPoolExecutor(PARALLEL) as pool:
        results = list(pool.map(lambda args: run(*args), cases))
    for (args, expected), result in zip(cases.items(), results, strict=True):
        assert (result.returncode, result.stderr.strip(), result.stdout) == (2, expected, ""), args
        assert "Traceback" not in result.stderr
    listed = ok(run("proposals", "list"))
    assert len(listed.splitlines()) == 1  # nothing was written by the refused commands
