"""Keyed pseudonyms of subject ids (rings.pseudonym), and replay with them."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import pytest

from rings.models import Sighting, Subject, WatchEntry
from rings.pseudonym import Pseudonymizer, PseudonymKeyError, from_env

KEY = b"0123456789abcdef-key"


def test_the_pseudonym_is_a_keyed_hmac_of_type_and_id() -> None:
    pz = Pseudonymizer(KEY)
    want = hmac.new(KEY, "vehicle:蒙K3X521".encode(), hashlib.sha256).hexdigest()[:32]
    assert pz.key("vehicle:蒙K3X521") == f"vehicle:h{want}"
    assert pz.key("vehicle:蒙K3X521") == Pseudonymizer(KEY).key("vehicle:蒙K3X521")
    assert pz.key("person:蒙K3X521") != pz.key("vehicle:蒙K3X521")         # type counts
    assert Pseudonymizer(KEY + b"x").key("vehicle:蒙K3X521") != pz.key("vehicle:蒙K3X521")


def test_sightings_and_entries_alike() -> None:
    pz = Pseudonymizer(KEY)
    s = Sighting("s1", 0, 480, "CP01", "in", Subject("vehicle", "蒙K3X521"),
                 (Subject("person", "p-1"), Subject("item", "box")), {"plate_color": "blue"})
    p = pz.sighting(s)
    assert p.subject.key == pz.key("vehicle:蒙K3X521")
    assert [w.key for w in p.with_] == [pz.key("person:p-1"), pz.key("item:box")]
    assert (p.id, p.ts, p.site, p.attrs) == (s.id, s.ts, s.site, s.attrs)
    e = WatchEntry(Subject("person", "p-1"), "fugitive", "high")
    assert pz.entry(e).subject == p.with_[0]          # a listed companion still matches


def test_key_from_the_environment(tmp_path: Path) -> None:
    assert from_env({}) is None
    f = tmp_path / "key"
    f.write_bytes(KEY + b"\n")                        # a trailing newline is not key
    assert from_env({"RINGS_PSEUDONYM_KEY_FILE": str(f)}).key("a:b") == \
        Pseudonymizer(KEY).key("a:b")
    assert from_env({"RINGS_PSEUDONYM_KEY": KEY.decode()}).key("a:b") == \
        Pseudonymizer(KEY).key("a:b")
    with pytest.raises(PseudonymKeyError, match="at least 16 bytes"):
        from_env({"RINGS_PSEUDONYM_KEY": "short"})
    with pytest.raises(PseudonymKeyError, match="cannot read"):
        from_env({"RINGS_PSEUDONYM_KEY_FILE": str(tmp_path / "missing")})
