"""The JSON Schema of rules and plans files (rings/schemas/rules.schema.json).

It is generated from the code's declarations (rings.rules_schema), so the shipped copy must
be exactly the generated one; the shipped rules and plans must validate; and the schema and
`rings rules check` must agree on what is wrong, file by file.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator

from rings.cli import main
from rings.detectors import REGISTRY
from rings.errors import SourceError, SourceErrors
from rings.ruleset import ENGINE_PARAMS
from rings.rules_schema import schema, schema_text

from .support import RULES_DIR, SCHEMAS, rules_from_text

SHIPPED = SCHEMAS / "rules.schema.json"
REGENERATE = "regenerate it: .venv/bin/rings rules schema > rings/schemas/rules.schema.json"


@pytest.fixture(scope="module")
def validator() -> Draft7Validator:
    s = schema()
    Draft7Validator.check_schema(s)
    return Draft7Validator(s)


def errors(validator: Draft7Validator, doc: Any) -> list[str]:
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)]


def test_the_shipped_schema_is_the_generated_one():
    assert json.loads(SHIPPED.read_text(encoding="utf-8")) == schema(), \
        f"rings/schemas/rules.schema.json is not what the code declares: {REGENERATE}"
    assert SHIPPED.read_text(encoding="utf-8") == schema_text(), REGENERATE


def test_rings_rules_schema_prints_it(capsys):
    assert main(["rules", "schema"]) == 0
    assert json.loads(capsys.readouterr().out) == schema()


@pytest.mark.parametrize("name", ["rules.yaml", "plans.yaml"])
def test_the_shipped_files_validate(validator, name):
    doc = yaml.safe_load((RULES_DIR / name).read_text(encoding="utf-8"))
    assert errors(validator, doc) == []


def test_every_declared_parameter_is_in_it():
    defs = schema()["definitions"]
    for kind, cls in REGISTRY.items():
        props = defs[f"rule.{kind}"]["properties"]
        for p in cls.params:
            assert props[p.name]["description"].startswith(p.help), (kind, p.name)
            if p.default is not None:
                assert props[p.name]["default"] == p.default
    engine = schema()["properties"]["engine"]["properties"]
    assert set(engine) == {p.name for p in ENGINE_PARAMS}
    loitering = defs["rule.loitering"]["properties"]
    assert (loitering["crossings"]["type"], loitering["crossings"]["minimum"]) == ("integer", 2)
    assert defs["rule.convoy"]["properties"]["all_pairs"] == {
        "description": REGISTRY["convoy"].params[3].help, "type": "boolean", "default": False}


# A file both must accept: every rule option, a second rule of a kind, every plan scope.
GOOD = """\
engine:
  lateness: 90s
  dedupe_window: 1d
  utc_offset: "+08:00"
rules:
  - id: watchlist-hit
    exceptions: {subjects: ["vehicle:蒙K00001", "person:p-1"], sites: [CP03]}
    tags: [touch-ring, 触线]
  - id: wanted-only
    kind: watchlist-hit
    lists: [wanted]
    severity: critical
    description: only the wanted list
  - id: loitering
    enabled: false
    crossings: 6
    window: 7200
  - id: penetration
    activate: {plan: airport, min_listed: critical, innermost: true}
  - id: convoy
    gap: 2m
    all_pairs: true
    activate: airport
plans:
  - id: airport
    scope: {sites: [CP03, CP04]}
    types: [checkpoint, bayonet]
    respond: 3m
    close: 8m
    lasts: 12h
    escalate: critical
  - id: near
    scope: {within_km: 30, at_least: 3}
    types: checkpoint
    respond: 5m
    close: 10m
  - id: city
    scope: {rings: root}
    respond: 5m
    close: 10m
"""


def test_a_file_with_every_option_is_good_for_both(validator):
    assert errors(validator, yaml.safe_load(GOOD)) == []
    rs = rules_from_text(GOOD, "good.yaml")
    assert [d.rule_id for d in rs.detectors] == ["watchlist-hit", "wanted-only", "penetration",
                                                 "convoy"]


# (what is wrong, the file, the part of the schema's message) : each one is an error for
# `rings rules check` as for the schema.
BAD = [
    ("unknown top-level key", "rule:\n  - id: loitering\n", "'rule' was unexpected"),
    ("unknown engine setting", "engine:\n  latenes: 2m\n", "'latenes' was unexpected"),
    ("bad utc offset", "engine:\n  utc_offset: '+8'\n", "does not match"),
    ("rules not a list", "rules:\n  id: loitering\n", "is not of type 'array', 'null'"),
    ("no id", "rules:\n  - kind: loitering\n", "'id' is a required property"),
    ("unknown kind", "rules:\n  - id: x\n    kind: loiter\n", "'loiter' is not one of"),
    ("id naming no kind", "rules:\n  - id: my-rule\n", "'my-rule' is not one of"),
    ("bad severity", "rules:\n  - id: loitering\n    severity: urgent\n",
     "'urgent' is not one of ['low', 'medium', 'high', 'critical']"),
    ("enabled not a bool", "rules:\n  - id: loitering\n    enabled: 'no'\n",
     "'no' is not of type 'boolean'"),
    ("parameter of another kind", "rules:\n  - id: loitering\n    gap: 2m\n",
     "'gap' was unexpected"),
    ("parameter of the kind, not the id", "rules:\n  - id: penetration\n    kind: loitering\n"
     "    min_crossings: 3\n", "'min_crossings' was unexpected"),
    ("int below its minimum", "rules:\n  - id: loitering\n    crossings: 1\n",
     "1 is less than the minimum of 2"),
    ("int not an int", "rules:\n  - id: loitering\n    crossings: many\n",
     "'many' is not of type 'integer'"),
    ("bad duration", "rules:\n  - id: loitering\n    window: 2 hours\n", "does not match"),
    ("zero window", "rules:\n  - id: checkpoint-avoidance\n    within: 0s\n",
     "should not be valid"),
    ("zero window in seconds", "rules:\n  - id: linked-hit\n    window: 0\n",
     "less than or equal to the minimum of 0"),
    ("negative duration", "engine:\n  lateness: -5\n", "less than the minimum of 0"),
    ("bool not a bool", "rules:\n  - id: convoy\n    all_pairs: 1\n",
     "1 is not of type 'boolean'"),
    ("lists not a list", "rules:\n  - id: watchlist-hit\n    lists: wanted\n",
     "'wanted' is not of type 'array'"),
    ("tags not strings", "rules:\n  - id: loitering\n    tags: [a, 1]\n",
     "1 is not of type 'string'"),
    ("description not text", "rules:\n  - id: loitering\n    description: [a]\n",
     "is not of type 'string'"),
    ("exceptions with a bad subject key",
     "rules:\n  - id: loitering\n    exceptions: {subjects: [蒙K00001]}\n", "does not match"),
    ("exceptions with an unknown key",
     "rules:\n  - id: loitering\n    exceptions: {rings: [city]}\n", "'rings' was unexpected"),
    ("activate without plan", "rules:\n  - id: penetration\n    activate: {innermost: true}\n",
     "is not valid under any of the given schemas"),
    ("activate with a bad severity",
     "rules:\n  - id: penetration\n    activate: {plan: p, min_listed: severe}\n",
     "is not valid under any of the given schemas"),
    ("plan without close", "plans:\n  - id: p\n    scope: {rings: root}\n    respond: 5m\n",
     "'close' is a required property"),
    ("plan with an unknown key", "plans:\n  - id: p\n    scope: {rings: root}\n"
     "    respond: 5m\n    close: 10m\n    who: me\n", "'who' was unexpected"),
    ("scope with two kinds", "plans:\n  - id: p\n    scope: {rings: root, sites: [CP01]}\n"
     "    respond: 5m\n    close: 10m\n", "is valid under each of"),
    ("at_least without within_km", "plans:\n  - id: p\n    scope: {rings: root, at_least: 3}\n"
     "    respond: 5m\n    close: 10m\n", "'within_km' is a dependency of 'at_least'"),
    ("within_km 0", "plans:\n  - id: p\n    scope: {within_km: 0}\n"
     "    respond: 5m\n    close: 10m\n", "less than or equal to the minimum of 0"),
    ("unknown site type", "plans:\n  - id: p\n    scope: {rings: root}\n    types: [gate]\n"
     "    respond: 5m\n    close: 10m\n", "is not valid under any of the given schemas"),
    ("bad escalate", "plans:\n  - id: p\n    scope: {rings: root}\n    escalate: urgent\n"
     "    respond: 5m\n    close: 10m\n", "'urgent' is not one of"),
    ("zero deadline", "plans:\n  - id: p\n    scope: {rings: root}\n"
     "    respond: 0s\n    close: 10m\n", "should not be valid"),
]


@pytest.mark.parametrize("what,text,message", BAD, ids=[b[0] for b in BAD])
def test_a_wrong_file_is_wrong_for_both(validator, what, text, message):
    found = errors(validator, yaml.safe_load(text))
    assert any(message in e for e in found), found
    with pytest.raises((SourceError, SourceErrors)):
        rules_from_text(text, "bad.yaml")
