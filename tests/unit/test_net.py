"""The net file: the sample loads, zones are derived right, every error points at its place."""

from __future__ import annotations

import textwrap

import pytest

from rings.cli import main
from rings.errors import NetError, SourceError, SourceErrors
from rings.net import OUTSIDE, load_net, load_net_text

from .support import NET_PATH

# ------------------------------------------------------------------------- helpers


def at(text: str, needle: str, nth: int = 1) -> tuple[int, int]:
    """1-based (line, col) of the nth occurrence of needle in text."""
    i = -1
    for _ in range(nth):
        i = text.index(needle, i + 1)
    line = text.count("\n", 0, i) + 1
    col = i - (text.rfind("\n", 0, i) + 1) + 1
    return line, col


def errors_of(text: str, name: str = "bad.yaml") -> list[SourceError]:
    with pytest.raises((SourceError, SourceErrors)) as ei:
        load_net_text(text, name)
    e = ei.value
    errs = e.errors if isinstance(e, SourceErrors) else [e]
    for x in errs:
        assert x.file == name
    return errs


def only_error(text: str) -> SourceError:
    errs = errors_of(text)
    assert len(errs) == 1, [str(e) for e in errs]
    return errs[0]


def net_text(body: str) -> str:
    return textwrap.dedent(body).lstrip("\n")


GOOD = net_text("""
    net: small
    rings:
      - id: outer
        name: Outer ring
      - id: inner
        parent: outer
      - id: west
    sites:
      - id: CP1
        type: checkpoint
        ring: outer
        lat: 40.0
        lon: 110.0
      - id: BA1
        type: bayonet
        approaches: CP1
        lat: 40.1
        lon: 110.1
      - id: CPI
        type: checkpoint
        ring: inner
        lat: 39.95
        lon: 109.95
      - id: BAI
        type: bayonet
        approaches: CPI
        lat: 39.96
        lon: 109.96
      - id: BW1
        type: bayonet
        ring: west
        lat: 39.0
        lon: 108.0
      - id: LONE
        type: bayonet
        lat: 39.5
        lon: 109.5
    """)


def with_change(old: str, new: str, text: str = GOOD) -> str:
    assert old in text
    return text.replace(old, new, 1)


# ------------------------------------------------------------------------- the sample net


def test_sample_net_loads(net):
    assert net.name == "ordos-sample"
    assert len(net.sites) >= 60
    assert net.root_rings() == ["city"]
    cps = net.checkpoints()
    assert len(cps) == 21
    assert all(cp.ring == "city" for cp in cps)


def test_every_sample_checkpoint_has_an_approach_bayonet(net):
    feeders: dict[str, list[str]] = {}
    for s in net.sites.values():
        if s.approaches is not None:
            assert s.type == "bayonet"
            assert s.ring is None
            feeders.setdefault(s.approaches, []).append(s.id)
    missing = [cp.id for cp in net.checkpoints() if not feeders.get(cp.id)]
    assert missing == []


def test_sample_zones(net):
    s = net.sites
    assert (s["CP01"].zone_in, s["CP01"].zone_out) == ("city", OUTSIDE)
    assert (s["BK01"].zone_in, s["BK01"].zone_out) == ("core", "city")
    assert (s["BV01"].zone_in, s["BV01"].zone_out) == ("civic", "core")
    assert (s["DL01"].zone_in, s["DL01"].zone_out) == ("banner-dalad", "city")
    # An approach bayonet stands outside the ring of the checkpoint it leads to.
    assert s["BA01"].ring is None
    assert (s["BA01"].zone_in, s["BA01"].zone_out) == (OUTSIDE, OUTSIDE)
    assert s["BK01"].zone_after("in") == "core"
    assert s["BK01"].zone_after("out") == "city"
    assert s["BK01"].zone_after(None) is None


def test_sample_depth_and_leaf_zones(net):
    assert net.zone_depth(OUTSIDE) == 0
    assert net.zone_depth(None) == 0
    assert net.zone_depth("city") == 1
    assert net.zone_depth("core") == 2
    assert net.zone_depth("civic") == 3
    assert net.zone_depth("banner-uxin") == 2
    leaves = {r for r in net.rings if net.is_leaf_zone(r)}
    assert "civic" in leaves and "banner-dalad" in leaves
    assert "city" not in leaves and "core" not in leaves
    assert not net.is_leaf_zone(OUTSIDE)
    assert net.rings["civic"].roots_path == ("city", "core", "civic")
    assert set(net.rings["city"].children) >= {"core", "banner-dalad"}


def test_distance_is_symmetric_and_plausible(net):
    d = net.distance_km("CP01", "BK01")
    assert d == net.distance_km("BK01", "CP01")
    assert 10 < d < 400
    assert net.distance_km("CP01", "CP01") == 0


# ------------------------------------------------------------------------- zones of any net


def test_zones_of_a_custom_net():
    n = load_net_text(GOOD, "good.yaml")
    assert n.root_rings() == ["outer", "west"]
    assert n.rings["inner"].depth == 2 and n.rings["west"].depth == 1
    s = n.sites
    assert (s["CP1"].zone_in, s["CP1"].zone_out) == ("outer", OUTSIDE)
    assert (s["CPI"].zone_in, s["CPI"].zone_out) == ("inner", "outer")
    assert (s["BW1"].zone_in, s["BW1"].zone_out) == ("west", OUTSIDE)
    # Approach bayonets: outside the checkpoint's ring, i.e. in the zone of its parent.
    assert (s["BA1"].zone_in, s["BA1"].zone_out) == (OUTSIDE, OUTSIDE)
    assert (s["BAI"].zone_in, s["BAI"].zone_out) == ("outer", "outer")
    # A site on no ring and approaching nothing says nothing about zones.
    assert (s["LONE"].zone_in, s["LONE"].zone_out) == (None, None)
    assert n.is_leaf_zone("inner") and n.is_leaf_zone("west") and not n.is_leaf_zone("outer")
    assert n.outer_zone("inner") == "outer" and n.outer_zone("outer") == OUTSIDE


# ------------------------------------------------------------------------- errors


@pytest.mark.parametrize("old,new,needle", [
    ("net: small\n", "net: small\ncolour: red\n", "colour"),
    ("    name: Outer ring\n", "    name: Outer ring\n    colour: red\n", "colour"),
    ("    ring: west\n", "    ring: west\n    colour: red\n", "colour"),
], ids=["top", "ring", "site"])
def test_unknown_field_at_any_level(old, new, needle):
    text = with_change(old, new)
    e = only_error(text)
    assert isinstance(e, NetError)
    assert "unknown field 'colour'" in e.message
    assert (e.line, e.col) == at(text, needle)


def test_duplicate_ring_id():
    text = with_change("  - id: west\n", "  - id: west\n  - id: inner\n")
    e = only_error(text)
    assert "duplicate ring id 'inner'" in e.message
    first, second = at(text, "inner", 1), at(text, "- id: inner", 2)
    assert f"first at line {first[0]}" in e.message
    assert (e.line, e.col) == (second[0], second[1] + len("- id: "))


def test_duplicate_site_id():
    text = with_change("  - id: LONE\n", "  - id: BA1\n")
    e = only_error(text)
    assert "duplicate site id 'BA1'" in e.message
    first, second = at(text, "id: BA1", 1), at(text, "id: BA1", 2)
    assert f"first at line {first[0]}" in e.message
    assert (e.line, e.col) == (second[0], second[1] + len("id: "))


def test_unknown_parent():
    text = with_change("    parent: outer\n", "    parent: nowhere\n")
    errs = errors_of(text)
    assert len(errs) == 1, [str(e) for e in errs]
    e = errs[0]
    assert "unknown parent 'nowhere'" in e.message
    # Reported on the ring that names the parent.
    assert (e.line, e.col) == (at(text, "id: inner")[0], at(text, "id: inner")[1] + 4)


def test_parent_cycle():
    text = net_text("""
        net: cyc
        rings:
          - id: a
            parent: b
          - id: b
            parent: a
          - id: c
        sites:
          - id: S1
            type: bayonet
            ring: c
            lat: 1
            lon: 2
        """)
    errs = errors_of(text)
    expected = [at(text, "id: a"), at(text, "id: b")]
    assert sorted((e.line, e.col) for e in errs) == [(ln, col + 4) for ln, col in expected]
    assert all("parent cycle" in e.message for e in errs)


def test_site_on_a_ring_in_a_cycle_is_not_accepted():
    text = net_text("""
        net: cyc
        rings:
          - id: a
            parent: a
        sites:
          - id: S1
            type: bayonet
            ring: a
            lat: 1
            lon: 2
        """)
    errs = errors_of(text)
    assert any("parent cycle" in e.message for e in errs)


@pytest.mark.parametrize("key,value", [
    ("lat", "true"), ("lat", "false"), ("lat", "91"), ("lat", "-90.5"), ("lat", '"40.0"'),
    ("lat", ".nan"), ("lat", "null"), ("lon", "180.01"), ("lon", "-181"), ("lon", "yes"),
    ("lon", ".inf"), ("lon", "[1, 2]"),
])
def test_bad_lat_lon(key, value):
    old = "    lat: 39.0\n    lon: 108.0\n"
    new = old.replace(f"{key}: " + ("39.0" if key == "lat" else "108.0"), f"{key}: {value}")
    text = with_change(old, new)
    e = only_error(text)
    assert f"site 'BW1': `{key}` must be a number" in e.message
    line, col = at(text, f"{key}: {value}")
    assert (e.line, e.col) == (line, col + len(key) + 2)


def test_missing_lat_is_reported_on_the_site():
    text = with_change("    lat: 39.0\n", "")
    e = only_error(text)
    assert "site 'BW1': `lat` is required" in e.message
    assert e.line == at(text, "id: BW1")[0]


def test_approach_to_a_bayonet():
    text = with_change("    approaches: CP1\n", "    approaches: BW1\n")
    e = only_error(text)
    assert "approaches 'BW1', which is a bayonet, not a checkpoint" in e.message
    line, col = at(text, "approaches: BW1")
    assert (e.line, e.col) == (line, col + len("approaches: "))


def test_approach_to_an_unknown_site():
    text = with_change("    approaches: CPI\n", "    approaches: CP99\n")
    e = only_error(text)
    assert "approaches unknown site 'CP99'" in e.message
    line, col = at(text, "approaches: CP99")
    assert (e.line, e.col) == (line, col + len("approaches: "))


def test_site_on_unknown_ring_and_bad_type():
    text = with_change("    ring: west\n", "    ring: south\n")
    text = with_change("    type: checkpoint\n    ring: inner\n",
                       "    type: gate\n    ring: inner\n", text)
    errs = errors_of(text)
    got = {(e.line, e.col): e.message for e in errs}
    line, col = at(text, "south")
    assert "unknown ring 'south'" in got[(line, col)]
    line, col = at(text, "gate")
    assert "`type` must be checkpoint or bayonet" in got[(line, col)]


def test_duplicate_yaml_key():
    text = with_change("    lon: 108.0\n", "    lon: 108.0\n    lon: 108.5\n")
    e = only_error(text)
    assert "duplicate key 'lon'" in e.message
    assert (e.line, e.col) == at(text, "lon: 108.5")
    assert f"first defined at line {at(text, 'lon: 108.0')[0]}" in e.message


def test_yaml_syntax_error():
    text = with_change("    lon: 108.0\n", "    lon: [108.0\n")
    e = only_error(text)
    assert e.message.startswith("YAML syntax error")
    assert e.line is not None and e.col is not None
    assert e.line >= at(text, "[108.0")[0]


def test_not_a_mapping():
    e = only_error("- just\n- a list\n")
    assert (e.line, e.col) == (1, 1)


def test_several_errors_are_reported_at_once():
    text = with_change("net: small\n", "net: small\nversion: 2\n")
    text = with_change("    parent: outer\n", "    parent: nowhere\n", text)
    text = with_change("    lat: 39.0\n", "    lat: true\n", text)
    text = with_change("    approaches: CPI\n", "    approaches: LONE\n", text)
    text = with_change("  - id: LONE\n", "  - id: CP1\n", text)
    errs = errors_of(text)
    msgs = "\n".join(str(e) for e in errs)
    assert len(errs) == 5, msgs
    for fragment in ("unknown field 'version'", "unknown parent 'nowhere'",
                     "`lat` must be a number", "duplicate site id 'CP1'",
                     "approaches unknown site 'LONE'"):
        assert fragment in msgs
    assert all(str(e).startswith(f"bad.yaml:{e.line}:{e.col}: ") for e in errs)


# ------------------------------------------------------------------------- rings net check


def test_cli_net_check_sample(capsys):
    assert main(["net", "check", str(NET_PATH)]) == 0
    out = capsys.readouterr().out
    assert "ok" in out and "21 checkpoints" in out


def test_cli_net_check_bad_file(tmp_path, capsys):
    text = with_change("    ring: west\n", "    ring: west\n    colour: red\n")
    text = with_change("    lat: 40.1\n", "    lat: 95\n", text)
    p = tmp_path / "net.yaml"
    p.write_text(text, encoding="utf-8")
    assert main(["net", "check", str(p)]) == 1
    err = sorted(capsys.readouterr().err.strip().splitlines())
    assert len(err) == 2, err
    line, col = at(text, "colour")
    assert any(x.startswith(f"{p}:{line}:{col}: unknown field 'colour' in site") for x in err)
    line, col = at(text, "lat: 95")
    assert any(x.startswith(f"{p}:{line}:{col + 5}: site 'BA1': `lat`") for x in err)


def test_cli_net_check_yaml_error(tmp_path, capsys):
    p = tmp_path / "net.yaml"
    p.write_text("net: x\nrings:\n  - id: a\n  - id: a\n    id: b\n", encoding="utf-8")
    assert main(["net", "check", str(p)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"{p}:5:5: duplicate key 'id'")


def test_load_net_missing_file(tmp_path):
    with pytest.raises(SourceError) as ei:
        load_net(str(tmp_path / "absent.yaml"))
    assert "cannot read" in str(ei.value)
