"""Lenient RFC 5322 date-time parsing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from postbote.mail.dates import parse_date


def tz(hours: float) -> timezone:
    return timezone(timedelta(hours=hours))


def test_rfc5322_date_with_numeric_zone():
    assert parse_date("Mon, 1 Jan 2024 10:00:00 +0100") == datetime(
        2024, 1, 1, 10, 0, 0, tzinfo=tz(1)
    )
    assert parse_date("Mon, 1 Jan 2024 10:00:00 +0100").utcoffset() == timedelta(hours=1)


def test_zone_comment_is_ignored():
    assert parse_date("Tue, 2 Jul 2002 09:01:02 -0700 (PDT)").utcoffset() == timedelta(hours=-7)


def test_obsolete_zone_names():
    assert parse_date("21 Aug 2002 20:31:57 EDT").utcoffset() == timedelta(hours=-4)
    assert parse_date("21 Aug 2002 20:31:57 GMT").utcoffset() == timedelta(0)


def test_unknown_zone_is_utc():
    assert parse_date("21 Aug 2002 20:31:57 XYZT").utcoffset() == timedelta(0)


def test_two_digit_and_three_digit_years():
    assert parse_date("1 Jan 02 00:00 +0000").year == 2002
    assert parse_date("1 Jan 99 00:00 +0000").year == 1999
    assert parse_date("1 Jan 102 00:00 +0000").year == 2002


def test_missing_seconds_and_weekday():
    assert parse_date("3 Mar 2003 04:05 +0000") == datetime(2003, 3, 3, 4, 5, tzinfo=UTC)


def test_asctime_order():
    assert parse_date("Thu Aug 22 13:17:22 2002") == datetime(2002, 8, 22, 13, 17, 22, tzinfo=UTC)


def test_leap_second_is_clamped():
    assert parse_date("31 Dec 2016 23:59:60 +0000").second == 59


def test_odd_but_valid_offset():
    assert parse_date("Wed, 21 Aug 2002 20:31:57 -1600").utcoffset() == timedelta(hours=-16)


def test_nonsense_is_none():
    for value in [
        None,
        "",
        "garbage",
        "31 Feb 2002 10:00 +0000",
        "1 Jan 2002 25:00 +0000",
        "Jan 2002",
    ]:
        assert parse_date(value) is None, value


def test_very_long_input_is_bounded():
    assert parse_date("1 " * 1_000_000) is None


def test_numeric_year_first_dates():
    assert parse_date("2002/09/14 Sat 02:29:32 CDT") == datetime(
        2002, 9, 14, 2, 29, 32, tzinfo=tz(-5)
    )
    assert parse_date("2024-01-31T10:00:00+01:30") == datetime(2024, 1, 31, 10, 0, tzinfo=tz(1.5))
