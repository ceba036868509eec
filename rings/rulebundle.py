"""A rule set as one message: the text of every file of a rules directory, who pushed it, why.

`rings rules push` publishes a bundle to the compacted `rules` topic, and running workers
switch to it without a restart. The bundle carries the files' text, not a parsed form, so
a worker parses and checks it with the very code `rings rules check` ran, and the rule set
version (a hash of the parsed documents) is the same wherever it is computed.
"""

from __future__ import annotations

import os
from typing import Any

from .errors import RuleError, SourceErrors
from .net import Net
from .ruleset import RuleSet, build_rules, load_rules, rule_files
from .timefmt import format_ts
from .yamlsrc import load_yaml_text

FORMAT = 1


def make_bundle(path: str, net: Net, by: str, reason: str, now_ms: int) -> dict[str, Any]:
    """Read and check a rules directory (SourceErrors if invalid) and bundle it."""
    rules = load_rules(path)              # errors name the files as the author has them
    rules.check_against(net)
    never = rules.never_fire(net)         # what `rules check` refuses, push refuses too
    if never:
        raise SourceErrors(never)
    texts = []
    for f in rule_files(path):
        with open(f, encoding="utf-8") as fh:
            texts.append({"name": os.path.basename(f), "text": fh.read()})
    if rules_from_texts(texts, net).version != rules.version:    # changed while read
        raise RuleError("the rules changed while they were read; push again", path)
    return {"format": FORMAT, "version": rules.version, "files": texts, "by": by,
            "reason": reason, "pushed": format_ts(now_ms, rules.utc_offset_min),
            "rules": [d.rule_id for d in rules.detectors], "plans": list(rules.plans)}


def rules_from_texts(texts: list[dict[str, str]], net: Net) -> RuleSet:
    rules = build_rules([(t["name"], load_yaml_text(t["text"], t["name"])) for t in texts])
    rules.check_against(net)
    return rules


def rules_from_bundle(bundle: Any, net: Net) -> RuleSet:
    """The rule set of a bundle; SourceErrors (or RuleError) if it is not a valid one."""
    if not isinstance(bundle, dict) or bundle.get("format") != FORMAT or \
            not isinstance(bundle.get("files"), list) or not bundle["files"] or \
            any(not isinstance(t, dict) or not isinstance(t.get("name"), str)
                or not isinstance(t.get("text"), str) for t in bundle["files"]):
        raise RuleError("not a rules bundle of this version of rings")
    rules = rules_from_texts(bundle["files"], net)
    if bundle.get("version") != rules.version:
        raise RuleError(f"bundle says version {bundle.get('version')!r}, its files make "
                        f"{rules.version!r}")
    return rules
