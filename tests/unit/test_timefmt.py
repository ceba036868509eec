"""Event time: parse_ts accepts exactly RFC 3339 with an offset or integer ms, exactly to the ms."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rings.errors import InvalidRecord
from rings.timefmt import MAX_MS, MIN_MS, format_duration, format_ts, parse_duration, parse_ts

BASE = 1795912200000            # 2026-11-29T08:30:00+08:00 == 2026-11-29T00:30:00Z


@pytest.mark.parametrize("text,ms,offset", [
    ("2026-11-29T08:30:00+08:00", BASE, 480),
    ("2026-11-29T00:30:00Z", BASE, 0),
    ("2026-11-29t00:30:00z", BASE, 0),
    ("2026-11-29 08:30:00+08:00", BASE, 480),
    ("2026-11-29T00:30:00+00:00", BASE, 0),
    ("2026-11-29T00:30:00-00:00", BASE, 0),
    ("2026-11-28T19:00:00-05:30", BASE, -330),
    ("2026-11-29T08:30:00.250+08:00", BASE + 250, 480),
    ("2026-11-29T08:30:00.5+08:00", BASE + 500, 480),
    ("2026-11-29T08:30:00.25+08:00", BASE + 250, 480),
    ("2026-11-29T08:30:00.999999+08:00", BASE + 999, 480),
    ("2026-11-29T08:30:00.123456789+08:00", BASE + 123, 480),
    ("2024-02-29T00:00:00Z", 1709164800000, 0),
    ("1969-12-31T23:59:59.999Z", -1, 0),
])
def test_parse_rfc3339(text, ms, offset):
    assert parse_ts(text) == (ms, offset)


@pytest.mark.parametrize("value", [0, 1, -1, BASE, 2**41 + 1])
def test_parse_integer_ms(value):
    assert parse_ts(value) == (value, 0)


def test_integer_ms_must_be_writable_as_rfc3339():
    # An alert repeats its sighting's ts in RFC 3339; a ts beyond year 9999 used to be
    # accepted here and then crash the alert's serialisation (and with it `rings replay`).
    for ms in (MIN_MS, MAX_MS):
        assert parse_ts(ms) == (ms, 0)
        assert parse_ts(format_ts(ms, 0)) == (ms, 0)
    for ms in (MIN_MS - 1, MAX_MS + 1, 10**15, -(10**15), 2**63):
        with pytest.raises(InvalidRecord) as ei:
            parse_ts(ms)
        assert ei.value.reason == "bad-ts"


def test_every_millisecond_is_exact():
    # Through a float timestamp, some of these would come out one millisecond early.
    for ms in range(1000):
        assert parse_ts(f"2026-11-29T08:30:00.{ms:03d}+08:00") == (BASE + ms, 480)
        assert parse_ts(f"2026-11-29T00:30:00.{ms:03d}Z")[0] == BASE + ms


@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30),
                    timezones=st.just(timezone.utc)),
       st.integers(-14 * 4, 14 * 4).map(lambda q: q * 15))
def test_parse_matches_datetime_arithmetic(dt, offset):
    dt = dt.replace(microsecond=dt.microsecond // 1000 * 1000)
    local = dt.astimezone(timezone(timedelta(minutes=offset)))
    expected = (dt - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(milliseconds=1)
    assert parse_ts(local.isoformat(timespec="milliseconds")) == (expected, offset)


@pytest.mark.parametrize("value", [
    "2026-11-29",                              # date only
    "2026-11-29T08:30:00",                     # naive
    "2026-11-29T08:30:00.250",                 # naive with fraction
    "2026-11-29T08:30",                        # no seconds
    "2026-11-29T08:30Z",
    "2026-11-29T08:30:00+08",                  # offset without minutes
    "2026-11-29T08:30:00+0800",                # offset without colon
    "2026-11-29T08:30:00+08:00:00",            # offset with seconds
    "2026-11-29T08:30:00,250+08:00",           # comma fraction (ISO 8601, not RFC 3339)
    "2026-11-29T083000+08:00",                 # ISO 8601 basic time
    "2026-11-29T083000.000+08:00",
    "20261129T083000Z",
    "2026-11-29T08:30:00.+08:00",              # a dot without digits
    "2026-W48-7T08:30:00Z",
    "2026-02-29T08:30:00Z",                    # not a leap year
    "2026-11-31T08:30:00Z",
    "2026-13-01T08:30:00Z",
    "2026-11-29T24:00:00Z",
    "2026-11-29T08:60:00Z",
    "2026-11-29T08:30:00+24:00",
    "2026-11-29T08:30:00+08:60",               # offset minutes beyond 59 (hypothesis found)
    " 2026-11-29T08:30:00Z",
    "2026-11-29T08:30:00Z ",
    "2026-11-29T08:30:00Z\n",
    "", "garbage", "now", "1764376200000", "2026-11-29T08:30:00 +08:00",
    True, False, 1.5, 1764376200000.0, float("nan"), None, [], {}, b"2026-11-29T08:30:00Z",
])
def test_parse_rejects(value):
    with pytest.raises(InvalidRecord) as ei:
        parse_ts(value)
    assert ei.value.reason == "bad-ts"


@given(st.integers(min_value=-62135596800000 + 86_400_000, max_value=253402300799999 - 86_400_000),
       st.integers(-14 * 4, 14 * 4).map(lambda q: q * 15))
def test_format_round_trip(ms, offset):
    text = format_ts(ms, offset)
    assert parse_ts(text) == (ms, offset)


@pytest.mark.parametrize("ms", [BASE + 999, BASE + 1, 1764376200999, -1, 0, 4102444799999])
def test_format_is_exact(ms):
    text = format_ts(ms, 480)
    assert text.endswith(f".{ms % 1000:03d}+08:00")
    assert parse_ts(text) == (ms, 480)


def test_format_shape():
    assert format_ts(BASE + 250, 480) == "2026-11-29T08:30:00.250+08:00"
    assert format_ts(BASE, 0) == "2026-11-29T00:30:00.000+00:00"
    assert format_ts(BASE, -330) == "2026-11-28T19:00:00.000-05:30"


@pytest.mark.parametrize("value,ms", [
    ("90s", 90_000), ("15m", 900_000), ("2h", 7_200_000), ("1d", 86_400_000),
    ("250ms", 250), ("1.5h", 5_400_000), ("0s", 0), (30, 30_000), (1.5, 1500), (0, 0),
])
def test_parse_duration(value, ms):
    assert parse_duration(value) == ms


@pytest.mark.parametrize("value", [
    True, False, -1, -0.5, "-5m", "", "15", "abc", "15x", "m", None, [], "1e999s", "infm",
    "nanh", float("inf"), float("nan"),
])
def test_parse_duration_rejects(value):
    with pytest.raises(ValueError):
        parse_duration(value)


@given(st.integers(0, 10**12))
def test_duration_round_trip(ms):
    assert parse_duration(format_duration(ms)) == ms


@given(st.integers(MIN_MS + 86_400_000, MAX_MS - 86_400_000),
       st.sampled_from([0, 480, -330, 840, -720]),
       st.sampled_from(["Z", "z", "+00:00", "+08:00", "-05:30"]),
       st.text(alphabet="0123456789a.+:Z٣２", min_size=0, max_size=9))
def test_the_seconds_cache_answers_as_a_full_parse(ms, offset, zone, tail):
    """parse_ts keeps the seconds it parsed (the usual shape: milliseconds and an offset):
    a string that hits the cache gets exactly the full parse's answer, or its error, also
    when only its fraction or its end differ from one parsed before."""
    from rings.timefmt import _parse_ts
    first = format_ts(ms, offset)                     # the usual shape, fills the cache
    assert parse_ts(first) == _parse_ts(first)
    prefix = first[:19]
    for text in (f"{prefix}.{tail}{zone}", f"{prefix}{tail}{zone}", f"{prefix}.{tail}",
                 first[:20] + tail[:3] + first[23:]):
        try:
            want = _parse_ts(text)
        except InvalidRecord as e:
            with pytest.raises(InvalidRecord) as got:
                parse_ts(text)
            assert got.value.reason == e.reason
        else:
            assert parse_ts(text) == want
