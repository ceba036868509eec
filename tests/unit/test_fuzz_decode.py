"""Bad input (issue 8): whatever bytes arrive, the answer is a valid record or a refusal
with a reason, never another exception.

For the sighting decoder (`decode_sighting`), the ingest's batch decoder
(`decode_sightings`), `rings replay` (`replay_lines`) and the watchlist entry decoder
(`decode_watch_entry`), hypothesis draws arbitrary bytes, arbitrary JSON values, good
records with one field replaced by anything, deep nesting, NaN, infinity and numbers beyond
a double, huge strings, oversized payloads, unknown sites and timestamps at and beyond the
event-time bounds (`engine.max_skew`, `engine.max_age` around a reference `now`). The
property each time: either a record that validates against its JSON Schema and travels
(its envelope row encodes and decodes back to it), or InvalidRecord with a reason from the
dead-letter schema's enum, whose dead letter validates; nothing else escapes. Replay never
raises, reports every bad line, and bad lines change no alert.

What the worker sends on must fit too (tests/integration/test_worker_watchlist.py runs the
same cases on the broker): a dead letter of any record stays far below Kafka's message limit,
and envelopes of large sightings go out in parts that change nothing for the stages.
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from rings.decode import (KEEP_BYTES, MAX_DEPTH, Limits, Rejected, decode_sighting,
                          decode_sightings, decode_watch_entry, limits_for)
from rings.errors import InvalidRecord
from rings.models import Sighting, Subject, WatchEntry
from rings.net import load_net
from rings.pipeline import Pipeline
from rings.replay import ReplayStats, replay_lines
from rings.ruleset import load_rules
from rings.timefmt import MAX_MS, MIN_MS, format_ts
from rings.watchlist import Watchlist
from streams.envelope import MAX_BYTES, Envelope

from .support import (DAY, HOUR, MIN, NET_PATH, RULES_DIR, T0, brief, check_alerts, entry,
                      rules_from_text, validator)

NET = load_net(str(NET_PATH))
SITES = NET.sites
RULES = load_rules(str(RULES_DIR))
SIGHTING_SCHEMA = validator("sighting.schema.json")
DLQ_SCHEMA = validator("dead-letter.schema.json")
WATCH_SCHEMA = validator("watchlist-entry.schema.json")
REASONS = frozenset(DLQ_SCHEMA.schema["properties"]["reason"]["enum"])
ORJSON_DEPTH = 1024         # levels orjson.loads parses (documented); deeper is bad-json

# Enough examples to find what the decoder misses, few enough that the whole file runs in
# seconds (the unit suite has a budget of about two minutes).
FUZZ = settings(max_examples=500, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.large_base_example])
SOME = settings(FUZZ, max_examples=150)

GOOD: dict[str, Any] = {
    "id": "s-1", "ts": "2026-11-29T08:30:00.250+08:00", "site": "BA07", "dir": "in",
    "subject": {"type": "vehicle", "id": "蒙K3X521"},
    "with": [{"type": "person", "id": "p-9f2c41"}],
    "attrs": {"plate_color": "blue", "confidence": 0.97},
}
FIELDS = ("id", "ts", "site", "dir", "subject", "with", "attrs")


def enc(obj: Any, ascii_: bool = False) -> bytes:
    # json, not orjson: it writes NaN, Infinity and integers of any size when told to.
    return json.dumps(obj, ensure_ascii=ascii_).encode("utf-8")


def changed(base: dict[str, Any] = GOOD, **kw: Any) -> dict[str, Any]:
    return {**json.loads(json.dumps(base)), **kw}


def head(*without: str) -> bytes:
    """GOOD without these fields, as JSON without its closing brace (to append to)."""
    return enc({k: v for k, v in GOOD.items() if k not in without})[:-1]


# ------------------------------------------------------------------------- the property


def check_refusal(raw: bytes, e: InvalidRecord) -> None:
    assert e.reason in REASONS, f"reason {e.reason!r} is not in dead-letter.schema.json"
    assert type(e.detail) is str and 0 < len(e.detail) <= 300, e.detail
    d = Rejected(raw, e.reason, e.detail, b"key", ("sightings", 3, 42)).to_json()
    assert DLQ_SCHEMA.is_valid(d), list(DLQ_SCHEMA.iter_errors(d))
    orjson.dumps(d)                     # what the ingest writes to sightings-dlq


def check_sighting(s: Sighting) -> None:
    d = s.to_json()
    assert SIGHTING_SCHEMA.is_valid(d), (d, [e.message for e in SIGHTING_SCHEMA.iter_errors(d)])
    assert s.site in SITES and MIN_MS <= s.ts <= MAX_MS
    # It travels: the ingest's envelope of it encodes, and decodes back to the same sighting
    # (attrs nested too deep for orjson's writer once passed here and stalled the ingest).
    env = Envelope.decode(Envelope({0: s.ts}, [s.to_row()], [0]).encode())
    assert Sighting.from_row(env.rows[0]) == s


def judge(raw: bytes, limits: Limits = Limits(), now: int | None = None
          ) -> Sighting | InvalidRecord:
    """decode_sighting's answer, checked. Any exception but InvalidRecord fails the test."""
    try:
        s = decode_sighting(raw, SITES, limits, now)
    except InvalidRecord as e:
        check_refusal(raw, e)
        return e
    check_sighting(s)
    return s


def reason(x: Sighting | InvalidRecord) -> str | None:
    return x.reason if isinstance(x, InvalidRecord) else None


def has_nonfinite(v: Any) -> bool:
    """Whether json.dumps writes a NaN or Infinity literal (or an integer orjson reads as
    an infinite double) somewhere in `v`."""
    if isinstance(v, float):
        return not math.isfinite(v)
    if isinstance(v, int) and not isinstance(v, bool):
        return not math.isfinite(float(v)) if abs(v) < 10**400 else True
    if isinstance(v, list):
        return any(has_nonfinite(x) for x in v)
    if isinstance(v, dict):
        return any(has_nonfinite(x) for x in v.values())
    return False


def depth(v: Any) -> int:
    """Levels of objects and arrays (a scalar: 0)."""
    if isinstance(v, dict):
        return 1 + max((depth(x) for x in v.values()), default=0)
    if isinstance(v, list):
        return 1 + max((depth(x) for x in v), default=0)
    return 0


# ------------------------------------------------------------------------- strategies

SCALAR = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70),
    st.sampled_from([0, -1, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63) - 1, 10**30, 10**400,
                     T0, MIN_MS, MAX_MS, MAX_MS + 1]),
    st.floats(),                        # NaN and infinity too: json writes them as literals
    st.text(max_size=12),
    st.sampled_from(["in", "out", "vehicle", "CP01", "BA07", "2026-11-29T08:30:00Z", "",
                     "x" * 256, "x" * 257, "\u0000", "\ud7ff\ue000"]),
)
JSON = st.recursive(SCALAR, lambda c: st.lists(c, max_size=4)
                    | st.dictionaries(st.text(max_size=6), c, max_size=4), max_leaves=16)
NEAR_JSON = st.text(alphabet='{}[]":,0123456789.eE+- tfnulraseNIiy\\', max_size=60).map(
    str.encode)


@st.composite
def mangled(draw: Any) -> bytes:
    """A good sighting with bytes cut, flipped or inserted."""
    raw = bytearray(enc(GOOD))
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(raw) - 1))
        op = draw(st.sampled_from(["cut", "flip", "insert"]))
        if op == "cut":
            del raw[i:i + draw(st.integers(1, 8))]
        elif op == "flip":
            raw[i] = draw(st.integers(0, 255))
        else:
            raw[i:i] = draw(st.binary(min_size=1, max_size=6))
    return bytes(raw)


@st.composite
def one_field(draw: Any) -> bytes:
    """A good sighting with one field (or a subject's) replaced by any JSON value."""
    obj = changed()
    where = draw(st.sampled_from(FIELDS + ("subject.type", "subject.id", "with[0]",
                                           "with[0].id", "attrs.x", "extra")))
    value = draw(JSON)
    if "." in where:
        a, b = where.split(".")
        (obj[a[:-3]][0] if a.endswith("[0]") else obj[a])[b] = value
    elif where.endswith("[0]"):
        obj[where[:-3]][0] = value
    else:
        obj[where] = value
    return enc(obj, draw(st.booleans()))


ANY_RAW = st.one_of(st.binary(max_size=200), NEAR_JSON, mangled(), one_field(),
                    JSON.map(enc), st.just(enc(GOOD)),
                    st.sampled_from([b"", b" ", b"null", b"[" * 2000, b"{" * 5, b"\xff",
                                     b"\xef\xbb\xbf" + enc(GOOD), enc(GOOD) + b"\x00"]))


# ------------------------------------------------------------------------- sightings


@FUZZ
@given(st.binary(max_size=400))
@example(b"")
@example(b"\x00")
@example(b"\xef\xbb\xbf{}")          # a UTF-8 byte order mark
def test_any_bytes(raw):
    judge(raw)


@FUZZ
@given(st.one_of(NEAR_JSON, mangled()))
def test_almost_json(raw):
    judge(raw)


@FUZZ
@given(JSON, st.booleans())
def test_any_json_value(value, ascii_):
    raw = enc(value, ascii_)
    got = judge(raw)
    if has_nonfinite(value):
        assert reason(got) == "bad-json", "NaN, Infinity and 1e400 are not JSON"
    elif not isinstance(value, dict):
        assert reason(got) == "not-an-object"


def expected(field: str, v: Any) -> set[str | None]:
    """What replacing one top-level field of GOOD by `v` may give (None: accepted)."""
    if has_nonfinite(v):
        return {"bad-json"}
    if field == "id":
        if v is None:
            return {"missing-field"}
        return {None} if type(v) is str and 1 <= len(v) <= 256 else {"bad-field"}
    if field == "ts":
        if type(v) is int:
            return {None} if MIN_MS <= v <= MAX_MS else {"bad-ts"}
        return {None, "bad-ts"} if type(v) is str else {"bad-ts"}
    if field == "site":
        if v is None:
            return {"missing-field"}
        if type(v) is str:
            return {None} if v in SITES else {"unknown-site"}
        return {"bad-field"}
    if field == "dir":
        return {None} if v in (None, "in", "out") else {"bad-field"}
    if field == "subject":
        if v is None:
            return {"missing-field"}
        return {None, "bad-field"} if type(v) is dict else {"bad-field"}
    if field == "with":
        if v is None:
            return {None}
        return {None, "bad-field"} if type(v) is list else {"bad-field"}
    assert field == "attrs"
    if v is None:
        return {None}
    if type(v) is dict:
        return {None} if depth(v) <= MAX_DEPTH else {"too-deep"}
    return {"bad-field"}


@FUZZ
@given(st.sampled_from(FIELDS), JSON)
@example("ts", 1.5)
@example("ts", True)
@example("ts", 2**64)
@example("id", ["s-1"])
@example("site", {"id": "CP01"})
@example("subject", "vehicle:蒙K3X521")
@example("with", {"type": "person", "id": "p"})
@example("attrs", [1])
def test_each_field_of_any_type(field, value):
    got = judge(enc(changed(**{field: value})))
    assert reason(got) in expected(field, value), (field, value, got)


@FUZZ
@given(one_field())
def test_one_nested_field_of_any_type(raw):
    judge(raw)


def nest(levels: int, kind: str) -> bytes:
    """A JSON value of `levels` levels of arrays or objects (0: a number)."""
    if kind == "[":
        return b"[" * levels + b"]" * levels if levels else b"1"
    return b'{"a":' * levels + b"1" + b"}" * levels


DEPTHS = st.one_of(st.integers(0, 1100), st.sampled_from(
    [MAX_DEPTH - 2, MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1, 252, 253, 254, 255, 256, 1019,
     1020, 1021, 1022, 1023, 1024, 1025, 5000]))


@FUZZ
@given(DEPTHS, st.sampled_from("[{"),
       st.sampled_from(["attrs", "extra", "subject.extra", "with.extra", "document"]))
def test_deep_nesting(levels, kind, where):
    """Nesting is refused where it would travel (`attrs`: too-deep beyond MAX_DEPTH levels)
    and beyond what the parser takes (bad-json); elsewhere it is dropped with the field."""
    v = nest(levels, kind)
    if where == "attrs":                       # attrs = {"x": v}: levels + 1 levels
        raw = head("attrs") + b', "attrs": {"x": ' + v + b"}}"
        doc, travels = levels + 2, levels + 1
    elif where == "extra":
        raw, doc, travels = head() + b', "extra": ' + v + b"}", levels + 1, 0
    elif where == "subject.extra":
        raw = head("subject") + b', "subject": {"type": "code", "id": "c", "x": ' + v + b"}}"
        doc, travels = levels + 2, 0
    elif where == "with.extra":
        raw = head("with") + b', "with": [{"type": "code", "id": "c", "x": ' + v + b"}]}"
        doc, travels = levels + 3, 0
    else:                                      # the whole record is nesting
        raw, doc, travels = v, levels, 0
    got = judge(raw)
    if doc > ORJSON_DEPTH:
        assert reason(got) == "bad-json"
    elif where == "document":
        assert reason(got) == ("missing-field" if kind == "{" and levels else "not-an-object")
    elif travels > MAX_DEPTH:
        assert reason(got) == "too-deep"
    else:
        assert reason(got) is None, got


NOT_NUMBERS = [b"NaN", b"-NaN", b"nan", b"Infinity", b"-Infinity", b"infinity", b"inf",
               b"1e400", b"-1e400", b"1E999", b"2e308", b"1" + b"0" * 400, b"0x10", b"+1",
               b"01", b".5", b"1.", b"--1", b"1e", b"Inf"]


@pytest.mark.parametrize("token", NOT_NUMBERS, ids=[t.decode()[:12] for t in NOT_NUMBERS])
@pytest.mark.parametrize("where", ["ts", "attrs", "with", "id", "dir", "extra", "top"])
def test_nan_infinity_and_overflow_are_bad_json(token, where):
    if where == "top":
        raw = token
    else:
        marker = "\u2603MARK\u2603"
        obj = changed(**{where: marker if where != "attrs" else {"x": [marker]}})
        raw = enc(obj).replace(enc(marker), token)
    assert reason(judge(raw)) == "bad-json"


@pytest.mark.parametrize("token,attrs_value", [
    (b"1e-400", 0.0), (b"-0.0", 0.0), (b"1e308", 1e308), (b"18446744073709551615", 2**64 - 1),
    (b"18446744073709551616", float(2**64)), (b"-9223372036854775809", -float(2**63)),
    (b"1" + b"0" * 300, 1e300),
])
def test_numbers_a_double_holds_are_fine_in_attrs_but_not_as_ts(token, attrs_value):
    raw = enc(changed(attrs={"x": "\u2603"})).replace(b'"\xe2\x98\x83"', token)
    s = judge(raw)
    assert isinstance(s, Sighting) and s.attrs == {"x": attrs_value}
    as_ts = enc(changed(ts="\u2603")).replace(b'"\xe2\x98\x83"', token)
    assert reason(judge(as_ts)) == "bad-ts"


@SOME
@given(st.sampled_from(["id", "ts", "site", "dir", "subject.id", "with.id", "attrs", "key"]),
       st.one_of(st.integers(0, 70_000),
                 st.sampled_from([255, 256, 257, 21_000, 21_800, 65_300, 65_536])),
       st.sampled_from(["x", "蒙", "\u0000", '"', "\\", "\U0001f600", "\u2028"]))
def test_huge_strings(where, n, ch):
    text = ch * n
    obj = changed()
    if where == "subject.id":
        obj["subject"]["id"] = text
    elif where == "with.id":
        obj["with"][0]["id"] = text
    elif where == "attrs":
        obj["attrs"]["note"] = text
    elif where == "key":
        obj["attrs"][text] = 1
    else:
        obj[where] = text
    raw = enc(obj)
    got = judge(raw)
    if len(raw) > Limits().max_bytes:
        assert reason(got) == "too-large"
        return
    want = {"id": "bad-field" if not 1 <= n <= 256 else None,
            "subject.id": "bad-field" if not 1 <= n <= 256 else None,
            "with.id": "bad-field" if not 1 <= n <= 256 else None,
            "ts": "bad-ts", "site": "unknown-site", "dir": "bad-field",
            "attrs": None, "key": None}[where]
    assert reason(got) == want, (where, n, got)


@SOME
@given(st.integers(0, 3000), st.integers(0, 3000), st.binary(max_size=3))
def test_oversized(limit, pad, junk):
    """Bigger than the limit: too-large, whatever it holds (checked before parsing)."""
    raw = enc(changed(attrs={"pad": "x" * pad})) + junk
    got = judge(raw, Limits(max_bytes=limit))
    assert (reason(got) == "too-large") == (len(raw) > limit)


@SOME
@given(st.one_of(st.text(max_size=40), st.sampled_from(["cp01", "CP01 ", " CP01", "CP1",
                                                          "CP01\u0000", "ＣＰ01", "XX99"])))
def test_unknown_sites(site):
    got = judge(enc(changed(site=site)))
    assert reason(got) == (None if site in SITES else "unknown-site")


@SOME
@given(st.integers(0, 1_100_000), st.sampled_from([b"\x01", b"\xff", b'"', b"x", "蒙".encode(),
                                                 "\U0001f600".encode(), b"\\"]))
@example(KEEP_BYTES + 1, "蒙".encode())
@example(1_000_000, b"\x01")
def test_a_dead_letter_fits_in_a_kafka_message(n, unit):
    """However large the record and however its bytes escape, its dead letter stays well
    under the broker's default message limit (1 MiB): of a record over 64 KiB it keeps the
    first 64 KiB (whole characters, if it is text) and says how large it was."""
    raw = (unit * (n // len(unit) + 1))[:n]
    e = judge(raw)
    assert isinstance(e, InvalidRecord)
    d = Rejected(raw, e.reason, e.detail, b"k", ("sightings", 0, 1)).to_json()
    assert len(orjson.dumps(d)) < 512 * 1024
    kept = d["original"].encode() if "original" in d else base64.b64decode(d["original_b64"])
    if n > KEEP_BYTES:
        assert e.reason == "too-large" and d["original_size"] == n
        assert KEEP_BYTES - 3 <= len(kept) <= KEEP_BYTES and raw.startswith(kept)
        try:
            raw[:KEEP_BYTES + 3].decode("utf-8")
        except UnicodeDecodeError:
            pass
        else:
            assert "original" in d                 # text stays text
    else:
        assert kept == raw and "original_size" not in d


@SOME
@given(st.lists(st.tuples(st.integers(0, 70_000), st.integers(0, 2**40)), max_size=40),
       st.sampled_from([1, 1000, 64 * 1024, MAX_BYTES, 1 << 20]))
def test_envelopes_are_sent_in_parts_under_the_limit(sizes, limit):
    """A batch of large sightings of one partition goes out in envelopes the broker takes;
    the parts hold the rows in order, and only the last moves the watermark."""
    rows = [[f"s{i}", ts, 0, "CP01", None, "code", "c", None, {"pad": "x" * n}]
            for i, (n, ts) in enumerate(sizes)]
    kts = list(range(len(rows)))
    parts = [Envelope.decode(p) for p in Envelope({0: 5, 3: 7}, rows, kts).encode_parts(limit)]
    assert [r for p in parts for r in p.rows] == rows
    assert [k for p in parts for k in p.kts] == kts
    assert [p.src for p in parts] == [{}] * (len(parts) - 1) + [{0: 5, 3: 7}]
    for p in Envelope({0: 5}, rows, kts).encode_parts(limit):
        assert len(p) <= limit or len(Envelope.decode(p).rows) <= 1


# ------------------------------------------------------------------------- event-time bounds

BOUND = st.one_of(st.none(), st.integers(0, 3 * DAY), st.sampled_from([0, 1, MIN, DAY]))


@FUZZ
@given(now=st.integers(0, 4_102_444_800_000), skew=BOUND, age=BOUND,
       offset=st.one_of(st.integers(-400 * DAY, 400 * DAY),
                        st.sampled_from(["skew", "skew+1", "age", "age+1", 0, 1, -1])),
       tz=st.sampled_from([None, 0, 480, -300, 330, 23 * 60 + 59, -(23 * 60 + 59)]))
def test_timestamps_at_and_beyond_the_bounds(now, skew, age, offset, tz):
    if isinstance(offset, str):
        bound = {"skew": skew, "age": age}[offset.split("+")[0]]
        extra = 1 if offset.endswith("+1") else 0
        offset = 0 if bound is None else (bound + extra) * (1 if offset[0] == "s" else -1)
    ts = now + offset
    raw = enc(changed(ts=ts if tz is None else format_ts(ts, tz)))
    limits = Limits(max_skew_ms=skew, max_age_ms=age)
    got = judge(raw, limits, now)
    if skew is not None and ts - now > skew:
        want = "future-ts"
    elif age is not None and now - ts > age:
        want = "too-old"
    else:
        want = None
    assert reason(got) == want
    # Without a reference time (replay by default) neither bound applies.
    assert reason(judge(raw, limits, None)) is None
    # The ingest's batch decoder gives the same verdict.
    ok, bad = decode_sightings([enc(GOOD), raw], SITES, limits, now)
    assert [i for i, _ in ok if i == 1] == ([1] if want is None else [])
    assert [e.reason for i, e in bad if i == 1] == ([want] if want else [])


def test_bounds_from_the_rule_set():
    assert (RULES.max_skew_ms, RULES.max_age_ms) == (DAY, None)      # the shipped defaults
    rs = rules_from_text("engine:\n  max_skew: 5m\n  max_age: 30d\n"
                         "rules:\n  - id: watchlist-hit\n")
    lim = limits_for(rs, Limits(max_bytes=1000))
    assert lim == Limits(max_bytes=1000, max_skew_ms=5 * MIN, max_age_ms=30 * DAY)
    off = rules_from_text("engine:\n  max_skew: null\n  max_age: ~\n"
                          "rules:\n  - id: watchlist-hit\n")
    assert (off.max_skew_ms, off.max_age_ms) == (None, None)
    assert rules_from_text("engine:\n  max_skew: 0s\nrules: []\n").max_skew_ms == 0
    from rings.errors import SourceErrors
    for bad in ("-1m", "soon", "true"):
        with pytest.raises(SourceErrors, match="duration"):
            rules_from_text(f"engine:\n  max_skew: {bad}\nrules: []\n")


def test_refusal_details_say_how_far_off():
    lim = Limits(max_skew_ms=DAY, max_age_ms=30 * DAY)
    fut = judge(enc(changed(ts=T0 + 400 * DAY)), lim, T0)
    assert (fut.reason, fut.detail) == (
        "future-ts", "ts is 400.0 days ahead of the clock, more than max_skew (1.0 days)")
    old = judge(enc(changed(ts=T0 - 31 * DAY - 12 * HOUR)), lim, T0)
    assert (old.reason, old.detail) == (
        "too-old", "ts is 31.5 days behind the clock, more than max_age (30.0 days)")


# ------------------------------------------------------------------------- the batch decoder


@FUZZ
@given(st.lists(ANY_RAW, max_size=25), st.one_of(st.none(), st.just(T0 + HOUR)),
       st.sampled_from([Limits(), Limits(max_bytes=300), Limits(max_skew_ms=0, max_age_ms=HOUR)]))
def test_the_batch_decoder_is_the_single_decoder(raws, now, limits):
    ok, bad = decode_sightings(raws, SITES, limits, now)
    assert sorted([i for i, _ in ok] + [i for i, _ in bad]) == list(range(len(raws)))
    for i, s in ok:
        assert judge(raws[i], limits, now) == s
    for i, e in bad:
        single = judge(raws[i], limits, now)
        assert isinstance(single, InvalidRecord)
        assert (single.reason, single.detail) == (e.reason, e.detail)


# ------------------------------------------------------------------------- replay

WANTED = Subject("vehicle", "蒙K3X521")
WATCHLIST = Watchlist([entry(WANTED, "wanted", "critical")])
ROUTE = ["CP01", "BC01", "BK01", "BV01", "BK02", "CP03", "BA01", "CP05"]


@st.composite
def good_lines(draw: Any) -> list[bytes]:
    """Sightings of a wanted vehicle and others, in event-time order (none late, so that
    how lines fall into batches cannot matter)."""
    t = T0
    out = []
    for n in range(draw(st.integers(0, 12))):
        t += draw(st.sampled_from([0, 1000, 20 * MIN, 61 * MIN]))
        who = draw(st.sampled_from([WANTED, Subject("vehicle", "蒙A00001")]))
        out.append(orjson.dumps({
            "id": f"g{n}", "ts": format_ts(t, 480), "site": draw(st.sampled_from(ROUTE)),
            "dir": draw(st.sampled_from(["in", "out"])), "subject": who.to_json()}))
    return out


@SOME
@given(good_lines(), st.lists(st.one_of(ANY_RAW, st.sampled_from([b"", b"  \t", b"\r"])),
                              max_size=12),
       st.randoms(use_true_random=False), st.sampled_from([None, T0 + 2 * HOUR]),
       st.sampled_from([1, 3, 1000]))
def test_replay_never_raises_and_bad_lines_change_nothing(good, junk, rnd, now, batch):
    limits = limits_for(RULES)
    # Junk that happens to be a valid sighting is not junk: keep only what is refused,
    # and, with a clock, sightings of the wanted vehicle stamped beyond the bound.
    junk = [j for j in junk if not j.strip() or
            isinstance(judge(j.strip(), limits, now), InvalidRecord)]
    if now is not None:
        junk.append(orjson.dumps({**changed(ts=now + DAY + 1), "subject": WANTED.to_json()}))
        junk.append(orjson.dumps({**changed(ts=MAX_MS), "subject": WANTED.to_json()}))
    lines = [(g, True) for g in good]
    for j in junk:
        lines.insert(rnd.randint(0, len(lines)), (j, False))
    reported: list[tuple[int, str]] = []
    stats = ReplayStats()
    alerts = list(replay_lines([x for x, _ in lines], NET, RULES, WATCHLIST,
                               on_bad=lambda n, e: reported.append((n, e.reason)),
                               stats=stats, batch_size=batch, flush=True, now=now))
    check_alerts(alerts)
    bad_lines = [(n, j) for n, (j, good_) in enumerate(lines, 1) if not good_ and j.strip()]
    assert [n for n, _ in reported] == [n for n, _ in bad_lines]
    for (n, r), (_, j) in zip(reported, bad_lines):
        assert r == reason(judge(j.strip(), limits, now)) and r in REASONS
    assert stats.bad == len(bad_lines)
    assert stats.lines == len(good) + len(bad_lines)
    alone = list(replay_lines(good, NET, RULES, WATCHLIST, flush=True, now=now))
    assert sorted(brief(a) for a in alerts) == sorted(brief(a) for a in alone)


def test_replay_checks_the_bounds_only_against_a_given_now():
    """Without `now` (a recorded file has no clock) a far-future sighting is accepted, as
    the contract's replay always did; with one it is refused and cannot drag event time
    ahead (which made the sightings after it late, and fired a deadline early)."""
    far = orjson.dumps({**changed(ts=T0 + 30 * DAY, site="CP01"), "id": "far"})
    near = [orjson.dumps({**changed(ts=T0 + k * MIN, site="BA01"), "id": f"n{k}"})
            for k in range(3)]
    seen = orjson.dumps({**changed(ts=T0 + 5 * MIN, site="CP01"), "id": "seen"})
    lines = [near[0], far, near[1], near[2], seen]
    bad: list[str] = []
    got = list(replay_lines(lines, NET, RULES, WATCHLIST, batch_size=1, now=T0 + HOUR,
                            on_bad=lambda n, e: bad.append(e.reason)))
    assert bad == ["future-ts"]
    hits = {tuple(a.evidence) for a in got if a.rule == "watchlist-hit"}
    assert hits == {("n0",), ("n1",), ("n2",), ("seen",)}
    assert not [a for a in got if a.rule == "checkpoint-avoidance"]
    unbounded = list(replay_lines(lines, NET, RULES, WATCHLIST, batch_size=1,
                                  on_bad=lambda n, e: bad.append(e.reason)))
    assert bad == ["future-ts"]                # nothing refused without a clock
    assert ("far",) in {tuple(a.evidence) for a in unbounded}
    assert [a.evidence for a in unbounded if a.rule == "checkpoint-avoidance"] == [["n0"]]


@SOME
@given(good_lines(), st.integers(0, 12))
def test_rows_in_parts_give_the_alerts_of_one_envelope(lines, cut):
    """What a stage does with the parts (the rows of the first at the watermark it has,
    then the rest and the new watermark) is what it did with the whole envelope."""
    batch = [decode_sighting(x, SITES) for x in lines]
    wm = max((s.ts for s in batch), default=T0) - RULES.lateness_ms
    whole = Pipeline(NET, RULES, WATCHLIST).process(batch, None, wm)
    pipe = Pipeline(NET, RULES, WATCHLIST)
    parts = pipe.process(batch[:cut], None, None) + pipe.process(batch[cut:], None, wm)
    assert sorted(brief(a) for a in parts) == sorted(brief(a) for a in whole)


# ------------------------------------------------------------------------- watchlist entries

ENTRY = {"subject": {"type": "vehicle", "id": "蒙K3X521"}, "list": "wanted",
         "severity": "critical", "reason": "armed robbery suspect",
         "from": "2026-11-01T00:00:00+08:00", "until": "2026-12-31T00:00:00+08:00"}
PERMIT = {"subject": {"type": "vehicle", "id": "蒙K88888"}, "list": "permit", "severity": "high",
          "permit": {"route": ["CP03", "BC01", "BK01"], "from": "2026-11-29T06:00:00+08:00",
                     "until": "2026-11-29T18:00:00+08:00"}}
ENTRY_FIELDS = ("subject", "list", "severity", "reason", "from", "until", "permit",
                "permit.route", "permit.from", "permit.until", "subject.id", "extra")


def entry_json(e: WatchEntry) -> dict[str, Any]:
    d: dict[str, Any] = {"subject": e.subject.to_json(), "list": e.list, "severity": e.severity}
    if e.reason is not None:
        d["reason"] = e.reason
    for k, v in (("from", e.start), ("until", e.end)):
        if v is not None:
            d[k] = v
    if e.permit is not None:
        d["permit"] = {"route": list(e.permit.route)}
        for k, v in (("from", e.permit.start), ("until", e.permit.end)):
            if v is not None:
                d["permit"][k] = v
    return d


def judge_entry(raw: bytes) -> WatchEntry | InvalidRecord:
    try:
        e = decode_watch_entry(raw, SITES)
    except InvalidRecord as x:
        assert x.reason in REASONS and type(x.detail) is str and x.detail
        return x
    d = entry_json(e)
    assert WATCH_SCHEMA.is_valid(d), (d, [x.message for x in WATCH_SCHEMA.iter_errors(d)])
    assert all(r in SITES for r in (e.permit.route if e.permit else ()))
    return e


@st.composite
def entry_one_field(draw: Any) -> tuple[dict[str, Any], str, Any]:
    obj = json.loads(json.dumps(draw(st.sampled_from([ENTRY, PERMIT]))))
    where = draw(st.sampled_from(ENTRY_FIELDS))
    value = draw(st.one_of(JSON, st.sampled_from([None, [], {}, ["CP01"], ["XX99"], "permit",
                                                  "low", 0, MAX_MS, MAX_MS + 1]), st.text()))
    if "." in where:
        a, b = where.split(".")
        if type(obj.get(a)) is not dict:
            obj[a] = {}
        obj[a][b] = value
    else:
        obj[where] = value
    return obj, where, value


@FUZZ
@given(st.one_of(st.binary(max_size=300), NEAR_JSON, JSON.map(enc),
                 st.sampled_from([b"[" * 2000, b"", b"null", b"NaN", b"{" * 3000 + b"}" * 3000,
                                  enc(ENTRY).replace(b'"armed', b'NaN, "x": "armed'),
                                  b'{"subject": 1e400}'])))
def test_watch_entry_any_bytes(raw):
    judge_entry(raw)


@FUZZ
@given(entry_one_field(), st.booleans())
def test_watch_entry_each_field_of_any_type(case, ascii_):
    obj, where, value = case
    got = judge_entry(enc(obj, ascii_))
    if has_nonfinite(value):
        assert isinstance(got, InvalidRecord) and got.reason == "bad-json"


@SOME
@given(st.integers(0, 70_000), st.sampled_from(["reason", "list", "subject.id", "extra"]))
def test_watch_entry_huge_strings(n, where):
    obj = json.loads(json.dumps(ENTRY))
    if where == "subject.id":
        obj["subject"]["id"] = "x" * n
    else:
        obj[where] = "x" * n
    raw = enc(obj)
    got = judge_entry(raw)
    if len(raw) > Limits().max_bytes:
        assert isinstance(got, InvalidRecord) and got.reason == "too-large"


def integral_float(v: Any) -> bool:
    """JSON Schema counts 2.0 as an integer; the decoders, like the contract's "integer
    milliseconds", refuse every float (a deliberate difference, see test_decode)."""
    if isinstance(v, float):
        return v.is_integer()
    if isinstance(v, list):
        return any(integral_float(x) for x in v)
    if isinstance(v, dict):
        return any(integral_float(x) for x in v.values())
    return False


@FUZZ
@given(entry_one_field())
@example(({**ENTRY, "reason": None, "from": None}, "reason", None))
@example(({**PERMIT, "permit": None}, "permit", None))
@example(({**ENTRY, "until": MAX_MS + 1}, "until", MAX_MS + 1))
def test_watch_entry_decoder_agrees_with_schema(case):
    """watchlist-entry.schema.json accepts what the decoder accepts (null as absent, times
    within the years 0001 to 9999), beyond two checks a schema cannot make: the permit's
    route names sites of the net, and `until` comes after `from`."""
    obj, where, value = case
    if has_nonfinite(value) or integral_float(value):
        return
    schema_ok = WATCH_SCHEMA.is_valid(obj)
    got = judge_entry(enc(obj))
    decoded = not isinstance(got, InvalidRecord)
    assert decoded <= schema_ok, (obj, got)
    if schema_ok and not decoded:
        assert got.reason in ("unknown-site", "bad-field"), (obj, got)
        if got.reason == "bad-field":
            assert "after" in got.detail, (obj, got)      # until after from
