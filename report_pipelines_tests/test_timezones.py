"""Time zones: canonical IANA names only, from the tzdata package, on every machine alike."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from importlib import resources

import pytest

from report_pipelines.domain.clients import ClientSpec
from report_pipelines.domain.errors import InvalidInput
from report_pipelines.domain.timezones import TZDATA_VERSION, canonical_zones, parse_zone


@pytest.mark.parametrize(("name", "meant"), [
    ("EST", "America/New_York"), ("EST5EDT", "America/New_York"), ("MST", "America/Denver"),
    ("MST7MDT", "America/Denver"), ("PST8PDT", "America/Los_Angeles"), ("HST", "Pacific/Honolulu"),
    ("CET", "Europe/Paris"), ("cet", "Europe/Paris"), ("WET", "Europe/Lisbon"),
])
def test_abbreviations_are_refused_with_the_zone_people_mean(name: str, meant: str) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_zone(name)
    assert err.value.field == "timezone" and "is an abbreviation, not a time zone" in err.value.message
    assert err.value.message.endswith(f"did you mean {meant!r}?")


@pytest.mark.parametrize(("alias", "canonical"), [
    ("US/Eastern", "America/New_York"), ("Asia/Calcutta", "Asia/Kolkata"), ("Europe/Kiev", "Europe/Kyiv"),
    ("Japan", "Asia/Tokyo"), ("Brazil/East", "America/Sao_Paulo"), ("GMT", "Etc/GMT"),
])
def test_aliases_are_refused_naming_their_canonical_zone(alias: str, canonical: str) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_zone(alias, "--timezone")
    assert err.value.field == "--timezone"
    assert err.value.message == f"{alias!r} is an old alias of {canonical!r}; did you mean {canonical!r}?"


def test_why_est_is_refused_a_new_york_client_on_it_is_an_hour_off_all_summer() -> None:
    july = dt.datetime(2024, 7, 1, 12, tzinfo=dt.UTC)
    assert july.astimezone(zoneinfo.ZoneInfo("EST")).utcoffset() == dt.timedelta(hours=-5)
    assert july.astimezone(parse_zone("America/New_York")).utcoffset() == dt.timedelta(hours=-4)


def test_canonical_names_are_accepted_and_keep_their_key() -> None:
    for name in ("America/Sao_Paulo", "Australia/Lord_Howe", "Etc/GMT-14", "UTC", " Europe/Lisbon "):
        assert parse_zone(name).key == name.strip()
    assert ClientSpec.parse("acme", "Acme", "Asia/Kolkata").timezone == "Asia/Kolkata"
    with pytest.raises(InvalidInput):
        ClientSpec.parse("acme", "Acme", "US/Pacific")


def test_unknown_names_are_echoed_cut_to_a_sane_length() -> None:
    with pytest.raises(InvalidInput) as err:
        parse_zone("Mars/Olympus_Mons" * 40)
    assert len(err.value.message) < 200 and "..." in err.value.message
    with pytest.raises(InvalidInput) as err:
        parse_zone("America/Sao_Paolo")
    assert err.value.message.endswith("did you mean 'America/Sao_Paulo'?")
    for hostile in ("../../etc/passwd", "/usr/share/zoneinfo/UTC", "EST+5", "", "   "):
        with pytest.raises(InvalidInput):
            parse_zone(hostile)


def test_zones_come_from_the_tzdata_package_not_the_host() -> None:
    assert zoneinfo.TZPATH == ()  # the host's /usr/share/zoneinfo is never searched
    packaged = resources.files("tzdata").joinpath("zoneinfo", "Europe", "Lisbon").read_bytes()
    assert zoneinfo.ZoneInfo.from_file(__import__("io").BytesIO(packaged)).utcoffset(
        dt.datetime(2024, 7, 1)) == parse_zone("Europe/Lisbon").utcoffset(dt.datetime(2024, 7, 1))
    assert TZDATA_VERSION[:2] == "20" and len(canonical_zones()) > 300
