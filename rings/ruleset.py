"""Rule sets: the YAML a rule author writes, validated into detector instances.

A rules directory holds `rules.yaml` (and any `*.rules.yaml`) and the lockdown plans
(`plans.yaml`, `*.plans.yaml`). Each rule names a kind (defaulting to its id, so the
contract's default rules are written by id alone); every other key of a rule is a parameter
of that kind, checked against its declaration. A rule may `activate` a plan.
"""

from __future__ import annotations

import glob
import hashlib
import os
from dataclasses import dataclass, field
from typing import Any

import orjson

from .detectors import REGISTRY, Detector
from .detectors.base import Exceptions
from .errors import RuleError, SourceErrors
from .models import SEVERITIES, SEVERITY_RANK, SUBJECT_TYPES
from .net import Net
from .params import Param
from .plans import Plan, parse_activation, parse_plans
from .yamlsrc import LDict, LList, load_yaml_file, unknown_keys

TOP_KEYS = ("engine", "rules", "plans", "version")
RESERVED = ("id", "kind", "enabled", "severity", "description", "tags", "activate",
            "exceptions")
EXCEPTION_KEYS = ("subjects", "sites")
ENGINE_PARAMS = (
    Param("lateness", "duration", "2m",
          "how late (event time) a sighting may arrive and still count as in order", min=0),
    Param("dedupe_window", "duration", "2h",
          "how long a sighting id is remembered to refuse duplicates", min=0),
    Param("utc_offset", "utc-offset", "Z",
          "the UTC offset of the wall-clock times plans write (orders, status, audit)"),
    # Event-time bounds around the clock at ingest (rings.decode.Limits; replay: `--now`).
    Param("max_skew", "opt-duration", "1d",
          "a sighting stamped further ahead of the worker's clock is refused as future-ts",
          min=0),
    Param("max_age", "opt-duration", None,
          "a sighting stamped further behind the worker's clock is refused as too-old", min=0),
)


@dataclass(slots=True)
class RuleSet:
    detectors: list[Detector]
    lateness_ms: int
    dedupe_ms: int
    version: str
    files: list[str] = field(default_factory=list)
    plans: dict[str, Plan] = field(default_factory=dict)
    utc_offset_min: int = 0
    max_skew_ms: int | None = 86_400_000    # engine.max_skew, max_age (None: no bound)
    max_age_ms: int | None = None

    def by_id(self, rule_id: str) -> Detector | None:
        return next((d for d in self.detectors if d.rule_id == rule_id), None)

    def check_against(self, net: Net) -> None:
        """Raise SourceErrors for what only the net can show (plans naming unknown rings
        or sites, plans that would order nothing, exceptions naming unknown sites)."""
        errors = [e for p in self.plans.values() for e in p.check_against(net)]
        for d in self.detectors:
            x = d.exceptions
            for site in sorted(x.sites if x is not None else ()):
                if site not in net.sites:
                    errors.append(RuleError(
                        f"rule {d.rule_id!r}: `exceptions` names unknown site {site!r} (not "
                        f"a site of net {net.name!r})", x.file, *x.where.get("site:" + site,
                                                                   (None, None))))
        if errors:
            raise SourceErrors(errors)

    def never_fire(self, net: Net) -> list[RuleError]:
        """Rules that can never fire on this net (`rings rules check` reports them as
        errors; the worker and replay still run such a rule set: the default rules must run
        on any net, though some of them need rings or approach bayonets to ever fire)."""
        errors = []
        for d in self.detectors:
            for key, msg in d.check_net(net):
                pos = d.where.get(key or "", d.where.get("", (None, None)))
                errors.append(RuleError(f"rule {d.rule_id!r}: {msg}", d.file, *pos))
        return errors


def in_order(errors: list[RuleError], files: list[str]) -> list[RuleError]:
    """Errors in the order of the files, then of their positions (as a compiler lists
    them)."""
    rank = {f: i for i, f in enumerate(files)}
    return sorted(errors, key=lambda e: (rank.get(e.file, len(rank)), e.line or 0, e.col or 0))


def rule_files(path: str) -> list[str]:
    if os.path.isfile(path):
        return [path]
    files = sorted(set(glob.glob(os.path.join(path, "rules.yaml"))
                       + glob.glob(os.path.join(path, "*.rules.yaml"))
                       + glob.glob(os.path.join(path, "plans.yaml"))
                       + glob.glob(os.path.join(path, "*.plans.yaml"))))
    return files


def load_rules(path: str) -> RuleSet:
    files = rule_files(path)
    if not files:
        raise SourceErrors([RuleError("no rules.yaml or *.rules.yaml here", path)])
    docs = [(f, load_yaml_file(f)) for f in files]
    return build_rules(docs)


def build_rules(docs: list[tuple[str, Any]]) -> RuleSet:
    errors: list[RuleError] = []
    detectors: list[Detector] = []
    seen: dict[str, tuple[str, int]] = {}
    engine: dict[str, Any] = {p.name: p.default_value() for p in ENGINE_PARAMS}
    canon: list[Any] = []
    plans: dict[str, Plan] = {}
    plan_seen: dict[str, tuple[str, int]] = {}

    def err(msg: str, file: str, pos: tuple[int, int] | None) -> None:
        errors.append(RuleError(msg, file, *(pos or (None, None))))

    for file, doc in docs:
        if doc is None:
            continue
        if not isinstance(doc, LDict):
            err("a rules file must be a mapping with `rules:` and/or `plans:` (and optionally "
                "`engine:`)", file, (1, 1))
            continue
        canon.append(_plain(doc))
        for k in doc:
            if k not in TOP_KEYS:
                err(f"unknown top-level key {k!r} (expected rules, plans, engine)", file,
                    doc.where(k))
        if "plans" in doc:
            for plan in parse_plans(doc["plans"], file, err, plan_seen):
                plans[plan.id] = plan
        eng = doc.get("engine")
        if eng is not None:
            if not isinstance(eng, LDict):
                err("`engine` must be a mapping", file, doc.where("engine", True))
            else:
                specs = {p.name: p for p in ENGINE_PARAMS}
                for k, v in eng.items():
                    spec = specs.get(k)
                    if spec is None:
                        err(f"unknown engine setting {k!r} (expected: {', '.join(specs)})",
                            file, eng.where(k))
                        continue
                    try:
                        engine[k] = spec.parse(v)
                    except ValueError as e:
                        err(str(e), file, eng.where(k, True))
        rules = doc.get("rules")
        if rules is None:
            continue
        if not isinstance(rules, LList):
            err("`rules` must be a list of rules", file, doc.where("rules", True))
            continue
        for i, r in enumerate(rules):
            pos = rules.where(i)
            if not isinstance(r, LDict):
                err("a rule must be a mapping with at least an id", file, pos)
                continue
            d = _build_rule(r, file, pos, err, seen)
            if d is not None:
                detectors.append(d)

    for d in detectors:
        a = d.activation
        if a is not None and a.plan not in plans:
            errors.append(RuleError(
                f"rule {d.rule_id!r} activates unknown plan {a.plan!r} (known: "
                f"{', '.join(sorted(plans)) or 'none'})", a.file, a.line, a.col))
    if errors:
        raise SourceErrors(errors)
    version = hashlib.sha256(orjson.dumps(canon, option=orjson.OPT_SORT_KEYS)).hexdigest()[:12]
    return RuleSet(detectors, engine["lateness"], engine["dedupe_window"], version,
                   [f for f, _ in docs], plans, engine["utc_offset"], engine["max_skew"],
                   engine["max_age"])


def _build_rule(r: LDict, file: str, pos: tuple[int, int], err: Any,
                seen: dict[str, tuple[str, int]]) -> Detector | None:
    rid = r.get("id")
    if not isinstance(rid, str) or not rid:
        err("rule `id` must be a non-empty string", file, r.where("id", True) if "id" in r else pos)
        return None
    if rid in seen:
        f0, l0 = seen[rid]
        err(f"duplicate rule id {rid!r} (first at {f0}:{l0})", file, r.where("id", True))
        return None
    seen[rid] = (file, r.where("id", True)[0])
    kind = r.get("kind", rid)
    cls = REGISTRY.get(kind) if isinstance(kind, str) else None
    if cls is None:
        where = r.where("kind", True) if "kind" in r else r.where("id", True)
        err(f"unknown rule kind {kind!r} (known: {', '.join(sorted(REGISTRY))})", file, where)
        return None
    ok = True
    enabled = r.get("enabled", True)
    if not isinstance(enabled, bool):
        err("`enabled` must be true or false", file, r.where("enabled", True))
        ok = False
    severity = r.get("severity")
    if severity is not None and severity not in SEVERITIES:
        err(f"`severity` must be one of {', '.join(SEVERITIES)}", file, r.where("severity", True))
        ok = False
    if "description" in r and not isinstance(r["description"], str):
        err("`description` must be text", file, r.where("description", True))
        ok = False
    tags = r.get("tags", [])
    if not isinstance(tags, list) or any(not isinstance(t, str) or not t for t in tags):
        err("`tags` must be a list of non-empty strings", file, r.where("tags", True))
        ok = False
    exceptions = None
    if "exceptions" in r:
        exceptions = _parse_exceptions(r["exceptions"], file, r.where("exceptions", True), err)
        ok = ok and exceptions is not False
    specs = {p.name: p for p in cls.params}
    values: dict[str, Any] = {p.name: p.default_value() for p in cls.params}
    for k, v in r.items():
        if k in RESERVED:
            continue
        spec = specs.get(k)
        if spec is None:
            known = ", ".join(sorted(specs)) or "none"
            err(f"unknown parameter {k!r} for rule kind {kind!r} (its parameters: {known})",
                file, r.where(k))
            ok = False
            continue
        try:
            values[k] = spec.parse(v)
        except ValueError as e:
            err(str(e), file, r.where(k, True))
            ok = False
    activation = None
    if "activate" in r:
        activation = parse_activation(r["activate"], file, r.where("activate", True), err)
        ok = ok and activation is not None
    if not ok:
        return None
    d = cls(rid, values, severity)
    d.file = file
    d.where = {k: r.where(k, True) for k in r}
    d.where[""] = r.where("id", True)
    # Values that are each valid but together (or for this kind) can never fire.
    for key, msg in d.check_params():
        err(msg, file, d.where.get(key or "", d.where[""]))
        ok = False
    if activation is not None and isinstance(r["activate"], LDict):
        ok = _check_activation(d, activation, r["activate"], file, err) and ok
    if not ok or not enabled:
        return None
    d.activation = activation
    d.exceptions = exceptions or None
    d.tags = tuple(tags)
    return d


def _check_activation(d: Detector, a: Any, where: LDict, file: str, err: Any) -> bool:
    """An `activate:` condition the rule's alerts can never meet is an error."""
    ok = True
    said = (d.severity_override,) if d.severity_override else d.severities
    top = max(said, key=SEVERITY_RANK.__getitem__)
    if a.min_severity is not None and SEVERITY_RANK[a.min_severity] > SEVERITY_RANK[top]:
        why = "its `severity` is" if d.severity_override else f"{d.kind} alerts are at most"
        err(f"`min_severity` {a.min_severity} can never be met: {why} {top}", file,
            where.where("min_severity", True))
        ok = False
    if a.min_listed is not None and not d.listed:
        err(f"`min_listed` can never be met: {d.kind} alerts do not carry the subject's "
            "watchlist severity", file, where.where("min_listed", True))
        ok = False
    return ok


def _parse_exceptions(v: Any, file: str, pos: tuple[int, int], err: Any
                      ) -> Exceptions | None | bool:
    """A rule's `exceptions:`: an Exceptions, None if it excepts nothing, False if bad."""
    if not isinstance(v, LDict):
        err("`exceptions` must be a mapping with `subjects` (keys like vehicle:蒙K00001) "
            "and/or `sites` (site ids)", file, pos)
        return False
    ok = unknown_keys(v, EXCEPTION_KEYS, "`exceptions`", file, err)
    found: dict[str, list[str]] = {}
    where: dict[str, tuple[int, int]] = {}
    for k in EXCEPTION_KEYS:
        items = v.get(k, [])
        if not isinstance(items, LList) and items != []:
            err(f"`{k}` must be a list", file, v.where(k, True))
            ok = False
            continue
        for i, x in enumerate(items):
            at = items.where(i) if isinstance(items, LList) else pos
            if k == "sites":
                if not isinstance(x, str) or not x:
                    err("a site in `exceptions` must be a site id", file, at)
                    ok = False
                    continue
                where["site:" + x] = at
            else:
                t, _, i_ = x.partition(":") if isinstance(x, str) else ("", "", "")
                if t not in SUBJECT_TYPES or not i_:
                    err(f"a subject in `exceptions` must be a subject key `type:id` (type one "
                        f"of {', '.join(SUBJECT_TYPES)}), like vehicle:蒙K00001", file, at)
                    ok = False
                    continue
            found.setdefault(k, []).append(x)
    if not ok:
        return False
    if not found:
        return None
    return Exceptions(frozenset(found.get("subjects", ())), frozenset(found.get("sites", ())),
                      file, where)


def _plain(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v
