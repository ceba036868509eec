"""Lockdown plans (CONTRACTS.md §6): which checkpoints to order, what to do, how fast.

A plan is declared in the rules directory (`plans.yaml`, `*.plans.yaml`, or a `plans:` key
in any rules file) and resolved against the net when it is activated: its scope is a
distance from the activation's site, one or more rings, or a list of sites. Plans are part
of the rule set (they change its version), so a rule that activates a plan is checked
against the plans it can see.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import RuleError
from .models import SEVERITIES, SEVERITY_RANK, Alert
from .net import Net
from .timefmt import parse_duration
from .yamlsrc import LDict, LList, unknown_keys

SITE_TYPES = ("checkpoint", "bayonet")
PLAN_KEYS = ("id", "description", "scope", "types", "action", "respond", "close", "lasts",
             "escalate")
SCOPE_KEYS = ("within_km", "rings", "sites")
SCOPE_OPTIONS = ("at_least",)


@dataclass(frozen=True, slots=True)
class Scope:
    """Exactly one of the three is set. `rings` may be `("*root",)`: every root ring."""

    within_km: float | None = None
    rings: tuple[str, ...] | None = None
    sites: tuple[str, ...] | None = None
    # With within_km: when fewer sites lie that close, the nearest ones make up this number.
    # On a net whose checkpoints are all on the outer ring (the sample), an incident deep
    # inside has none within 30 km; a local link-up that orders nobody protects nothing.
    at_least: int = 0

    @property
    def needs_site(self) -> bool:
        return self.within_km is not None

    def describe(self, net: Net | None = None) -> str:
        if self.within_km is not None:
            more = f" (at least the nearest {self.at_least})" if self.at_least else ""
            return f"within {self.within_km:g} km of the site{more}"
        if self.rings is not None:
            if self.rings == ROOT_RINGS:
                return "on the root rings" + (
                    f" ({', '.join(net.root_rings())})" if net is not None else "")
            return "on ring" + ("s " if len(self.rings) > 1 else " ") + ", ".join(self.rings)
        return "sites " + ", ".join(self.sites or ())


ROOT_RINGS = ("*root",)


@dataclass(frozen=True, slots=True)
class Plan:
    id: str
    scope: Scope
    respond_ms: int
    close_ms: int
    types: tuple[str, ...] = ("checkpoint",)
    action: str = "close"
    lasts_ms: int = 24 * 3_600_000     # an activation nobody stands down ends by itself
    escalate: str = "high"             # severity of the plan-overdue alert
    description: str | None = None
    file: str | None = None
    line: int | None = None
    # positions of the scope's ring and site names, for errors found against a net
    where: dict[str, tuple[int, int]] = field(default_factory=dict, compare=False)

    def sites(self, net: Net, site: str | None) -> list[str]:
        """The sites this plan orders when activated at `site` (sorted, possibly empty).

        Raises KeyError if `site` is needed and unknown: callers check first."""
        sc = self.scope
        if sc.within_km is not None:
            if site is None:
                raise KeyError("site")
            net.sites[site]
            by_km = sorted((net.distance_km(site, s.id), s.id) for s in net.sites.values()
                           if s.type in self.types)
            cands = [sid for i, (km, sid) in enumerate(by_km)
                     if km <= sc.within_km or i < sc.at_least]
        elif sc.rings is not None:
            rings = set(net.root_rings()) if sc.rings == ROOT_RINGS else set(sc.rings)
            cands = [s.id for s in net.sites.values() if s.ring in rings and s.type in self.types]
        else:
            cands = [s for s in sc.sites or () if s in net.sites]
        return sorted(cands)

    def check_against(self, net: Net) -> list[RuleError]:
        """Errors of this plan that only the net can show (unknown rings and sites)."""
        errs = []
        for name in self.scope.rings or ():
            if name != ROOT_RINGS[0] and name not in net.rings:
                errs.append(RuleError(f"plan {self.id!r}: unknown ring {name!r} (the net has: "
                                      f"{', '.join(net.rings)})", self.file,
                                      *self.where.get("ring:" + name, (self.line, None))))
        for name in self.scope.sites or ():
            if name not in net.sites:
                errs.append(RuleError(f"plan {self.id!r}: unknown site {name!r}", self.file,
                                      *self.where.get("site:" + name, (self.line, None))))
        if not errs and self.scope.within_km is None and not self.sites(net, None):
            errs.append(RuleError(f"plan {self.id!r} orders no site of this net (types "
                                  f"{', '.join(self.types)}, {self.scope.describe(net)})",
                                  self.file, self.line, None))
        return errs


def parse_plans(items: Any, file: str, err: Any, seen: dict[str, tuple[str, int]]
                ) -> list[Plan]:
    """Plans from a `plans:` list; every problem goes to `err(msg, file, pos)`."""
    if not isinstance(items, LList):
        err("`plans` must be a list of plans", file, getattr(items, "pos", None))
        return []
    out = []
    for i, p in enumerate(items):
        if not isinstance(p, LDict):
            err("a plan must be a mapping with at least id, scope, respond and close",
                file, items.where(i))
            continue
        plan = _parse_plan(p, file, items.where(i), err, seen)
        if plan is not None:
            out.append(plan)
    return out


def _parse_plan(p: LDict, file: str, pos: tuple[int, int], err: Any,
                seen: dict[str, tuple[str, int]]) -> Plan | None:
    ok = True
    pid = p.get("id")
    if not isinstance(pid, str) or not pid or len(pid) > 100:
        err("plan `id` must be a non-empty string (at most 100 characters)", file,
            p.where("id", True) if "id" in p else pos)
        return None
    if pid in seen:
        f0, l0 = seen[pid]
        err(f"duplicate plan id {pid!r} (first at {f0}:{l0})", file, p.where("id", True))
        return None
    seen[pid] = (file, p.where("id", True)[0])
    for k in p:
        if k not in PLAN_KEYS:
            err(f"unknown plan key {k!r} (expected: {', '.join(PLAN_KEYS)})", file, p.where(k))
            ok = False
    where: dict[str, tuple[int, int]] = {}
    scope = _parse_scope(p, file, pos, err, where)
    ok = ok and scope is not None

    def duration(key: str, default: str | None) -> int | None:
        if key not in p:
            if default is None:
                err(f"plan {pid!r} needs `{key}` (a deadline like 5m)", file, pos)
            return parse_duration(default) if default is not None else None
        try:
            v = parse_duration(p[key])
        except ValueError as e:
            err(f"`{key}`: {e}", file, p.where(key, True))
            return None
        if v <= 0:
            err(f"`{key}` must be longer than 0", file, p.where(key, True))
            return None
        return v

    respond = duration("respond", None)
    close = duration("close", None)
    lasts = duration("lasts", "24h")
    if respond is None or close is None or lasts is None:
        ok = False
    elif close < respond:
        err(f"plan {pid!r}: `close` ({p['close']}) comes before `respond` ({p['respond']}); "
            "a site cannot close before it has responded", file, p.where("close", True))
        ok = False
    types = p.get("types", ["checkpoint"])
    if isinstance(types, str):
        types = [types]
    if not isinstance(types, list) or not types or any(t not in SITE_TYPES for t in types):
        err(f"`types` must be a list of site types ({', '.join(SITE_TYPES)})", file,
            p.where("types", True))
        ok = False
    action = p.get("action", "close")
    if not isinstance(action, str) or not action:
        err("`action` must be a non-empty string (what the sites are ordered to do)", file,
            p.where("action", True))
        ok = False
    escalate = p.get("escalate", "high")
    if escalate not in SEVERITIES:
        err(f"`escalate` must be one of {', '.join(SEVERITIES)}", file, p.where("escalate", True))
        ok = False
    desc = p.get("description")
    if desc is not None and not isinstance(desc, str):
        err("`description` must be text", file, p.where("description", True))
        ok = False
    if not ok or scope is None:
        return None
    assert respond is not None and close is not None and lasts is not None
    return Plan(pid, scope, respond, close, tuple(types), action, lasts, escalate,
                desc.strip() if isinstance(desc, str) else None, file, pos[0], where)


def _parse_scope(p: LDict, file: str, pos: tuple[int, int], err: Any,
                 where: dict[str, tuple[int, int]]) -> Scope | None:
    sc = p.get("scope")
    if not isinstance(sc, LDict):
        err("a plan needs `scope`: one of within_km (of the activation's site), rings "
            "(a list, or `root`), or sites (a list)", file,
            p.where("scope", True) if "scope" in p else pos)
        return None
    keys = [k for k in sc if k in SCOPE_KEYS]
    for k in sc:
        if k not in SCOPE_KEYS + SCOPE_OPTIONS:
            err(f"unknown scope key {k!r} (expected one of: {', '.join(SCOPE_KEYS)}; "
                f"with within_km also: {', '.join(SCOPE_OPTIONS)})", file, sc.where(k))
            return None
    if len(keys) != 1:
        err("`scope` must have exactly one of within_km, rings, sites", file, sc.pos)
        return None
    k = keys[0]
    v = sc[k]
    if k == "within_km":
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 20_000:
            err("`within_km` must be a number of kilometres above 0", file, sc.where(k, True))
            return None
        n = sc.get("at_least", 0)
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            err("`at_least` must be a whole number of sites", file, sc.where("at_least", True))
            return None
        return Scope(within_km=float(v), at_least=n)
    if "at_least" in sc:
        err("`at_least` goes with within_km only", file, sc.where("at_least"))
        return None
    if k == "rings" and v == "root":
        return Scope(rings=ROOT_RINGS)
    if not isinstance(v, LList) or not v or any(not isinstance(x, str) or not x for x in v):
        extra = " (or `root`: every root ring)" if k == "rings" else ""
        err(f"`{k}` must be a non-empty list of ids{extra}", file, sc.where(k, True))
        return None
    for i, x in enumerate(v):
        where[f"{k[:-1]}:{x}"] = v.where(i)
    return Scope(**{k: tuple(v)})


@dataclass(frozen=True, slots=True)
class Activation:
    """A rule's `activate:` option: which plan its alerts start, and on which alerts."""

    plan: str
    min_severity: str | None = None
    min_listed: str | None = None
    innermost: bool = False
    file: str | None = None
    line: int | None = None
    col: int | None = None

    def matches(self, alert: Alert, net: Net) -> bool:
        """Whether this alert starts the plan (the rule's `activate:` conditions)."""
        if self.min_severity is not None and \
                SEVERITY_RANK[alert.severity] < SEVERITY_RANK[self.min_severity]:
            return False
        if self.min_listed is not None:
            listed = (alert.details or {}).get("listed_severity")
            if listed not in SEVERITY_RANK or \
                    SEVERITY_RANK[listed] < SEVERITY_RANK[self.min_listed]:
                return False
        if self.innermost and (alert.zone is None or alert.zone not in net.rings
                               or not net.is_leaf_zone(alert.zone)):
            return False
        return True


ACTIVATE_KEYS = ("plan", "min_severity", "min_listed", "innermost")


def parse_activation(v: Any, file: str, pos: tuple[int, int], err: Any) -> Activation | None:
    if isinstance(v, str):
        return Activation(v, file=file, line=pos[0], col=pos[1])
    if not isinstance(v, LDict):
        err("`activate` must be a plan id or a mapping with `plan` (and optionally "
            "min_severity, min_listed, innermost)", file, pos)
        return None
    ok = unknown_keys(v, ACTIVATE_KEYS, "`activate`", file, err)
    plan = v.get("plan")
    if not isinstance(plan, str) or not plan:
        err("`activate` needs `plan`: the id of a plan", file,
            v.where("plan", True) if "plan" in v else v.pos)
        ok = False
    for k in ("min_severity", "min_listed"):
        if k in v and v[k] not in SEVERITIES:
            err(f"`{k}` must be one of {', '.join(SEVERITIES)}", file, v.where(k, True))
            ok = False
    if not isinstance(v.get("innermost", False), bool):
        err("`innermost` must be true or false", file, v.where("innermost", True))
        ok = False
    if not ok:
        return None
    return Activation(plan, v.get("min_severity"), v.get("min_listed"),
                      v.get("innermost", False), file, *v.where("plan", True))

