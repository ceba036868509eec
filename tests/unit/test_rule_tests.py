"""`rings rules test`: the shipped rules pass their tests in rules/tests/ (run through the
command line, as CI and rule authors run them), and the runner itself reports what it must:
a failing case by name and file:line with expected against got, a broken file at
file:line:col with exit 2, and `expect: []` catches any alert."""

from __future__ import annotations

import io
import textwrap
from pathlib import Path

import pytest

from rings.cli import main
from rings.decode import decode_sighting
from rings.ruletest import load_file, run_files
from rings.scenarios import RULES

from .support import NET_PATH, RULES_DIR

TESTS_DIR = RULES_DIR / "tests"
SHIPPED = sorted(TESTS_DIR.glob("*.yaml"))


# ------------------------------------------------------------------------- shipped tests

def test_every_default_rule_has_a_test_file():
    assert sorted(p.stem for p in SHIPPED) == sorted(RULES)


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_rule_tests_pass(path: Path, capsys):
    code = main(["rules", "test", str(path)])
    out, err = capsys.readouterr()
    assert code == 0, out + err
    assert "FAIL" not in out and err == ""
    assert out.splitlines()[-1].startswith("ok: 1 files,")


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_tests_cover_positive_near_miss_and_event_time(path: Path):
    """Each file tests its own rule: cases where it fires, near misses where nothing may
    fire, and event-time cases (sightings out of order)."""
    tf = load_file(str(path), default_rules=str(RULES_DIR), default_net=str(NET_PATH))
    rule = path.stem
    positive = [c for c in tf.cases if any(x.rule == rule for x in c.expect)]
    silent = [c for c in tf.cases if not c.expect]
    assert len(positive) >= 3 and len(silent) >= 3, path

    def out_of_order(c) -> bool:
        ts = [decode_sighting(x, tf.net.sites).ts for x in c.lines]
        return any(b < a for a, b in zip(ts, ts[1:]))

    assert sum(out_of_order(c) for c in tf.cases) >= 2, path
    assert any(c.expect_rules is None for c in tf.cases), "at least one case compares every rule"


def test_the_default_is_the_shipped_tests(capsys):
    assert main(["rules", "test", "-q"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"ok: {len(SHIPPED)} files, ")


def test_the_shipped_tests_catch_a_changed_threshold(tmp_path, capsys):
    """Against a copy of the rules with loitering at 3 crossings, the loitering tests fail
    (and the rest still pass): the tests pin the numbers, not just the shapes."""
    (tmp_path / "rules.yaml").write_text(
        (RULES_DIR / "rules.yaml").read_text(encoding="utf-8").replace("crossings: 4",
                                                                       "crossings: 3"),
        encoding="utf-8")
    (tmp_path / "plans.yaml").write_text((RULES_DIR / "plans.yaml").read_text(encoding="utf-8"),
                                         encoding="utf-8")
    code = main(["rules", "test", "-q", "--rules", str(tmp_path), str(TESTS_DIR)])
    out = capsys.readouterr().out
    assert code == 1
    failed = [line for line in out.splitlines() if line.startswith("FAIL ")]
    assert failed and all("loitering.yaml" in line for line in failed), out
    assert "three crossings raise nothing" in out


# ------------------------------------------------------------------------- the runner

CAR = '"vehicle:蒙K3X521"'
HEAD = f"""\
rules: {RULES_DIR}
net: {NET_PATH}
watchlist:
  - {{subject: {CAR}, list: wanted, severity: critical}}
cases:
"""


def write(tmp_path: Path, body: str, name: str = "t.yaml") -> Path:
    p = tmp_path / name
    p.write_text(HEAD + textwrap.dedent(body), encoding="utf-8")
    return p


def run(*paths: Path, **kw) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    rep = run_files([str(p) for p in paths], out, err, default_rules=str(RULES_DIR),
                    default_net=str(NET_PATH), **kw)
    return rep.exit_code, out.getvalue(), err.getvalue()


HIT = """\
  - name: {name}
    sightings:
      - {{id: a1, ts: "2026-11-29T08:00:00+08:00", site: CP01, dir: in, subject: {car}}}
    expect:
      - {{rule: watchlist-hit, subject: {car}, severity: {sev}, ts: "2026-11-29T08:00:00+08:00"}}
"""


def test_a_passing_case(tmp_path):
    p = write(tmp_path, HIT.format(name="wanted car", car=CAR, sev="critical"))
    code, out, err = run(p)
    assert (code, err) == (0, "")
    assert out == f"PASS {p}:6: wanted car\nok: 1 files, 1 cases: 1 passed, 0 failed\n"


def test_a_wrong_expectation_fails_naming_the_case_with_expected_and_got(tmp_path):
    p = write(tmp_path, HIT.format(name="right car", car=CAR, sev="critical")
              + HIT.format(name="wrong severity", car=CAR, sev="high"))
    code, out, err = run(p)
    assert code == 1 and err == ""
    lines = out.splitlines()
    assert lines[0] == f"PASS {p}:6: right car"
    assert lines[1] == f"FAIL {p}:11: wrong severity"
    assert lines[2] == "  compared all rules: 1 expected, 1 raised"
    assert lines[3] == "  missing (expected, not raised):"
    assert lines[4] == (f"    - watchlist-hit vehicle:蒙K3X521 high 2026-11-29T08:00:00.000+08:00"
                        f"  ({p}:15)")
    assert lines[5] == "  unexpected (raised, not expected):"
    assert lines[6].startswith("    + watchlist-hit vehicle:蒙K3X521 critical "
                               "2026-11-29T08:00:00.000+08:00 site=CP01 plan=null: wanted vehicle")
    assert lines[-1] == "FAILED: 1 files, 2 cases: 1 passed, 1 failed"


def test_expect_nothing_catches_an_unexpected_alert(tmp_path):
    p = write(tmp_path, f"""\
      - name: should be silent
        sightings:
          - {{ts: "2026-11-29T08:00:00+08:00", site: CP01, dir: in, subject: {CAR}}}
        expect: []
    """)
    code, out, _ = run(p)
    assert code == 1
    assert f"FAIL {p}:6: should be silent" in out
    assert "  compared all rules: 0 expected, 1 raised" in out
    assert "missing" not in out
    assert "    + watchlist-hit vehicle:蒙K3X521 critical" in out


def test_expect_rules_restricts_the_comparison(tmp_path):
    p = write(tmp_path, f"""\
      - name: only loitering is compared
        sightings:
          - {{ts: "2026-11-29T08:00:00+08:00", site: CP01, dir: in, subject: {CAR}}}
        expect_rules: [loitering]
        expect: []
    """)
    assert run(p)[0] == 0


def test_expectations_are_a_multiset(tmp_path):
    """Two identical expected alerts need two alerts; one is missing."""
    p = write(tmp_path, HIT.format(name="twice", car=CAR, sev="critical")
              + "      - {rule: watchlist-hit, subject: " + CAR
              + ', severity: critical, ts: "2026-11-29T08:00:00+08:00"}\n')
    code, out, _ = run(p)
    assert code == 1
    assert "2 expected, 1 raised" in out and "unexpected" not in out
    assert out.count("    - watchlist-hit vehicle:蒙K3X521 critical") == 1


def test_site_plan_and_related_are_compared_when_given(tmp_path):
    p = write(tmp_path, f"""\
      - name: pinned
        sightings:
          - {{ts: "2026-11-29T08:00:00+08:00", site: CP01, dir: in, subject: {CAR},
             with: ["person:p-1"]}}
        expect:
          - {{rule: watchlist-hit, subject: {CAR}, severity: critical,
             ts: "2026-11-29T00:00:00Z", site: CP01, plan: null, related: ["person:p-1"]}}
      - name: wrong plan
        sightings:
          - {{ts: "2026-11-29T08:00:00+08:00", site: CP01, dir: in, subject: {CAR}}}
        expect:
          - {{rule: watchlist-hit, subject: {CAR}, severity: critical,
             ts: "2026-11-29T08:00:00+08:00", plan: local-link}}
    """)
    code, out, _ = run(p)
    assert code == 1
    assert f"PASS {p}:6: pinned" in out
    assert f"FAIL {p}:13: wrong plan" in out
    assert "plan=local-link" in out and "plan=null" in out


def test_files_relative_to_the_test_file(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "day.jsonl").write_text(
        '{"id": "x1", "ts": "2026-11-29T08:00:00+08:00", "site": "CP01", "dir": "in", '
        '"subject": {"type": "person", "id": "p-1"}}\n\n', encoding="utf-8")
    (tmp_path / "in" / "wl.jsonl").write_text(
        '{"subject": {"type": "person", "id": "p-1"}, "list": "fugitive", "severity": "low"}\n',
        encoding="utf-8")
    p = tmp_path / "t.yaml"
    p.write_text(textwrap.dedent("""\
        cases:
          - name: from files
            sightings_file: in/day.jsonl
            watchlist_file: in/wl.jsonl
            expect:
              - {rule: watchlist-hit, subject: {type: person, id: p-1}, severity: low,
                 ts: "2026-11-29T08:00:00+08:00", site: CP01}
    """), encoding="utf-8")
    code, out, err = run(p)                 # rules and net: the defaults
    assert (code, err) == (0, ""), out


def broken(tmp_path: Path, body: str) -> tuple[int, str, str, Path]:
    p = write(tmp_path, body)
    code, out, err = run(p)
    return code, out, err, p


def test_a_yaml_syntax_error_is_reported_at_its_line(tmp_path):
    code, out, err, p = broken(tmp_path, """\
      - name: x
        sightings: [ {ts: 1
    """)
    assert code == 2
    assert err.startswith(f"{p}:8:1: YAML syntax error")
    assert out.splitlines() == [f"BROKEN {p}: not run",
                                "FAILED: 1 files, 0 cases: 0 passed, 0 failed, 1 files broken"]


Q = '"'


def at(p: Path, line: int, text: str, nth: int = 1) -> str:
    """`file:line:col` of the nth `text` on a line of the file."""
    s = p.read_text(encoding="utf-8").splitlines()[line - 1]
    col = -1
    for _ in range(nth):
        col = s.index(text, col + 1)
    return f"{p}:{line}:{col + 1}"


def test_a_duplicate_key_is_reported_at_its_line(tmp_path):
    code, _, err, p = broken(tmp_path, """\
      - name: x
        name: y
        sightings: []
        expect: []
    """)
    assert code == 2
    assert err == f"{at(p, 7, 'name')}: duplicate key 'name' (first defined at line 6)\n"


def test_every_error_of_a_broken_file_at_its_position(tmp_path):
    code, _, err, p = broken(tmp_path, f"""\
      - name: bad things
        sightings:
          - {{ts: "2026-11-29T08:00:00+08:00", site: NOPE, subject: {CAR}}}
          - {{ts: "2026-11-29T08:00:00", site: CP01, subject: {CAR}}}
        expect:
          - {{rule: watchlist-hit, subject: {CAR}, severity: severe, ts: "2026-11-29T08:00:00+08:00"}}
          - {{rule: watchlist-hit, subject: "lorry:x", severity: high, ts: "yesterday"}}
        expct: []
      - name: bad things
        sightings: []
    """)
    assert code == 2
    offset = ' (write event time with its offset, e.g. "2026-11-29T08:00:00+08:00")'
    assert err.splitlines() == [
        f"{at(p, 8, 'NOPE')}: invalid sighting: unknown-site: site is not in the net",
        f"{at(p, 9, Q + '2026')}: invalid sighting: bad-ts: ts is not RFC 3339{offset}",
        f"{at(p, 11, 'severe')}: `severity` must be one of low, medium, high, critical",
        f"{at(p, 12, Q + 'lorry')}: `subject` must be `type:id` or {{type, id}}, type one of "
        "vehicle, person, item, document, code",
        f"{at(p, 12, Q + 'yesterday')}: `ts`: ts is not RFC 3339{offset}",
        f"{at(p, 13, 'expct')}: unknown key 'expct' in a case (expected: name, description, "
        "watchlist, watchlist_file, sightings, sightings_file, expect, expect_rules, flush)",
        f"{at(p, 14, 'name')}: a case needs `expect`: the alerts it must raise ([] for none)",
        f"{at(p, 14, 'bad')}: duplicate case name 'bad things' (first at line 6)",
    ]


def test_an_expected_rule_outside_expect_rules_is_an_error(tmp_path):
    code, _, err, p = broken(tmp_path, f"""\
      - name: x
        sightings: []
        expect_rules: [loitering]
        expect:
          - {{rule: watchlist-hit, subject: {CAR}, severity: high, ts: "2026-11-29T08:00:00+08:00"}}
    """)
    assert code == 2
    assert err == (f"{at(p, 10, 'watchlist-hit')}: rule 'watchlist-hit' is not in this case's "
                   "expect_rules (loitering)\n")


def test_a_broken_file_does_not_stop_the_others(tmp_path):
    good = write(tmp_path, HIT.format(name="fine", car=CAR, sev="critical"), "a.yaml")
    bad = tmp_path / "b.yaml"
    bad.write_text("cases: {}\n", encoding="utf-8")
    code, out, err = run(good, bad)
    assert code == 2
    assert f"PASS {good}:6: fine" in out
    assert err == f"{bad}:1:8: `cases` must be a non-empty list of test cases\n"


def test_a_rule_missing_from_the_rule_set_is_pointed_out(tmp_path):
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "rules.yaml").write_text("rules:\n  - id: loitering\n", encoding="utf-8")
    p = write(tmp_path, HIT.format(name="hit", car=CAR, sev="critical"))
    code, out, _ = run(p, rules=str(rules))
    assert code == 1
    assert "note: rule 'watchlist-hit' is not in the rule set under test" in out


def test_cli_exit_codes(tmp_path, capsys):
    ok = write(tmp_path, HIT.format(name="ok", car=CAR, sev="critical"), "ok.yaml")
    fail = write(tmp_path, HIT.format(name="fail", car=CAR, sev="low"), "fail.yaml")
    assert main(["rules", "test", str(ok)]) == 0
    assert main(["rules", "test", str(fail)]) == 1
    assert main(["rules", "test", str(tmp_path / "missing.yaml")]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'missing.yaml'}: cannot read:" in err
