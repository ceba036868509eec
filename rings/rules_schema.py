"""The JSON Schema of a rules-directory YAML file: `engine`, `rules` and `plans`.

Generated from the code's own declarations (each rule kind's `params`, ENGINE_PARAMS, the
reserved rule keys, the plan, scope and `activate` keys and the plans' defaults), so it
cannot drift from what `rings rules check` accepts: a key the code gains without a schema
fragment here makes schema() fail. `rings rules schema` prints it; the copy shipped in
rings/schemas/rules.schema.json is checked against it by a unit test. After changing a
declaration, regenerate:

    .venv/bin/rings rules schema > rings/schemas/rules.schema.json

Draft-07, not 2020-12 like the record schemas: editors (the YAML language server behind
VS Code's YAML extension) validate and complete with draft-07. A rule's parameters depend
on its kind, which defaults to its id: one `if`/`then` per kind picks them, so an editor
completes and checks `crossings` under `id: loitering` as under `kind: loitering`.

The schema says what one file may say. What needs the whole rule set or the net (a rule id
or plan id used twice across files, a plan no file declares, unknown rings and sites, a rule
that can never fire) only `rings rules check` knows.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import Any

from .detectors import REGISTRY
from .detectors.base import Detector
from .models import SEVERITIES, SUBJECT_TYPES
from .params import Param
from .plans import ACTIVATE_KEYS, PLAN_KEYS, SCOPE_KEYS, SCOPE_OPTIONS, \
    SITE_TYPES, Plan
from .ruleset import ENGINE_PARAMS, EXCEPTION_KEYS, RESERVED, TOP_KEYS
from .timefmt import format_duration

SCHEMA_ID = "https://rings.example/schemas/rules.schema.json"

# What parse_duration reads: a number with a unit, or a bare number of seconds.
DURATION_PATTERN = r"^\+?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?(ms|s|m|h|d)$"
ZERO_DURATION = r"^\+?(0+\.?0*|\.0+)([eE][+-]?\d+)?(ms|s|m|h|d)$"
UTC_OFFSET_PATTERN = r"^([+-]([01]\d|2[0-3]):[0-5]\d|[Zz])$"
SUBJECT_KEY_PATTERN = rf"^({'|'.join(SUBJECT_TYPES)}):.+$"
DURATION_HINT = "a duration like 90s, 15m, 2h or 1d, or a number of seconds"


def duration(min_ms: float | None, description: str) -> dict[str, Any]:
    """A duration of at least `min_ms` (only 0 and 1 ms are expressible as patterns)."""
    if min_ms not in (None, 0, 1):      # pragma: no cover - a declaration to extend for
        raise AssertionError(f"durations at least {min_ms} ms: extend rules_schema.duration")
    out: dict[str, Any] = {"type": ["string", "number"], "pattern": DURATION_PATTERN,
                           "description": f"{description} ({DURATION_HINT})"}
    if min_ms:
        out["exclusiveMinimum"] = 0
        out["not"] = {"type": "string", "pattern": ZERO_DURATION}
    else:
        out["minimum"] = 0
    return out


def param(p: Param) -> dict[str, Any]:
    """The schema of one declared parameter."""
    k = p.kind
    if k == "duration":
        out = duration(p.min, p.help)
    elif k == "opt-duration":
        out = duration(p.min, p.help)
        out["type"] = [*out["type"], "null"]
        out["description"] += "; null: no bound"
    else:
        out = {"description": p.help}
        if k == "int":
            out["type"] = "integer"
        elif k == "float":
            out["type"] = "number"
        elif k == "bool":
            out["type"] = "boolean"
        elif k == "str":
            out["type"] = "string"
            if p.choices:
                out["enum"] = list(p.choices)
        elif k == "str-list":
            out.update(type="array", items={"type": "string"})
        elif k == "utc-offset":
            out.update(type="string", pattern=UTC_OFFSET_PATTERN)
        else:
            raise AssertionError(f"parameter kind {k!r}: extend rules_schema.param")
        if p.min is not None and k in ("int", "float"):
            out["minimum"] = p.min
    if p.default is not None:
        out["default"] = p.default
    return out


def _only(keys: tuple[str, ...], frags: dict[str, dict[str, Any]], what: str
          ) -> dict[str, dict[str, Any]]:
    """The fragments for exactly the keys the code declares, in its order."""
    if set(frags) != set(keys):
        raise AssertionError(f"{what}: the code has {sorted(keys)}, the schema "
                             f"{sorted(frags)}: update rings/rules_schema.py")
    return {k: frags[k] for k in keys}


def _names(what: str) -> dict[str, Any]:
    return {"type": "array", "items": {"type": "string", "minLength": 1}, "description": what}


def _activate() -> dict[str, Any]:
    sev = list(SEVERITIES)
    keys = _only(ACTIVATE_KEYS, {
        "plan": {"type": "string", "minLength": 1, "description": "the id of the plan"},
        "min_severity": {"enum": sev, "description": "the alert's severity at least this"},
        "min_listed": {"enum": sev, "description":
                       "the subject's watchlist severity at least this"},
        "innermost": {"type": "boolean", "default": False, "description":
                      "the alert's zone is a ring with no child rings"},
    }, "activate keys")
    return {"description": "start a lockdown plan on the rule's alerts that meet the "
                           "conditions (docs/plans.md): a plan id, or a mapping",
            "anyOf": [{"type": "string", "minLength": 1},
                      {"type": "object", "properties": keys, "required": ["plan"],
                       "additionalProperties": False}]}


def _exceptions() -> dict[str, Any]:
    keys = _only(EXCEPTION_KEYS, {
        "subjects": {"type": "array", "description": "subject keys `type:id`, e.g. "
                     "vehicle:蒙K00001: the rule drops alerts whose subject is one of them",
                     "items": {"type": "string", "pattern": SUBJECT_KEY_PATTERN}},
        "sites": _names("site ids: the rule drops alerts whose `site` is one of them"),
    }, "exceptions keys")
    return {"type": "object", "properties": keys, "additionalProperties": False,
            "description": "subjects and sites this rule ignores"}


def _rule_keys(kinds: list[str]) -> dict[str, dict[str, Any]]:
    return _only(RESERVED, {
        "id": {"type": "string", "minLength": 1, "description":
               "the rule's unique id, on every alert as `rule`; also its kind when `kind` "
               "is left out"},
        "kind": {"enum": kinds, "description": "the rule kind (default: the id), to run a "
                 "kind again under another id with other parameters"},
        "enabled": {"type": "boolean", "default": True,
                    "description": "false: the rule is checked but does not run"},
        "severity": {"enum": list(SEVERITIES),
                     "description": "overrides the severity the rule would give"},
        "description": {"type": "string", "description": "for people"},
        "tags": {"type": "array", "items": {"type": "string", "minLength": 1},
                 "description": "labels carried on every alert of the rule as `tags`"},
        "activate": _activate(),
        "exceptions": _exceptions(),
    }, "reserved rule keys")


def _summary(cls: type[Detector]) -> str:
    doc = sys.modules[cls.__module__].__doc__ or cls.kind
    return " ".join(doc.strip().split("\n\n")[0].split())


def _kind_is(kind: str) -> dict[str, Any]:
    """A rule of this kind: `kind: <kind>`, or no `kind` and `id: <kind>`."""
    return {"anyOf": [{"properties": {"kind": {"const": kind}}, "required": ["kind"]},
                      {"properties": {"id": {"const": kind}}, "required": ["id"],
                       "not": {"required": ["kind"]}}]}


def _plan(plan_defaults: dict[str, Any]) -> dict[str, Any]:
    def deadline(what: str) -> dict[str, Any]:
        return duration(1, what)

    lasts = deadline("an activation nobody stands down ends by itself after this")
    lasts["default"] = format_duration(plan_defaults["lasts_ms"])
    keys = _only(PLAN_KEYS, {
        "id": {"type": "string", "minLength": 1, "maxLength": 100,
               "description": "the plan's unique id, used in commands and on every record"},
        "description": {"type": "string", "description": "for people"},
        "scope": {"$ref": "#/definitions/scope"},
        "types": {"description": "the types of site ordered",
                  "default": list(plan_defaults["types"]),
                  "anyOf": [{"enum": list(SITE_TYPES)},
                            {"type": "array", "items": {"enum": list(SITE_TYPES)},
                             "minItems": 1}]},
        "action": {"type": "string", "minLength": 1, "default": plan_defaults["action"],
                   "description": "what the orders tell the sites to do"},
        "respond": deadline("every ordered site has acknowledged by then, from activation"),
        "close": deadline("every ordered site has closed by then, from activation "
                          "(not before `respond`)"),
        "lasts": lasts,
        "escalate": {"enum": list(SEVERITIES), "default": plan_defaults["escalate"],
                     "description": "severity of the plan-overdue alert"},
    }, "plan keys")
    return {"type": "object", "properties": keys, "required": ["id", "scope", "respond",
                                                                "close"],
            "additionalProperties": False}


def _scope() -> dict[str, Any]:
    keys = _only(SCOPE_KEYS + SCOPE_OPTIONS, {
        "within_km": {"type": "number", "exclusiveMinimum": 0, "maximum": 20_000,
                      "description": "the sites within this many km of the activation's "
                                     "site (the command must name one)"},
        "at_least": {"type": "integer", "minimum": 0, "default": 0, "description":
                     "with within_km: fewer that close? the nearest make up this number"},
        "rings": {"description": "the sites on these rings: a list of ring ids, or `root` "
                                 "(every root ring)",
                  "anyOf": [{"const": "root"},
                            {"type": "array", "items": {"type": "string", "minLength": 1},
                             "minItems": 1}]},
        "sites": {"type": "array", "items": {"type": "string", "minLength": 1},
                  "minItems": 1, "description": "these sites"},
    }, "scope keys")
    return {"type": "object", "description": "exactly one of within_km, rings, sites",
            "properties": keys, "additionalProperties": False,
            "oneOf": [{"required": [k]} for k in SCOPE_KEYS],
            "dependencies": {o: ["within_km"] for o in SCOPE_OPTIONS}}


def schema() -> dict[str, Any]:
    """The schema of one YAML file of a rules directory."""
    kinds = sorted(REGISTRY)
    rule_keys = _rule_keys(kinds)
    defs: dict[str, Any] = {}
    conditions: list[dict[str, Any]] = []
    for kind in kinds:
        cls = REGISTRY[kind]
        clash = [p.name for p in cls.params if p.name in RESERVED]
        if clash:
            raise AssertionError(f"{kind}: parameters {clash} clash with reserved rule keys")
        defs[f"rule.{kind}"] = {
            "description": _summary(cls),
            "properties": {**{k: {} for k in rule_keys},
                           **{p.name: param(p) for p in cls.params}},
            "additionalProperties": False}
        conditions.append({"if": _kind_is(kind), "then": {"$ref": f"#/definitions/rule.{kind}"}})
    conditions.append({"if": {"not": {"required": ["kind"]}},
                       "then": {"properties": {"id": {
                           "enum": kinds,
                           "description": "without `kind`, the id must name a rule kind"}}}})
    defs["rule"] = {"type": "object", "required": ["id"], "properties": rule_keys,
                    "allOf": conditions}
    plan_defaults = {f.name: f.default for f in dataclasses.fields(Plan)
                     if f.default is not dataclasses.MISSING}
    defs["plan"] = _plan(plan_defaults)
    defs["scope"] = _scope()
    top = _only(TOP_KEYS, {
        "engine": {"type": ["object", "null"], "description": "engine settings",
                   "properties": {p.name: param(p) for p in ENGINE_PARAMS},
                   "additionalProperties": False},
        "rules": {"type": ["array", "null"], "items": {"$ref": "#/definitions/rule"},
                  "description": "rules; each names its kind (by `kind`, or by its id)"},
        "plans": {"type": "array", "items": {"$ref": "#/definitions/plan"},
                  "description": "lockdown plans (docs/plans.md)"},
        "version": {"type": ["string", "number"], "description":
                    "a free label for people; the rules version stamped on alerts is a "
                    "hash of the files' content"},
    }, "top-level keys")
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$id": SCHEMA_ID,
        "title": "rings rules file",
        "description": "One YAML file of a rings rules directory (rules.yaml, *.rules.yaml, "
                       "plans.yaml, *.plans.yaml): engine settings, rules, lockdown plans. "
                       "Generated by `rings rules schema` from the code's declarations; "
                       "docs/rules.md and docs/plans.md say what each key means.",
        "type": "object",
        "properties": top,
        "additionalProperties": False,
        "definitions": defs,
    }


def schema_text() -> str:
    """The schema as shipped: JSON, two-space indent, UTF-8, final newline."""
    return json.dumps(schema(), indent=2, ensure_ascii=False) + "\n"
