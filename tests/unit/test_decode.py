"""Decoding sightings and watchlist entries: every refusal has its reason, and the hand-written
decoder accepts exactly what the published JSON Schema accepts."""

from __future__ import annotations

import base64
import json
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from rings.decode import (Limits, Rejected, decode_sighting, decode_sightings,
                          decode_watch_entry)
from rings.errors import InvalidRecord
from rings.models import SUBJECT_TYPES, Subject
from rings.net import load_net
from rings.timefmt import MAX_MS, MIN_MS, parse_ts

from .support import NET_PATH, rfc3339_valid, validator

SUBJECT_ID = "蒙K3X521"
SIGHTING_ID = "BY07-20261129-000123"
GOOD: dict[str, Any] = {
    "id": SIGHTING_ID, "ts": "2026-11-29T08:30:00.250+08:00", "site": "BA07", "dir": "in",
    "subject": {"type": "vehicle", "id": SUBJECT_ID},
    "with": [{"type": "person", "id": "p-9f2c41"}],
    "attrs": {"plate_color": "blue", "confidence": 0.97},
}

SITES = load_net(str(NET_PATH)).sites      # module level: hypothesis prints its arguments
SIGHTING_SCHEMA = validator("sighting.schema.json")
DLQ_SCHEMA = validator("dead-letter.schema.json")
WATCH_SCHEMA = validator("watchlist-entry.schema.json")


def enc(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


DROP = object()       # a field to leave out


def copy_with(base: dict[str, Any], **kw: Any) -> dict[str, Any]:
    """A deep copy of `base` with fields replaced (or left out with DROP)."""
    d = json.loads(json.dumps(base))
    for k, v in kw.items():
        if v is DROP:
            d.pop(k, None)
        else:
            d[k] = v
    return d


def changed(**kw: Any) -> dict[str, Any]:
    return copy_with(GOOD, **kw)


def refusal(raw: bytes, sites, limits: Limits = Limits()) -> InvalidRecord:
    with pytest.raises(InvalidRecord) as ei:
        decode_sighting(raw, sites, limits)
    return ei.value


# ------------------------------------------------------------------------- accepted


def test_good_sighting(net):
    s = decode_sighting(enc(GOOD), net.sites)
    assert s.id == SIGHTING_ID
    assert (s.ts, s.tz) == parse_ts(GOOD["ts"])
    assert s.site == "BA07" and s.dir == "in"
    assert s.subject == Subject("vehicle", SUBJECT_ID) and s.key == f"vehicle:{SUBJECT_ID}"
    assert s.with_ == (Subject("person", "p-9f2c41"),)
    assert s.attrs == GOOD["attrs"]
    assert s.to_json()["ts"] == GOOD["ts"]
    assert SIGHTING_SCHEMA.is_valid(s.to_json())


def test_minimal_sighting_and_integer_ts(net):
    s = decode_sighting(enc({"id": "x", "ts": 1764376200000, "site": "CP01",
                             "subject": {"type": "code", "id": "c"}, "extra": [1]}), net.sites)
    assert (s.ts, s.tz, s.dir, s.with_, s.attrs) == (1764376200000, 0, None, (), None)


# ------------------------------------------------------------------------- refusals

CASES: list[tuple[str, Any, str]] = [
    # (name, raw bytes or object, reason)
    ("truncated", enc(GOOD)[:-5], "bad-json"),
    ("trailing-comma", b'{"id": "a",}', "bad-json"),
    ("empty", b"", "bad-json"),
    ("invalid-utf8", enc(GOOD).replace(SUBJECT_ID.encode(), b"\xff\xfe" + SUBJECT_ID.encode()),
     "bad-json"),
    ("lone-surrogate", enc(GOOD).replace(b"p-9f2c41", b"\\ud800"), "bad-json"),
    ("nan", enc(GOOD).replace(b"0.97", b"NaN"), "bad-json"),
    ("infinity", enc(GOOD).replace(b"0.97", b"Infinity"), "bad-json"),
    ("minus-infinity", enc(GOOD).replace(b"0.97", b"-Infinity"), "bad-json"),
    ("two-documents", enc(GOOD) + b" {}", "bad-json"),
    ("deep", b"[" * 10000, "bad-json"),
    ("deep-object", b'{"a":' * 10000 + b"1" + b"}" * 10000, "bad-json"),
    ("array", b"[]", "not-an-object"),
    ("string", enc(SUBJECT_ID), "not-an-object"),
    ("number", b"12", "not-an-object"),
    ("null", b"null", "not-an-object"),
    ("missing-id", changed(id=DROP), "missing-field"),
    ("missing-ts", changed(ts=DROP), "missing-field"),
    ("missing-site", changed(site=DROP), "missing-field"),
    ("missing-subject", changed(subject=DROP), "missing-field"),
    ("id-int", changed(id=12), "bad-field"),
    ("id-empty", changed(id=""), "bad-field"),
    ("id-long", changed(id="x" * 257), "bad-field"),
    ("id-list", changed(id=[SIGHTING_ID]), "bad-field"),
    ("site-int", changed(site=7), "bad-field"),
    ("site-object", changed(site={"id": "CP01"}), "bad-field"),
    ("dir-word", changed(dir="inward"), "bad-field"),
    ("dir-upper", changed(dir="IN"), "bad-field"),
    ("dir-bool", changed(dir=True), "bad-field"),
    ("subject-string", changed(subject=f"vehicle:{SUBJECT_ID}"), "bad-field"),
    ("subject-list", changed(subject=["vehicle", SUBJECT_ID]), "bad-field"),
    ("subject-type", changed(subject={"type": "car", "id": SUBJECT_ID}), "bad-field"),
    ("subject-no-type", changed(subject={"id": SUBJECT_ID}), "bad-field"),
    ("subject-no-id", changed(subject={"type": "vehicle"}), "bad-field"),
    ("subject-id-empty", changed(subject={"type": "vehicle", "id": ""}), "bad-field"),
    ("subject-id-int", changed(subject={"type": "vehicle", "id": 3521}), "bad-field"),
    ("subject-id-long", changed(subject={"type": "vehicle", "id": SUBJECT_ID * 40}), "bad-field"),
    ("with-object", changed(**{"with": {"type": "person", "id": "p"}}), "bad-field"),
    ("with-too-many", changed(**{"with": [{"type": "person", "id": f"p{i}"} for i in range(65)]}),
     "bad-field"),
    ("with-item-type", changed(**{"with": [{"type": "ghost", "id": SUBJECT_ID}]}), "bad-field"),
    ("with-item-string", changed(**{"with": [SUBJECT_ID]}), "bad-field"),
    ("attrs-list", changed(attrs=[SUBJECT_ID]), "bad-field"),
    ("attrs-string", changed(attrs=SUBJECT_ID), "bad-field"),
    # orjson reads 1024 levels but writes only 254: deeper attrs could not travel on.
    ("attrs-deep", changed(attrs={"a": json.loads("[" * 40 + "]" * 40)}), "too-deep"),
    ("attrs-deep-300", changed(attrs={"a": json.loads("[" * 300 + "]" * 300)}), "too-deep"),
    ("ts-date-only", changed(ts="2026-11-29"), "bad-ts"),
    ("ts-naive", changed(ts="2026-11-29T08:30:00"), "bad-ts"),
    ("ts-bool", changed(ts=True), "bad-ts"),
    ("ts-float", changed(ts=1764376200000.5), "bad-ts"),
    ("ts-null", changed(ts=None), "bad-ts"),
    ("ts-garbage", changed(ts=SUBJECT_ID), "bad-ts"),
    ("ts-huge", changed(ts=10**16), "bad-ts"),
    ("unknown-site", changed(site="XX99"), "unknown-site"),
    ("unknown-site-case", changed(site="ba07"), "unknown-site"),
]


@pytest.mark.parametrize("name,record,reason", CASES, ids=[c[0] for c in CASES])
def test_refusal_reason(net, name, record, reason):
    raw = record if isinstance(record, bytes) else enc(record)
    e = refusal(raw, net.sites)
    assert e.reason == reason, str(e)
    assert e.detail
    # The detail goes to the DLQ and may be logged: never an identifier from the record.
    assert SUBJECT_ID not in e.detail and SIGHTING_ID not in e.detail
    assert "K3X521" not in e.detail and "9f2c41" not in e.detail
    # The same record in a batch gets the same verdict, by index.
    ok, bad = decode_sightings([enc(GOOD), raw, enc(GOOD)], net.sites)
    assert [i for i, _ in ok] == [0, 2]
    assert [(i, x.reason) for i, x in bad] == [(1, reason)]


def test_too_large(net):
    raw = enc(changed(attrs={"pad": "x" * 70_000}))
    assert refusal(raw, net.sites).reason == "too-large"
    small = Limits(max_bytes=len(enc(GOOD)))
    assert decode_sighting(enc(GOOD), net.sites, small).id == SIGHTING_ID
    e = refusal(enc(GOOD) + b" ", net.sites, small)
    assert e.reason == "too-large"
    assert str(len(enc(GOOD)) + 1) in e.detail


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_detail_never_contains_identifiers(data):
    raw = bytearray(enc(GOOD))
    for _ in range(data.draw(st.integers(1, 3))):
        op = data.draw(st.sampled_from(["cut", "flip", "insert"]))
        i = data.draw(st.integers(0, len(raw) - 1))
        if op == "cut":
            del raw[i:i + data.draw(st.integers(1, 8))]
        elif op == "flip":
            raw[i] = data.draw(st.integers(0, 255))
        else:
            raw[i:i] = data.draw(st.binary(min_size=1, max_size=4))
    try:
        decode_sighting(bytes(raw), SITES)
    except InvalidRecord as e:
        for secret in ("K3X521", "9f2c41", "000123", "plate_color", "blue"):
            assert secret not in e.detail, (e.reason, e.detail)


# ------------------------------------------------------------------------- dead letters


@pytest.mark.parametrize("raw", [
    enc(GOOD)[:-3],
    b"  {\"id\": 1}\r\n",
    "{\"site\": \"蒙\"}".encode(),
    b"\xff\xfe\x00garbage",
    enc(GOOD).replace(b"p-9f2c41", b"p-\xc3\x28"),
    b"",
])
def test_dead_letter_keeps_original_bytes(net, raw):
    e = refusal(raw, net.sites)
    rej = Rejected(raw, e.reason, e.detail, b"key", ("sightings", 3, 42))
    d = rej.to_json()
    assert DLQ_SCHEMA.is_valid(d), list(DLQ_SCHEMA.iter_errors(d))
    assert d["reason"] == e.reason and d["detail"] == e.detail
    assert d["source"] == {"topic": "sightings", "partition": 3, "offset": 42}
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        assert "original" not in d
        assert base64.b64decode(d["original_b64"], validate=True) == raw
    else:
        assert "original_b64" not in d
        assert d["original"] == text and d["original"].encode("utf-8") == raw
    # It survives its own JSON encoding byte for byte.
    back = orjson.loads(orjson.dumps(d))
    got = back["original"].encode() if "original" in back else base64.b64decode(
        back["original_b64"])
    assert got == raw


def test_dead_letter_without_source_is_valid():
    d = Rejected(b"[]", "not-an-object", "a sighting must be a JSON object").to_json()
    assert DLQ_SCHEMA.is_valid(d) and "source" not in d


# ------------------------------------------------------------------------- decoder == schema

KNOWN_SITES = ["CP01", "BA07", "BK03"]
OTHER_SITES = ["XX99", "", "cp01", "CP01 "]

TS_STRINGS = [
    "2026-11-29T08:30:00.250+08:00", "2026-11-29T00:30:00Z", "2026-11-29t00:30:00z",
    "2026-11-29 08:30:00-05:30", "2024-02-29T00:00:00.1234567+00:00",
    "2026-11-29T08:30:00.999+08:00", "2026-11-29", "2026-11-29T08:30:00",
    "2026-11-29T08:30:00,250+08:00", "2026-11-29T083000.000+08:00", "2026-11-29T08:30:00+0800",
    "2026-11-29T08:30:00+08", "2026-11-29T08:30:00+08:00:00", "2026-11-29T08:30:00.+08:00",
    "20261129T083000Z", "", "garbage", "2026-11-29T08:30Z", "2026-02-29T08:30:00Z",
    "2026-13-01T00:00:00Z", "2026-11-31T00:00:00Z", "2026-11-29T24:00:00Z",
    "2026-11-29T08:60:00Z", "2026-11-29T08:30:00+24:00", "2026-11-29T08:30:00+08:60",
]


@st.composite
def ts_shaped(draw) -> str:
    """Strings near the RFC 3339 shape, with fields in and out of range."""
    two = lambda lo, hi: draw(st.integers(lo, hi).map(lambda n: f"{n:02d}"))  # noqa: E731
    date = f"{draw(st.integers(1970, 2100))}-{two(0, 13)}-{two(0, 32)}"
    sep = draw(st.sampled_from(["T", "t", " ", "_", ""]))
    time = f"{two(0, 25)}:{two(0, 61)}:{two(0, 59)}"
    frac = draw(st.one_of(st.just(""), st.just("."), st.just(",5"),
                          st.text("0123456789", min_size=1, max_size=12).map(lambda s: "." + s)))
    off = draw(st.one_of(st.sampled_from(["Z", "z", "", "+0800", "+08", "-00:00"]),
                         st.builds(lambda s, h, m: f"{s}{h:02d}:{m:02d}",
                                   st.sampled_from("+-"), st.integers(0, 25),
                                   st.integers(0, 61))))
    return date + sep + time + frac + off


TS = st.one_of(
    ts_shaped(), st.sampled_from(TS_STRINGS),
    st.integers(-(2**62), 2**62),
    st.sampled_from([0, -1, 1764376200000, MIN_MS, MAX_MS, MIN_MS - 1, MAX_MS + 1]),
    # Non-integral floats only: JSON Schema counts 1.0 as an integer, the decoder (like the
    # contract's "integer milliseconds") refuses every float; that difference is deliberate.
    st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: not f.is_integer()),
    st.booleans(), st.text(max_size=4),
)
TEXT_ID = st.one_of(st.text(max_size=4), st.sampled_from(["x" * 256, "x" * 257, "蒙" * 256]))
ANY_SCALAR = st.one_of(st.integers(-5, 5), st.booleans(), st.text(max_size=3),
                       st.lists(st.integers(), max_size=1))
SUBJECT_TYPE = st.one_of(st.sampled_from(SUBJECT_TYPES),
                         st.sampled_from(["car", "", "Vehicle"]), st.integers(0, 2))
SUBJECT = st.one_of(
    st.fixed_dictionaries({}, optional={"type": SUBJECT_TYPE, "id": st.one_of(TEXT_ID, ANY_SCALAR),
                                        "name": st.text(max_size=2)}),
    st.fixed_dictionaries({"type": st.sampled_from(SUBJECT_TYPES), "id": TEXT_ID}),
    ANY_SCALAR,
)
VALID_SUBJECTS = [{"type": "person", "id": f"p{i}"} for i in range(65)]
WITH = st.one_of(st.lists(SUBJECT, max_size=3), st.just(VALID_SUBJECTS[:64]),
                 st.just(VALID_SUBJECTS), ANY_SCALAR, st.dictionaries(st.text(max_size=2),
                                                                      st.integers(), max_size=1))
ATTRS = st.one_of(st.dictionaries(st.text(max_size=3), st.one_of(st.integers(), st.text(max_size=3)),
                                  max_size=2), ANY_SCALAR)
SIGHTING_OBJ = st.fixed_dictionaries({}, optional={
    "id": st.one_of(TEXT_ID, ANY_SCALAR, st.none()),
    "ts": st.one_of(TS, st.none()),
    "site": st.one_of(st.sampled_from(KNOWN_SITES + OTHER_SITES), st.none(), ANY_SCALAR),
    "dir": st.one_of(st.sampled_from(["in", "out", "IN", "", "inward"]), ANY_SCALAR, st.none()),
    "subject": st.one_of(SUBJECT, st.none()),
    "with": st.one_of(WITH, st.none()),
    "attrs": st.one_of(ATTRS, st.none()),
    "extra": ANY_SCALAR,
})
# Mostly well-formed sightings with one or two fields replaced, so that each field's rules
# are reached (a random object is usually refused for its first field alone).
NEAR_GOOD = st.builds(
    lambda base, repl, drop: {**{k: v for k, v in base.items() if k not in drop}, **repl},
    st.fixed_dictionaries({"id": st.just("s-1"), "ts": st.just(1764376200000),
                           "site": st.sampled_from(KNOWN_SITES),
                           "subject": st.just({"type": "vehicle", "id": "v"})},
                          optional={"dir": st.sampled_from(["in", "out"]),
                                    "with": st.just([{"type": "item", "id": "i"}]),
                                    "attrs": st.just({"a": 1})}),
    st.dictionaries(st.sampled_from(["id", "ts", "site", "dir", "subject", "with", "attrs"]),
                    st.deferred(lambda: st.one_of(TS, SUBJECT, TEXT_ID, WITH, ATTRS, st.none())),
                    max_size=2),
    st.sets(st.sampled_from(["id", "ts", "site", "subject", "dir"]), max_size=1),
)


def schema_accepts(obj: Any) -> bool:
    return SIGHTING_SCHEMA.is_valid(obj)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(SIGHTING_OBJ, NEAR_GOOD))
@example({"id": "a", "ts": "2026-11-29T083000.000+08:00", "site": "CP01",
          "subject": {"type": "vehicle", "id": "v"}})
@example({"id": "a", "ts": 10**16, "site": "CP01", "subject": {"type": "vehicle", "id": "v"}})
def test_decoder_agrees_with_schema(obj):
    raw = enc(obj)
    parsed = orjson.loads(raw)
    schema_ok = schema_accepts(parsed)
    site_known = isinstance(parsed.get("site"), str) and parsed["site"] in SITES
    try:
        decode_sighting(raw, SITES)
        decoded, reason = True, None
    except InvalidRecord as e:
        decoded, reason = False, e.reason
    # The unknown site is the one semantic check beyond the schema.
    assert decoded == (schema_ok and site_known), (
        f"decoder {'accepts' if decoded else f'refuses ({reason})'} but the schema "
        f"{'accepts' if schema_ok else 'refuses'}: {raw.decode()}")
    if not decoded and schema_ok:
        assert reason == "unknown-site"


@pytest.mark.parametrize("ts", [
    "2026-11-29T08:30:00.250+08:00", "2026-11-29T083000+08:00", "2026-11-29T08:30:00+08",
    "2026-11-29T08:30:00,5Z", "2026-02-29T00:00:00Z", "2026-11-29T08:30:00+24:00",
])
def test_ts_pattern_and_date_validity_match_parse_ts(ts):
    pattern_ok = SIGHTING_SCHEMA.is_valid({"id": "a", "ts": ts, "site": "x",
                                           "subject": {"type": "code", "id": "c"}})
    assert pattern_ok == rfc3339_valid(ts)
    try:
        parse_ts(ts)
        parsed = True
    except InvalidRecord:
        parsed = False
    assert parsed == pattern_ok


@pytest.mark.parametrize("field", ["dir", "with", "attrs"])
def test_null_optional_fields(net, field):
    """A null optional field means the same as an absent one (gateways often send null for
    "unknown"), and the schema and the decoder agree on it."""
    obj = changed(**{field: None})
    schema_ok = schema_accepts(obj)
    try:
        s = decode_sighting(enc(obj), net.sites)
        decoded = True
    except InvalidRecord:
        decoded = False
    assert decoded and schema_ok
    assert s.to_json() == decode_sighting(enc({k: v for k, v in obj.items() if k != field}),
                                          net.sites).to_json()
    assert decoded == schema_ok, (
        f'decoder and sighting.schema.json disagree on "{field}": null: the decoder '
        f"{'accepts it as absent' if decoded else 'refuses it'}, the schema "
        f"{'accepts' if schema_ok else 'refuses'} it")


# ------------------------------------------------------------------------- watchlist entries

ENTRY = {"subject": {"type": "vehicle", "id": SUBJECT_ID}, "list": "wanted",
         "severity": "critical", "reason": "armed robbery suspect",
         "from": "2026-11-01T00:00:00+08:00", "until": "2026-12-31T00:00:00+08:00"}
PERMIT = {"subject": {"type": "vehicle", "id": "蒙K88888"}, "list": "permit", "severity": "high",
          "permit": {"route": ["CP03", "BC01", "BK01"], "from": "2026-11-29T06:00:00+08:00",
                     "until": "2026-11-29T18:00:00+08:00"}}


def entry(base: dict[str, Any] = ENTRY, **kw: Any) -> dict[str, Any]:
    return copy_with(base, **kw)


def test_watch_entry_valid(net):
    e = decode_watch_entry(enc(ENTRY), net.sites)
    assert e.subject.key == f"vehicle:{SUBJECT_ID}"
    assert (e.list, e.severity, e.reason) == ("wanted", "critical", "armed robbery suspect")
    assert e.start == parse_ts(ENTRY["from"])[0] and e.end == parse_ts(ENTRY["until"])[0]
    assert not e.is_permit and e.permit is None
    assert e.active_at(e.start) and not e.active_at(e.end) and not e.active_at(e.start - 1)
    assert WATCH_SCHEMA.is_valid(ENTRY)

    m = decode_watch_entry(enc({"subject": {"type": "person", "id": "p"}, "list": "fugitive",
                                "severity": "low"}))
    assert (m.start, m.end, m.reason, m.permit) == (None, None, None, None)
    assert m.active_at(0) and m.active_at(MAX_MS)


def test_watch_entry_permit(net):
    e = decode_watch_entry(enc(PERMIT), net.sites)
    assert e.is_permit
    assert e.permit.route == ("CP03", "BC01", "BK01")
    assert e.permit.start == parse_ts("2026-11-29T06:00:00+08:00")[0]
    assert e.permit.end == parse_ts("2026-11-29T18:00:00+08:00")[0]
    assert WATCH_SCHEMA.is_valid(PERMIT)
    # Without a net to check against, the route's sites are taken as given.
    odd = entry(PERMIT, permit={"route": ["NOWHERE"]})
    assert decode_watch_entry(enc(odd)).permit.route == ("NOWHERE",)


WATCH_BAD = [
    ("array", [ENTRY], "not-an-object"),
    ("missing-subject", entry(subject=DROP), "missing-field"),
    ("subject-type", entry(subject={"type": "car", "id": "x"}), "bad-field"),
    ("subject-id", entry(subject={"type": "vehicle", "id": ""}), "bad-field"),
    ("list-missing", entry(list=DROP), "bad-field"),
    ("list-empty", entry(list=""), "bad-field"),
    ("list-int", entry(list=3), "bad-field"),
    ("severity-missing", entry(severity=DROP), "bad-field"),
    ("severity-bad", entry(severity="urgent"), "bad-field"),
    ("reason-int", entry(reason=1), "bad-field"),
    ("from-bad", entry(**{"from": "2026-11-01"}), "bad-ts"),
    ("until-bad", entry(until=True), "bad-ts"),
    ("until-equal-from", entry(until=ENTRY["from"]), "bad-field"),
    ("until-before-from", entry(until="2026-10-01T00:00:00+08:00"), "bad-field"),
    ("until-before-from-ms", entry(**{"from": 2000, "until": 1000}), "bad-field"),
    ("permit-missing", entry(PERMIT, permit=DROP), "bad-field"),
    ("permit-not-object", entry(PERMIT, permit=["CP03"]), "bad-field"),
    ("permit-no-route", entry(PERMIT, permit={"from": "2026-11-29T06:00:00+08:00"}), "bad-field"),
    ("permit-route-empty", entry(PERMIT, permit={"route": []}), "bad-field"),
    ("permit-route-int", entry(PERMIT, permit={"route": ["CP03", 4]}), "bad-field"),
    ("permit-route-string", entry(PERMIT, permit={"route": "CP03"}), "bad-field"),
    ("permit-route-unknown", entry(PERMIT, permit={"route": ["CP03", "XX99"]}), "unknown-site"),
    ("permit-from-bad", entry(PERMIT, permit={"route": ["CP03"], "from": "noon"}), "bad-ts"),
    ("permit-until-before-from", entry(PERMIT, permit={
        "route": ["CP03"], "from": "2026-11-29T18:00:00+08:00",
        "until": "2026-11-29T06:00:00+08:00"}), "bad-field"),
]


@pytest.mark.parametrize("name,obj,reason", WATCH_BAD, ids=[c[0] for c in WATCH_BAD])
def test_watch_entry_invalid(net, name, obj, reason):
    with pytest.raises(InvalidRecord) as ei:
        decode_watch_entry(enc(obj), net.sites)
    assert ei.value.reason == reason, str(ei.value)
    assert SUBJECT_ID not in ei.value.detail and "K88888" not in ei.value.detail


def test_watch_entry_bad_json():
    with pytest.raises(InvalidRecord) as ei:
        decode_watch_entry(b'{"subject": ')
    assert ei.value.reason == "bad-json"
