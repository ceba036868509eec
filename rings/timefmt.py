"""Event time: parsing the two accepted forms of `ts`, and formatting it back.

Internally event time is integer milliseconds since the epoch (cheap to compare, to hash and
to store). The offset of the original timestamp is kept beside it so that alerts can show
time in the zone the site reported it in, as the contract's examples do.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timedelta, timezone

from .errors import InvalidRecord

_TZ_CACHE: dict[int, timezone] = {}
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MS = timedelta(milliseconds=1)
# The shape RFC 3339 allows (the same pattern as sighting.schema.json). fromisoformat alone
# also takes ISO 8601 forms RFC 3339 refuses (basic format, comma fractions, "+0800", "+08").
_RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-](?:[01]\d|2[0-3]):[0-5]\d)",
    re.ASCII)       # offsets as RFC 3339's time-numoffset: hours 00-23, minutes 00-59


def _tz(offset_min: int) -> timezone:
    tz = _TZ_CACHE.get(offset_min)
    if tz is None:
        tz = timezone.utc if offset_min == 0 else timezone(timedelta(minutes=offset_min))
        _TZ_CACHE[offset_min] = tz
    return tz


# Event time must be writable back as RFC 3339 (alerts carry it): years 0001 to 9999, UTC.
MIN_MS = -62135596800000            # 0001-01-01T00:00:00Z
MAX_MS = 253402300799999            # 9999-12-31T23:59:59.999Z


# Seconds already parsed, for the usual shape `YYYY-MM-DDTHH:MM:SS.mmm` and an offset: the
# text without its milliseconds -> (epoch ms of that second, offset). Sightings arrive
# roughly in time order, so most share their second with one parsed just before, and a
# lookup is a fifth of a full parse (the regex, fromisoformat and timedelta arithmetic were
# 14% of the ingest's time, measured).
_SECONDS: dict[str, tuple[int, int]] = {}
_SECONDS_MAX = 4096


def parse_ts(value: object) -> tuple[int, int]:
    """Return (epoch milliseconds, UTC offset in minutes) or raise InvalidRecord."""
    if type(value) is str and len(value) in (24, 29) and value[19] == ".":
        frac = value[20:23]
        if frac.isascii() and frac.isdigit():
            hit = _SECONDS.get(value[:19] + value[23:])
            if hit is not None:
                return hit[0] + int(frac), hit[1]
            ms, off = _parse_ts(value)
            if len(_SECONDS) >= _SECONDS_MAX:
                _SECONDS.clear()
            _SECONDS[value[:19] + value[23:]] = (ms - int(frac), off)
            return ms, off
    return _parse_ts(value)


def _parse_ts(value: object) -> tuple[int, int]:
    if type(value) is int:
        if not MIN_MS <= value <= MAX_MS:
            raise InvalidRecord("bad-ts", "ts is outside the years 0001 to 9999")
        return value, 0
    if type(value) is not str:
        raise InvalidRecord("bad-ts", "ts must be an RFC 3339 string or integer milliseconds")
    s = value
    # RFC 3339 requires a full date, a time and an offset; fromisoformat alone accepts dates.
    if _RFC3339.fullmatch(s) is None:
        raise InvalidRecord("bad-ts", "ts is not RFC 3339")
    if s[-1] in "zZ":
        s = s[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        raise InvalidRecord("bad-ts", "ts is not RFC 3339") from None
    off = dt.utcoffset()
    if off is None:
        raise InvalidRecord("bad-ts", "ts has no UTC offset")
    # Integer arithmetic on timedeltas: timestamp() goes through a float and can drift by 1 ms.
    ms = (dt - _EPOCH) // _MS
    if not MIN_MS <= ms <= MAX_MS:
        raise InvalidRecord("bad-ts", "ts is outside the years 0001 to 9999")
    return ms, int(off.total_seconds() // 60)


def format_ts(ms: int, offset_min: int = 0) -> str:
    """RFC 3339 with milliseconds and the given offset."""
    # Integer arithmetic again: ms / 1000 through a float loses the last millisecond.
    dt = (_EPOCH + ms * _MS).astimezone(_tz(offset_min))
    return dt.isoformat(timespec="milliseconds")


def parse_duration(value: object) -> int:
    """Durations in rules: `90s`, `15m`, `2h`, `1d`, or a bare number of seconds. Returns ms."""
    if isinstance(value, bool):
        raise ValueError("a duration must be like 90s, 15m, 2h or 1d")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise ValueError("a duration must be a finite number")
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return int(value * 1000)
    if not isinstance(value, str) or not value:
        raise ValueError("a duration must be like 90s, 15m, 2h or 1d")
    units = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
    for suffix in ("ms", "s", "m", "h", "d"):
        if value.endswith(suffix):
            num = value[: -len(suffix)]
            try:
                n = float(num)
            except ValueError:
                break
            if not math.isfinite(n):
                break
            if n < 0:
                raise ValueError("a duration cannot be negative")
            return int(n * units[suffix])
    raise ValueError(f"bad duration {value!r}: use a number with s, m, h or d, like 15m")


def format_duration(ms: int) -> str:
    for suffix, unit in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms and ms % unit == 0:
            return f"{ms // unit}{suffix}"
    return f"{ms}ms"
