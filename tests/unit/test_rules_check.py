"""`rings rules check [PATH...]`: every error as `file:line:col: message`, exit 1 on any.

Schema-like errors (a wrong value, a YAML syntax error, a duplicate key or id, an unknown
kind or plan), rules that can never fire (on any net, or on the net given), and names of
sites the net does not have.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from rings.cli import main
from rings.net import load_net_text
from rings.ruleset import load_rules

from .support import NET_PATH, ROOT, RULES_DIR


def at(text: str, needle: str, nth: int = 1) -> tuple[int, int]:
    """1-based (line, col) of the nth occurrence of needle in text."""
    i = -1
    for _ in range(nth):
        i = text.index(needle, i + 1)
    return text.count("\n", 0, i) + 1, i - (text.rfind("\n", 0, i) + 1) + 1


@pytest.fixture()
def copy(tmp_path: Path) -> Path:
    """A copy of the shipped rules directory (rules and plans, not the net)."""
    d = tmp_path / "rules"
    d.mkdir()
    for name in ("rules.yaml", "plans.yaml"):
        shutil.copy(RULES_DIR / name, d / name)
    return d


def check(capsys, *argv: str) -> tuple[int, list[str]]:
    rc = main(["rules", "check", *argv])
    return rc, capsys.readouterr().err.splitlines()


def edit(path: Path, old: str, new: str) -> str:
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, old
    text = text.replace(old, new)
    path.write_text(text, encoding="utf-8")
    return text


def rules_file(d: Path, body: str) -> Path:
    d.mkdir(exist_ok=True)
    p = d / "rules.yaml"
    p.write_text(textwrap.dedent(body).lstrip("\n"), encoding="utf-8")
    return p


# ------------------------------------------------------------------------- the shipped rules


def test_the_shipped_rules_pass(capsys):
    rc = main(["rules", "check"])
    out = capsys.readouterr()
    assert (rc, out.err) == (0, "")
    assert ": ok: 8 rules (watchlist-hit, penetration, checkpoint-avoidance, cloned-plate, " \
           "loitering, convoy, permit-violation, linked-hit), 2 plans" in out.out


# ------------------------------------------------------------------------- at file:line:col


def test_a_wrong_severity_in_a_copy_of_the_shipped_rules(copy):
    """Through the real command line, in a process of its own: the exit code too."""
    path = copy / "rules.yaml"
    text = edit(path, "  - id: loitering\n", "  - id: loitering\n    severity: urgent\n")
    line, col = at(text, "urgent")
    assert (line, col) == (at(text, "  - id: loitering")[0] + 1, 15)
    p = subprocess.run([sys.executable, "-m", "rings.cli", "rules", "check", str(copy)],
                       cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert p.returncode == 1
    assert p.stderr.splitlines() == [
        f"{path}:{line}:{col}: `severity` must be one of low, medium, high, critical"]
    assert p.stdout == ""


def test_a_yaml_syntax_error_at_its_line(copy, capsys):
    path = copy / "rules.yaml"
    text = edit(path, "    sites: 3\n", "    sites: [3\n")
    opened = at(text, "[3")
    rc, err = check(capsys, str(copy))
    # The parser notices on the next line (the `:` of `window:`), and says where the
    # unclosed sequence began.
    assert rc == 1
    assert err == [f"{path}:{opened[0] + 1}:11: YAML syntax error: while parsing a flow "
                   f"sequence (begun at line {opened[0]}, column {opened[1]}): expected ',' "
                   "or ']', but got ':'"]


def test_an_unclosed_quote(tmp_path, capsys):
    p = rules_file(tmp_path / "r", """
        rules:
          - id: "loitering
            crossings: 3
        """)
    rc, err = check(capsys, str(p))
    assert rc == 1
    assert err == [f"{p}:4:1: YAML syntax error: while scanning a quoted scalar (begun at "
                   "line 2, column 9): found unexpected end of stream"]


def test_a_duplicate_key(copy, capsys):
    path = copy / "rules.yaml"
    text = edit(path, "    crossings: 4\n", "    crossings: 4\n    crossings: 3\n")
    first, _ = at(text, "crossings: 4")
    rc, err = check(capsys, str(copy))
    assert (rc, err) == (1, [f"{path}:{first + 1}:5: duplicate key 'crossings' (first "
                             f"defined at line {first})"])


def test_a_duplicate_rule_id_across_files(copy, capsys):
    (copy / "z.rules.yaml").write_text("rules:\n  - id: convoy\n    sites: 4\n",
                                       encoding="utf-8")
    rc, err = check(capsys, str(copy))
    first, _ = at((copy / "rules.yaml").read_text(encoding="utf-8"), "id: convoy")
    assert (rc, err) == (1, [f"{copy / 'z.rules.yaml'}:2:9: duplicate rule id 'convoy' "
                             f"(first at {copy / 'rules.yaml'}:{first})"])


def test_an_unknown_kind_and_an_unknown_plan(tmp_path, capsys):
    p = rules_file(tmp_path / "r", """
        rules:
          - id: loiter
            crossings: 3
          - id: penetration
            activate: lockdown
        """)
    rc, err = check(capsys, str(p))
    assert rc == 1
    assert err[0].startswith(f"{p}:2:9: unknown rule kind 'loiter' (known: ")
    assert err[1] == f"{p}:5:15: rule 'penetration' activates unknown plan 'lockdown' (known: none)"


def test_several_errors_in_file_order(tmp_path, capsys):
    p = rules_file(tmp_path / "r", """
        rules:
          - id: loitering
            tags: [a, 7]
            exceptions: {subjects: [蒙K00001]}
            severity: urgent
        """)
    rc, err = check(capsys, str(p))
    assert rc == 1
    assert [e.split(": ", 1)[0] for e in err] == [f"{p}:3:11", f"{p}:4:29", f"{p}:5:15"]
    assert err[0].endswith("`tags` must be a list of non-empty strings")
    assert err[1].endswith("a subject in `exceptions` must be a subject key `type:id` (type "
                           "one of vehicle, person, item, document, code), like vehicle:蒙K00001")


# ------------------------------------------------------------------------- can never fire


@pytest.mark.parametrize("rule,key,at_value,message", [
    ("checkpoint-avoidance", "within: 0s", "0s",
     "within must be at least 1ms: with 0, no sighting at the checkpoint can come after the "
     "pass at the bayonet and by the deadline: every pass towards a checkpoint would alert"),
    ("linked-hit", "window: 0s", "0s",
     "window must be at least 1ms: no later sighting of the vehicle lies within 0 of the link"),
    ("loitering", "window: 0s", "0s",
     "window must be at least 1ms: a window of 0 only holds crossings at the very same instant"),
    ("watchlist-hit", "lists: []", "[]",
     "`lists` is empty: no entry can match, the rule never fires (leave `lists` out for every "
     "list but permit)"),
    ("watchlist-hit", "lists: [permit]", "[permit",
     "`lists` names only `permit`, whose entries watchlist-hit never matches (rule kind "
     "permit-violation judges them): the rule never fires"),
    ("loitering", "activate: {plan: local-link, min_severity: medium}", "medium}",
     "`min_severity` medium can never be met: loitering alerts are at most low"),
    ("cloned-plate", "activate: {plan: local-link, min_listed: high}", "high}",
     "`min_listed` can never be met: cloned-plate alerts do not carry the subject's watchlist "
     "severity"),
    ("watchlist-hit", "severity: high\n    activate: {plan: local-link, min_severity: critical}",
     "critical}", "`min_severity` critical can never be met: its `severity` is high"),
])
def test_never_fires_on_any_net(copy, capsys, rule, key, at_value, message):
    """A rule added to a copy of the shipped rules: the error is at the value to change."""
    path = copy / "rules.yaml"
    text = path.read_text(encoding="utf-8") + f"\n  - id: extra\n    kind: {rule}\n    {key}\n"
    path.write_text(text, encoding="utf-8")
    line, col = at(text, at_value, text.count(at_value))
    rc, err = check(capsys, str(copy))
    assert (rc, err) == (1, [f"{path}:{line}:{col}: {message}"])


@pytest.mark.parametrize("rule,key,message", [
    ("penetration", "min_crossings: 4",
     "rule 'penetration': min_crossings 4 can never be reached: the longest chain of inward "
     "crossings net 'ordos-sample' allows, each into a child ring of the last, is 3 "
     "(city → core → civic)"),
    ("cloned-plate", "min_km: 500",
     "rule 'cloned-plate': min_km 500 can never be reached: no two sites of net "
     "'ordos-sample' are that far apart (at most 438.6 km, BA11–BA21)"),
    ("convoy", "sites: 93",
     "rule 'convoy': sites 93 can never be reached: net 'ordos-sample' has 92 sites"),
])
def test_never_fires_on_the_sample_net(copy, capsys, rule, key, message):
    path = copy / "rules.yaml"
    name = key.split(":")[0]
    text = path.read_text(encoding="utf-8")
    start = text.index(f"  - id: {rule}\n")
    end = text.index(f"    {name}:", start)
    text = text[:end] + f"    {key}\n" + text[text.index("\n", end) + 1:]
    path.write_text(text, encoding="utf-8")
    line, col = at(text, key)
    rc, err = check(capsys, str(copy))
    assert (rc, err) == (1, [f"{path}:{line}:{col + len(name) + 2}: {message}"])
    # One less and it can: the check is exact.
    n = int(key.split(": ")[1])
    path.write_text(text.replace(key, f"{name}: {n - 1}"), encoding="utf-8")
    assert check(capsys, str(copy))[0] == (1 if rule == "cloned-plate" else 0)


FLAT = """\
net: flat
rings:
  - id: city
sites:
  - id: CP01
    type: checkpoint
    ring: city
    lat: 40.0
    lon: 110.0
  - id: BY01
    type: bayonet
    lat: 40.001
    lon: 110.0
"""


def test_the_shipped_rules_on_a_net_they_cannot_all_fire_on(tmp_path, capsys):
    """A one-ring net of two sites 100 m apart: check says which rules can never fire, and
    where each is written; replay and the worker still run this rule set on this net."""
    net_path = tmp_path / "flat.yaml"
    net_path.write_text(FLAT, encoding="utf-8")
    text = (RULES_DIR / "rules.yaml").read_text(encoding="utf-8")
    rc, err = check(capsys, "--net", str(net_path))
    rules = RULES_DIR / "rules.yaml"
    assert rc == 1
    assert err == [
        f"{rules}:{at(text, 'min_crossings: 2')[0]}:20: rule 'penetration': min_crossings 2 "
        "can never be reached: the longest chain of inward crossings net 'flat' allows, each "
        "into a child ring of the last, is 1 (city)",
        f"{rules}:{at(text, 'id: checkpoint-avoidance')[0]}:9: rule 'checkpoint-avoidance': "
        "net 'flat' has no bayonet with `approaches` (on the road to a checkpoint): "
        "checkpoint-avoidance can never fire",
        f"{rules}:{at(text, 'min_km: 5')[0]}:13: rule 'cloned-plate': min_km 5 can never be "
        "reached: no two sites of net 'flat' are that far apart (at most 0.1 km, CP01–BY01)",
        f"{rules}:{at(text, 'sites: 3')[0]}:12: rule 'convoy': sites 3 can never be reached: "
        "net 'flat' has 2 sites",
    ]
    load_rules(str(RULES_DIR)).check_against(load_net_text(FLAT, "flat.yaml"))


# ------------------------------------------------------------------------- names on the net


def test_exceptions_naming_an_unknown_site(copy, capsys):
    path = copy / "rules.yaml"
    text = edit(path, "  - id: loitering\n",
                "  - id: loitering\n    exceptions:\n      sites: [CP03, CP99]\n")
    line, col = at(text, "CP99")
    rc, err = check(capsys, str(copy))
    assert (rc, err) == (1, [f"{path}:{line}:{col}: rule 'loitering': `exceptions` names "
                             "unknown site 'CP99' (not a site of net 'ordos-sample')"])
    # on the given net: CP03 is not a site of the flat one
    net_path = copy.parent / "flat.yaml"
    net_path.write_text(FLAT, encoding="utf-8")
    rc, err = check(capsys, str(copy), "--net", str(net_path))
    assert f"{path}:{line}:{col - 6}: rule 'loitering': `exceptions` names unknown site " \
           "'CP03' (not a site of net 'flat')" in err


def test_the_net_is_checked_as_it_is(capsys):
    assert check(capsys, "--net", str(NET_PATH), str(RULES_DIR))[0] == 0
