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
from .errors import RuleError, SourceErrors
from .models import SEVERITIES
from .net import Net
from .params import Param
from .plans import Plan, parse_activation, parse_plans
from .yamlsrc import LDict, LList, load_yaml_file

RESERVED = ("id", "kind", "enabled", "severity", "description", "tags", "activate")
ENGINE_PARAMS = (
    Param("lateness", "duration", "2m",
          "how late (event time) a sighting may arrive and still count as in order", min=0),
    Param("dedupe_window", "duration", "2h",
          "how long a sighting id is remembered to refuse duplicates", min=0),
    Param("utc_offset", "utc-offset", "Z",
          "the UTC offset of the wall-clock times plans write (orders, status, audit)"),
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

    def by_id(self, rule_id: str) -> Detector | None:
        return next((d for d in self.detectors if d.rule_id == rule_id), None)

    def check_against(self, net: Net) -> None:
        """Raise SourceErrors for what only the net can show (plans naming unknown rings
        or sites, plans that would order nothing)."""
        errors = [e for p in self.plans.values() for e in p.check_against(net)]
        if errors:
            raise SourceErrors(errors)


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
            if k not in ("rules", "engine", "version", "plans"):
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
                   [f for f, _ in docs], plans, engine["utc_offset"])


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
    if not ok or not enabled:
        return None
    d = cls(rid, values, severity)
    d.activation = activation
    return d


def _plain(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v
