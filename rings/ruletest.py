"""Rule unit tests (`rings rules test`): given sightings and a watchlist, these alerts.

A test file (YAML) names the rules under test and a net, and lists cases. Each case runs
its sightings through the same core as `rings replay` (one sighting per batch, in the order
written, the watermark moving as in the worker; then, unless `flush: false`, event time runs
on so that every ordered rule has judged and every deadline has fired), and compares the
alerts raised with the ones expected, as multisets of (rule, subject key, severity, ts
instant); an expectation may also pin `site`, `plan` and `related`.

```yaml
rules: ..                  # rules dir or file, relative to this file (default: the shipped rules)
net: ../net.yaml           # default: the sample net
watchlist:                 # default watchlist of the cases (entries as in CONTRACTS.md §3)
  - {subject: "vehicle:蒙K3X521", list: wanted, severity: critical}
cases:
  - name: city then core is high
    sightings:             # or sightings_file: FILE.jsonl
      - {id: p1, ts: "2026-11-29T08:00:00+08:00", site: CP05, dir: in, subject: "vehicle:蒙K3X521"}
      - {id: p2, ts: "2026-11-29T08:45:00+08:00", site: BK06, dir: in, subject: "vehicle:蒙K3X521"}
    expect_rules: [penetration]     # compare only these rules' alerts (default: all)
    expect:                         # [] : nothing at all may fire
      - {rule: penetration, subject: "vehicle:蒙K3X521", severity: high,
         ts: "2026-11-29T08:45:00+08:00", site: BK06, plan: null}
```

Subjects may be written `type:id` or as objects; a sighting's `id` defaults to `s1`, `s2`, ...
(its place in the case). `run_files` reports (and `rings rules test` exits with) 0 when every
case passed, 1 when a case failed, 2 when a file could not be run (each error as
`file:line:col: message`). The format is in docs/rules.md ("rings rules test").
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, TextIO

import orjson

from .decode import sighting_from_obj, watch_entry_from_obj
from .errors import InvalidRecord, SourceError, SourceErrors
from .models import SEVERITIES, SUBJECT_TYPES, Alert, WatchEntry
from .net import Net, load_net
from .replay import replay_lines
from .ruleset import RuleSet, load_rules
from .timefmt import format_ts, parse_ts
from .watchlist import Watchlist, load_watchlist
from .yamlsrc import LDict, LList, load_yaml_file

FILE_KEYS = ("rules", "net", "watchlist", "watchlist_file", "cases", "description")
CASE_KEYS = ("name", "description", "watchlist", "watchlist_file", "sightings",
             "sightings_file", "expect", "expect_rules", "flush")
EXPECT_KEYS = ("rule", "subject", "severity", "ts", "site", "plan", "related")
UNSET: Any = object()          # an optional expectation field that was not written


class TestError(SourceError):
    """A test file is invalid."""

    __test__ = False           # not a pytest class, whatever its name


@dataclass(slots=True)
class Expected:
    rule: str
    subject: str               # subject key
    severity: str
    ts: int
    tz: int
    line: int
    site: Any = UNSET          # str | None | UNSET
    plan: Any = UNSET
    related: Any = UNSET       # sorted tuple of subject keys | UNSET

    @property
    def key(self) -> tuple[str, str, str, int]:
        return self.rule, self.subject, self.severity, self.ts

    def pinned(self) -> int:
        return sum(v is not UNSET for v in (self.site, self.plan, self.related))

    def accepts(self, a: Alert) -> bool:
        return (self.site is UNSET or a.site == self.site) and \
            (self.plan is UNSET or a.plan == self.plan) and \
            (self.related is UNSET or tuple(sorted(r.key for r in a.related)) == self.related)

    def text(self) -> str:
        out = f"{self.rule} {self.subject} {self.severity} {format_ts(self.ts, self.tz)}"
        if self.site is not UNSET:
            out += f" site={_show(self.site)}"
        if self.plan is not UNSET:
            out += f" plan={_show(self.plan)}"
        if self.related is not UNSET:
            out += f" related=[{', '.join(self.related)}]"
        return out


@dataclass(slots=True)
class Case:
    name: str
    file: str
    line: int
    watchlist: Watchlist
    lines: list[bytes]                       # the input sightings, one JSON object each
    expect: list[Expected]
    expect_rules: tuple[str, ...] | None
    flush: bool = True


@dataclass(slots=True)
class TestFile:
    __test__ = False

    path: str
    rules_path: str
    net_path: str
    net: Net
    rules: RuleSet
    cases: list[Case]


@dataclass(slots=True)
class CaseResult:
    case: Case
    got: list[Alert]                         # the alerts compared (after expect_rules)
    missing: list[Expected] = field(default_factory=list)
    unexpected: list[Alert] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.missing and not self.unexpected


# ------------------------------------------------------------------------------ loading

def _show(v: Any) -> str:
    return "null" if v is None else str(v)


def _plain(v: Any) -> Any:
    """YAML values as JSON values: mappings and lists as plain ones, YAML timestamps as
    RFC 3339 text (a timestamp without offset stays without one, and is refused later)."""
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    if isinstance(v, datetime):
        return v.isoformat()
    if isinstance(v, date):
        return v.isoformat()
    return v


def _subject_obj(v: Any) -> Any:
    """`type:id` shorthand to the contract's object; anything else as written."""
    if isinstance(v, str) and ":" in v:
        t, _, i = v.partition(":")
        return {"type": t, "id": i}
    return v


def _subject_key(v: Any) -> str | None:
    v = _subject_obj(_plain(v))
    if isinstance(v, dict) and set(v) == {"type", "id"} and v["type"] in SUBJECT_TYPES \
            and isinstance(v["id"], str) and v["id"]:
        return f"{v['type']}:{v['id']}"
    return None


def _at(d: LDict, detail: str, default: tuple[int, int]) -> tuple[int, int]:
    """Where a decoding error points: the field its detail starts with, if written."""
    head = detail.split(" ", 1)[0].split(".", 1)[0].split("[", 1)[0]
    return d.where(head, True) if head in d else default


def _resolve(base: str, p: str) -> str:
    return p if os.path.isabs(p) else os.path.normpath(os.path.join(os.path.dirname(base), p))


class _Loader:
    """Loads test files, keeping each net and rule set loaded once."""

    def __init__(self, default_rules: str, default_net: str, rules: str | None = None,
                 net: str | None = None) -> None:
        self.default_rules = default_rules
        self.default_net = default_net
        self.rules_override = rules
        self.net_override = net
        self._nets: dict[str, Net] = {}
        self._rules: dict[tuple[str, str], RuleSet] = {}

    def _net(self, path: str) -> Net:
        if path not in self._nets:
            self._nets[path] = load_net(path)
        return self._nets[path]

    def _ruleset(self, path: str, net_path: str, net: Net) -> RuleSet:
        key = (path, net_path)
        if key not in self._rules:
            rs = load_rules(path)
            rs.check_against(net)
            self._rules[key] = rs
        return self._rules[key]

    def load(self, path: str) -> TestFile:
        doc = load_yaml_file(path)
        errors: list[SourceError] = []

        def err(msg: str, pos: tuple[int, int] | None, file: str = path) -> None:
            errors.append(TestError(msg, file, *(pos or (None, None))))

        if not isinstance(doc, LDict):
            raise SourceErrors([TestError("a test file must be a mapping with `cases:` (and "
                                          "optionally rules, net, watchlist)", path, 1, 1)])
        for k in doc:
            if k not in FILE_KEYS:
                err(f"unknown key {k!r} (expected: {', '.join(FILE_KEYS)})", doc.where(k))

        def path_of(key: str, where: LDict) -> str | None:
            v = where.get(key)
            if v is None:
                return None
            if not isinstance(v, str) or not v:
                err(f"`{key}` must be a path (relative to the test file)", where.where(key, True))
                return None
            return _resolve(path, v)

        rules_path = self.rules_override or path_of("rules", doc) or self.default_rules
        net_path = self.net_override or path_of("net", doc) or self.default_net
        # The net and the rules first: sightings are checked against the net's sites.
        try:
            net = self._net(net_path)
            rules = self._ruleset(rules_path, net_path, net)
        except (SourceError, SourceErrors) as e:
            raise SourceErrors(errors + (e.errors if isinstance(e, SourceErrors) else [e])
                               ) from None
        file_wl = self._watchlist(doc, net, err, path_of)
        cases: list[Case] = []
        raw_cases = doc.get("cases")
        if not isinstance(raw_cases, LList) or not raw_cases:
            err("`cases` must be a non-empty list of test cases",
                doc.where("cases", True) if "cases" in doc else doc.where())
            raw_cases = LList()
        names: dict[str, int] = {}
        for i, c in enumerate(raw_cases):
            case = self._case(c, raw_cases.where(i), path, net, file_wl, err, path_of, names)
            if case is not None:
                cases.append(case)
        if errors:
            errors.sort(key=lambda e: (e.file != path, e.file or "", e.line or 0, e.col or 0))
            raise SourceErrors(errors)
        return TestFile(path, rules_path, net_path, net, rules, cases)

    def _watchlist(self, d: LDict, net: Net, err: Any, path_of: Any) -> Watchlist | None:
        """The watchlist a mapping (the file or a case) gives, or None if it gives none."""
        if "watchlist" in d and "watchlist_file" in d:
            err("give `watchlist` or `watchlist_file`, not both", d.where("watchlist_file"))
            return None
        if "watchlist_file" in d:
            p = path_of("watchlist_file", d)
            if p is None:
                return None
            try:
                return load_watchlist(p, net.sites)
            except OSError as e:
                err(f"cannot read watchlist_file {p}: {e.strerror}",
                    d.where("watchlist_file", True))
            except SourceError as e:
                err(e.message, (e.line, None), e.file or p)
            return None
        if "watchlist" not in d:
            return None
        items = d["watchlist"]
        if items is None:
            return Watchlist()
        if not isinstance(items, LList):
            err("`watchlist` must be a list of watchlist entries", d.where("watchlist", True))
            return None
        entries: list[WatchEntry] = []
        for j, e in enumerate(items):
            pos = items.where(j)
            if not isinstance(e, LDict):
                err("a watchlist entry must be a mapping (CONTRACTS.md §3)", pos)
                continue
            obj = _plain(e)
            obj["subject"] = _subject_obj(obj.get("subject"))
            try:
                entries.append(watch_entry_from_obj(obj, net.sites))
            except InvalidRecord as x:
                err(f"invalid watchlist entry: {x.reason}: {x.detail}", _at(e, x.detail, pos))
        return Watchlist(entries)

    def _case(self, c: Any, pos: tuple[int, int], path: str, net: Net,
              file_wl: Watchlist | None, err: Any, path_of: Any, names: dict[str, int]
              ) -> Case | None:
        if not isinstance(c, LDict):
            err("a test case must be a mapping with name, sightings and expect", pos)
            return None
        ok = True
        for k in c:
            if k not in CASE_KEYS:
                err(f"unknown key {k!r} in a case (expected: {', '.join(CASE_KEYS)})",
                    c.where(k))
                ok = False
        name = c.get("name")
        if not isinstance(name, str) or not name.strip():
            err("a case needs a `name` (non-empty text)",
                c.where("name", True) if "name" in c else pos)
            ok = False
            name = f"case at line {pos[0]}"
        elif name in names:
            err(f"duplicate case name {name!r} (first at line {names[name]})",
                c.where("name", True))
            ok = False
        else:
            names[name] = pos[0]
        wl = self._watchlist(c, net, err, path_of)
        if wl is None:
            if "watchlist" in c or "watchlist_file" in c:
                ok = False
            wl = file_wl if file_wl is not None else Watchlist()
        lines = self._sightings(c, pos, net, err, path_of)
        ok = ok and lines is not None
        expect_rules: tuple[str, ...] | None = None
        if "expect_rules" in c:
            er = c["expect_rules"]
            if not isinstance(er, list) or not er or \
                    not all(isinstance(x, str) and x for x in er):
                err("`expect_rules` must be a non-empty list of rule ids",
                    c.where("expect_rules", True))
                ok = False
            else:
                expect_rules = tuple(er)
        flush = c.get("flush", True)
        if not isinstance(flush, bool):
            err("`flush` must be true or false", c.where("flush", True))
            ok = False
        expect = self._expect(c, pos, expect_rules, err)
        ok = ok and expect is not None
        if not ok:
            return None
        assert lines is not None and expect is not None
        return Case(name, path, pos[0], wl, lines, expect, expect_rules, flush)

    def _sightings(self, c: LDict, pos: tuple[int, int], net: Net, err: Any, path_of: Any
                   ) -> list[bytes] | None:
        if ("sightings" in c) == ("sightings_file" in c):
            err("a case needs `sightings` (a list) or `sightings_file` (JSON lines), one of "
                "them", c.where("sightings_file") if "sightings" in c else pos)
            return None
        if "sightings_file" in c:
            p = path_of("sightings_file", c)
            if p is None:
                return None
            try:
                with open(p, "rb") as f:
                    raw = f.read().splitlines()
            except OSError as e:
                err(f"cannot read sightings_file {p}: {e.strerror}",
                    c.where("sightings_file", True))
                return None
            lines = []
            for n, line in enumerate(raw, 1):
                line = line.strip()
                if not line:
                    continue
                try:
                    sighting_from_obj(orjson.loads(line), net.sites)
                except orjson.JSONDecodeError as e:
                    err(f"invalid sighting: bad-json: {e}", (n, None), p)
                    continue
                except InvalidRecord as e:
                    err(f"invalid sighting: {e.reason}: {e.detail}", (n, None), p)
                    continue
                lines.append(line)
            return lines
        items = c["sightings"]
        if items is None:
            return []
        if not isinstance(items, LList):
            err("`sightings` must be a list of sightings", c.where("sightings", True))
            return None
        lines = []
        ok = True
        for j, s in enumerate(items):
            spos = items.where(j)
            if not isinstance(s, LDict):
                err("a sighting must be a mapping (CONTRACTS.md §2)", spos)
                ok = False
                continue
            obj = _plain(s)
            obj.setdefault("id", f"s{j + 1}")
            obj["subject"] = _subject_obj(obj.get("subject"))
            if isinstance(obj.get("with"), list):
                obj["with"] = [_subject_obj(w) for w in obj["with"]]
            try:
                sighting_from_obj(obj, net.sites)
            except InvalidRecord as e:
                hint = ""
                if e.reason == "bad-ts":
                    hint = ' (write event time with its offset, e.g. "2026-11-29T08:00:00+08:00")'
                err(f"invalid sighting: {e.reason}: {e.detail}{hint}", _at(s, e.detail, spos))
                ok = False
                continue
            lines.append(orjson.dumps(obj))
        return lines if ok else None

    def _expect(self, c: LDict, pos: tuple[int, int], expect_rules: tuple[str, ...] | None,
                err: Any) -> list[Expected] | None:
        if "expect" not in c:
            err("a case needs `expect`: the alerts it must raise ([] for none)", pos)
            return None
        items = c["expect"]
        if items is None:
            items = LList()
        if not isinstance(items, LList):
            err("`expect` must be a list of alerts ([] for none)", c.where("expect", True))
            return None
        out: list[Expected] = []
        ok = True
        for j, e in enumerate(items):
            epos = items.where(j)
            x = self._one_expected(e, epos, expect_rules, err)
            if x is None:
                ok = False
            else:
                out.append(x)
        return out if ok else None

    def _one_expected(self, e: Any, pos: tuple[int, int],
                      expect_rules: tuple[str, ...] | None, err: Any) -> Expected | None:
        if not isinstance(e, LDict):
            err("an expected alert must be a mapping with rule, subject, severity and ts", pos)
            return None
        ok = True
        for k in e:
            if k not in EXPECT_KEYS:
                err(f"unknown key {k!r} in an expected alert (expected: "
                    f"{', '.join(EXPECT_KEYS)})", e.where(k))
                ok = False
        for k in ("rule", "subject", "severity", "ts"):
            if k not in e:
                err(f"an expected alert needs `{k}`", pos)
                ok = False
        if not ok:
            return None
        rule = e["rule"]
        if not isinstance(rule, str) or not rule:
            err("`rule` must be a rule id", e.where("rule", True))
            ok = False
        elif expect_rules is not None and rule not in expect_rules:
            err(f"rule {rule!r} is not in this case's expect_rules ({', '.join(expect_rules)})",
                e.where("rule", True))
            ok = False
        subject = _subject_key(e["subject"])
        if subject is None:
            err(f"`subject` must be `type:id` or {{type, id}}, type one of "
                f"{', '.join(SUBJECT_TYPES)}", e.where("subject", True))
            ok = False
        sev = e["severity"]
        if sev not in SEVERITIES:
            err(f"`severity` must be one of {', '.join(SEVERITIES)}", e.where("severity", True))
            ok = False
        try:
            ts, tz = parse_ts(_plain(e["ts"]))
        except InvalidRecord as x:
            err(f"`ts`: {x.detail} (write event time with its offset, e.g. "
                '"2026-11-29T08:00:00+08:00")', e.where("ts", True))
            ok = False
            ts, tz = 0, 0
        site = plan = related = UNSET
        for k in ("site", "plan"):
            if k in e:
                v = e[k]
                if v is not None and (not isinstance(v, str) or not v):
                    err(f"`{k}` must be an id, or null for none", e.where(k, True))
                    ok = False
                elif k == "site":
                    site = v
                else:
                    plan = v
        if "related" in e:
            v = e["related"]
            keys = [_subject_key(x) for x in v] if isinstance(v, list) else None
            if keys is None or any(k is None for k in keys):
                err("`related` must be a list of subjects (`type:id` or {type, id})",
                    e.where("related", True))
                ok = False
            else:
                related = tuple(sorted(keys))     # type: ignore[type-var]
        if not ok:
            return None
        assert subject is not None
        return Expected(rule, subject, sev, ts, tz, pos[0], site, plan, related)


def load_file(path: str, *, default_rules: str, default_net: str, rules: str | None = None,
              net: str | None = None) -> TestFile:
    """One test file, validated, with its net and rule set (SourceErrors if broken)."""
    return _Loader(default_rules, default_net, rules, net).load(path)


# ------------------------------------------------------------------------------ running

def run_case(case: Case, net: Net, rules: RuleSet) -> CaseResult:
    """Run one case through the replay core and compare."""
    refused: list[str] = []

    def on_bad(n: int, e: InvalidRecord) -> None:   # inputs were checked when loaded: only
        # a size limit can refuse one here
        refused.append(f"input sighting {n} was refused: {e.reason}: {e.detail}")

    alerts = list(replay_lines(case.lines, net, rules, case.watchlist, batch_size=1,
                               flush=case.flush, on_bad=on_bad))
    if case.expect_rules is not None:
        alerts = [a for a in alerts if a.rule in case.expect_rules]
    res = CaseResult(case, alerts, notes=refused)
    left = list(alerts)
    # The most specific expectations first, so a loose one cannot take the alert a
    # specific one needs.
    for x in sorted(case.expect, key=lambda x: -x.pinned()):
        for n, a in enumerate(left):
            if (a.rule, a.subject.key, a.severity, a.ts) == x.key and x.accepts(a):
                del left[n]
                break
        else:
            res.missing.append(x)
    res.missing.sort(key=lambda x: (x.ts, x.line))
    res.unexpected = sorted(left, key=lambda a: (a.ts, a.rule, a.subject.key))
    if not res.passed:
        have = {d.rule_id for d in rules.detectors}
        named = {x.rule for x in case.expect} | set(case.expect_rules or ())
        for r in sorted(named - have):
            res.notes.append(f"rule {r!r} is not in the rule set under test (disabled, or "
                             f"a typo?)")
    return res


def alert_text(a: Alert) -> str:
    out = (f"{a.rule} {a.subject.key} {a.severity} {format_ts(a.ts, a.tz)} "
           f"site={_show(a.site)} plan={_show(a.plan)}")
    if a.related:
        out += f" related=[{', '.join(r.key for r in a.related)}]"
    return f"{out}: {a.summary}"


def format_result(res: CaseResult, verbose: bool = False) -> str:
    c = res.case
    head = f"{'PASS' if res.passed else 'FAIL'} {c.file}:{c.line}: {c.name}"
    if res.passed and not verbose:
        return head
    scope = ", ".join(c.expect_rules) if c.expect_rules else "all rules"
    lines = [head, f"  compared {scope}: {len(c.expect)} expected, {len(res.got)} raised"]
    if res.missing:
        lines.append("  missing (expected, not raised):")
        lines += [f"    - {x.text()}  ({c.file}:{x.line})" for x in res.missing]
    if res.unexpected:
        lines.append("  unexpected (raised, not expected):")
        lines += [f"    + {alert_text(a)}" for a in res.unexpected]
    if verbose and res.passed:
        lines += [f"    = {alert_text(a)}" for a in res.got]
    lines += [f"  note: {n}" for n in res.notes]
    return "\n".join(lines)


def expand_paths(paths: list[str]) -> list[str]:
    """Files as given; a directory stands for its *.yaml and *.yml files."""
    out: list[str] = []
    for p in paths:
        if os.path.isdir(p):
            out += sorted(glob.glob(os.path.join(p, "*.yaml")) + glob.glob(os.path.join(p, "*.yml")))
        else:
            out.append(p)
    return out


@dataclass(slots=True)
class Report:
    files: int = 0
    broken: int = 0
    passed: int = 0
    failed: int = 0
    results: list[CaseResult] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 2 if self.broken else 1 if self.failed else 0


def run_files(paths: list[str], out: TextIO, err: TextIO, *, default_rules: str,
              default_net: str, rules: str | None = None, net: str | None = None,
              quiet: bool = False, verbose: bool = False) -> Report:
    """What `rings rules test` does: run every case of every file, print PASS/FAIL per case
    (`quiet`: failures only) to `out`, the errors of files that cannot run to `err`, and a
    total line. `rules`/`net` override what the files name."""
    loader = _Loader(default_rules, default_net, rules, net)
    rep = Report()
    files = expand_paths(paths)
    if not files:
        print("rings rules test: no test files", file=err)
        rep.broken += 1
        return rep
    for p in files:
        rep.files += 1
        try:
            tf = loader.load(p)
        except (SourceError, SourceErrors) as e:
            for x in (e.errors if isinstance(e, SourceErrors) else [e]):
                print(str(x), file=err)
            print(f"BROKEN {p}: not run", file=out)
            rep.broken += 1
            continue
        for case in tf.cases:
            res = run_case(case, tf.net, tf.rules)
            rep.results.append(res)
            if res.passed:
                rep.passed += 1
            else:
                rep.failed += 1
            if not (quiet and res.passed):
                print(format_result(res, verbose), file=out)
    total = rep.passed + rep.failed
    msg = f"{rep.files} files, {total} cases: {rep.passed} passed, {rep.failed} failed"
    if rep.broken:
        msg += f", {rep.broken} files broken"
    print(("ok: " if rep.exit_code == 0 else "FAILED: ") + msg, file=out)
    return rep
