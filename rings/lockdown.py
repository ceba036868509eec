"""Plan activations (CONTRACTS.md §6): orders out, acknowledgements in, deadlines, proof.

`Desk` is the state machine of every activation a worker owns. It is pure: the runtime
hands it commands, acks and rule triggers with the wall-clock time and the Kafka position
they came from, calls `tick` about once a second, and sends what it returns. Its state is a
few JSON values in a KV store (a Faust table in the worker), so a restarted worker carries
on where the last one stopped and its deadlines still fire.

Times are wall-clock milliseconds: the promise (respond in 5 minutes, close in 10) is about
real time, not event time. An activation starts at its command's record timestamp (when it
was asked for, never later than now), and an acknowledgement counts at its own record
timestamp (when the checkpoint sent it): both come from Kafka, so the same input processed
again (after a crash) gives the same activation, the same times and the same ids. The
checkpoint's own `ts` is kept beside it as reported, not trusted for the proof.

Every input is applied at most once in effect: activation ids are derived from the command
id (or its Kafka position) or from the alert that triggered it; an ack that changes
nothing is refused as a duplicate; so the at-least-once delivery of the runtime can repeat
an input without changing an activation wrongly.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import orjson

from .decode import Limits, Rejected, parse_json
from .errors import InvalidRecord
from .models import Alert, Subject
from .net import Net
from .plans import Plan
from .state import KV
from .timefmt import format_duration, format_ts, parse_ts

OVERDUE_RULE = "plan-overdue"
ACK_STATES = ("acknowledged", "closed")
MAX_TEXT = 2000                    # `by`, `reason`
MAX_ID = 200
LIMITS = Limits(max_bytes=16 * 1024)
RETAIN_MS = 24 * 3_600_000         # a stood-down activation stays visible this long
ACK_SLACK_MS = 60_000              # an ack may claim a time this much before its order
INDEX = "~plans"


@dataclass(frozen=True, slots=True)
class Source:
    """Where an input record came from: its Kafka position and record timestamp (ms)."""

    topic: str
    partition: int
    offset: int
    timestamp: int


@dataclass(slots=True)
class Outcome:
    """What one input or tick produced, for the runtime to send."""

    orders: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[dict[str, Any]] = field(default_factory=list)
    audit: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    dead: list[Rejected] = field(default_factory=list)
    # For metrics: ("activated", plan, trigger kind), ("responded" | "closed", plan, seconds)
    events: list[tuple[str, str, Any]] = field(default_factory=list)
    ignored: int = 0               # exact repeats of an input already applied

    def __iadd__(self, other: "Outcome") -> "Outcome":
        self.orders += other.orders
        self.statuses += other.statuses
        self.audit += other.audit
        self.alerts += other.alerts
        self.dead += other.dead
        self.events += other.events
        self.ignored += other.ignored
        return self


def activation_id(*parts: str) -> str:
    h = hashlib.blake2b(digest_size=8)
    for p in parts:
        h.update(p.encode())
        h.update(b"\x00")
    return h.hexdigest()


def _text(d: dict[str, Any], key: str, required: bool = True, limit: int = MAX_TEXT
          ) -> str | None:
    v = d.get(key)
    if v is None:
        if required:
            raise InvalidRecord("missing-field", f"`{key}` is required")
        return None
    if type(v) is not str or not v.strip() or len(v) > limit:
        raise InvalidRecord("bad-field", f"`{key}` must be a non-empty string of at most "
                                         f"{limit} characters")
    return v


class Desk:
    def __init__(self, net: Net, plans: dict[str, Plan], store: KV, rules_version: str = "",
                 tz: int = 0) -> None:  # tz: UTC offset in minutes (engine: utc_offset)
        self.net = net
        self.plans = plans
        self.store = store
        self.rules_version = rules_version or None
        self.tz = tz                       # UTC offset (minutes) of times written out
        self.live: dict[str, dict[str, Any]] = {}
        self._load()

    # ------------------------------------------------------------------ state

    def _load(self) -> None:
        raw = self.store.get(INDEX)
        for aid in orjson.loads(raw) if raw else []:
            v = self.store.get("a:" + aid)
            if v is not None:
                self.live[aid] = orjson.loads(v)

    def _save(self, a: dict[str, Any]) -> None:
        new = a["id"] not in self.live
        self.live[a["id"]] = a
        self.store.put("a:" + a["id"], orjson.dumps(a))
        if new:
            self._save_index()

    def _drop(self, aid: str) -> None:
        self.live.pop(aid, None)
        self.store.delete("a:" + aid)
        self._save_index()

    def _save_index(self) -> None:
        self.store.put(INDEX, orjson.dumps(sorted(self.live)))

    def _ts(self, ms: int | None) -> str | None:
        return None if ms is None else format_ts(ms, self.tz)

    def find(self, plan: Plan, site: str | None) -> dict[str, Any] | None:
        """The activation of `plan` that is not stood down, if any: at `site` for a plan
        whose scope depends on the site, else anywhere (one city lockdown at a time)."""
        for a in self.live.values():
            if a["plan"] == plan.id and a["stood_down"] is None and \
                    (not plan.scope.needs_site or a["site"] == site):
                return a
        return None

    # ------------------------------------------------------------------ inputs

    def command(self, raw: bytes, src: Source, now: int) -> Outcome:
        out = Outcome()
        try:
            d = parse_json(raw, LIMITS)
            if type(d) is not dict:
                raise InvalidRecord("not-an-object", "a plan command must be a JSON object")
            cmd = d.get("cmd")
            if cmd == "activate":
                self._activate_cmd(d, src, now, out)
            elif cmd == "stand-down":
                self._stand_down_cmd(d, now, out)
            elif cmd is None:
                raise InvalidRecord("missing-field", "`cmd` is required (activate or "
                                                     "stand-down)")
            else:
                raise InvalidRecord("unknown-command", "`cmd` must be activate or stand-down")
        except InvalidRecord as e:
            out.dead.append(Rejected(raw, e.reason, e.detail, None,
                                     (src.topic, src.partition, src.offset)))
        return out

    def trigger(self, alert: dict[str, Any], raw: bytes, src: Source, now: int) -> Outcome:
        """An alert whose rule activates a plan (its `plan` field names the plan)."""
        out = Outcome()
        try:
            plan_id = alert.get("plan")
            plan = self.plans.get(plan_id) if isinstance(plan_id, str) else None
            if plan is None:
                raise InvalidRecord("unknown-plan", "the alert names a plan this rule set "
                                                    "does not have")
            site = alert.get("site")
            aid = activation_id("alert", plan.id, str(alert.get("alert_id")))
            trig = {"alert_id": alert.get("alert_id"), "rule": alert.get("rule"),
                    "subject": alert.get("subject"), "severity": alert.get("severity"),
                    "ts": alert.get("ts")}
            self._activate(plan, site if isinstance(site, str) else None, aid,
                           f"alert:{alert.get('alert_id')}", trig, f"rule:{alert.get('rule')}",
                           str(alert.get("summary") or "")[:MAX_TEXT], src, now, out,
                           fold=True)
        except InvalidRecord as e:
            out.dead.append(Rejected(raw, e.reason, e.detail, None,
                                     (src.topic, src.partition, src.offset)))
        return out

    def ack(self, raw: bytes, src: Source, now: int) -> Outcome:
        out = Outcome()
        try:
            self._ack(raw, src, now, out)
        except InvalidRecord as e:
            out.dead.append(Rejected(raw, e.reason, e.detail, None,
                                     (src.topic, src.partition, src.offset)))
        return out

    def tick(self, now: int) -> Outcome:
        """Deadlines that passed, activations that ran out, stood-down ones to forget."""
        out = Outcome()
        for a in list(self.live.values()):
            sd = a["stood_down"]
            if sd is not None:
                if now >= sd["at"] + RETAIN_MS:
                    self._drop(a["id"])
                continue
            if now >= a["expires"]:
                plan = self.plans.get(a["plan"])
                lasts = format_duration(plan.lasts_ms) if plan else "its time"
                self._do_stand_down(a, "rings", f"the plan lasts {lasts}; it ended by itself",
                                    a["expires"], out)
                continue
            changed = False
            for kind in ("respond", "close"):
                deadline = a[kind + "_by"]
                if kind in a["fired"] or now < deadline:
                    continue
                a["fired"].append(kind)
                changed = True
                missing = self._missing(a, kind)
                if missing:
                    out.alerts.append(self._overdue_alert(a, kind, missing))
            if changed:
                self._save(a)
                out.statuses.append(self.status(a, now))
        return out

    # ------------------------------------------------------------------ activation

    def _activate_cmd(self, d: dict[str, Any], src: Source, now: int, out: Outcome) -> None:
        plan_id = _text(d, "plan", limit=MAX_ID)
        plan = self.plans.get(plan_id or "")
        if plan is None:
            raise InvalidRecord("unknown-plan", f"no plan of that name (known: "
                                                f"{', '.join(sorted(self.plans))})")
        site = _text(d, "site", required=False, limit=MAX_ID)
        by = _text(d, "by")
        reason = _text(d, "reason")
        cid = _text(d, "id", required=False, limit=MAX_ID)
        aid = activation_id("command", plan.id, cid) if cid else \
            activation_id("command", plan.id, src.topic, str(src.partition), str(src.offset))
        trig = {"command_id": cid} if cid else {}
        self._activate(plan, site, aid, "command", trig, by or "", reason or "", src, now,
                       out, fold=False)

    def _activate(self, plan: Plan, site: str | None, aid: str, triggered_by: str,
                  trig: dict[str, Any], by: str, reason: str, src: Source, now: int,
                  out: Outcome, fold: bool) -> None:
        if aid in self.live:
            out.ignored += 1              # this very command or alert again: applied already
            return
        if site is not None and site not in self.net.sites:
            raise InvalidRecord("unknown-site", "`site` is not a site of the net")
        if site is None and plan.scope.needs_site:
            raise InvalidRecord("site-required", f"plan {plan.id} is "
                                f"{plan.scope.describe()}: the command must name the site")
        same = self.find(plan, site)
        if same is not None:
            if not fold:
                where = " at this site" if plan.scope.needs_site else ""
                raise InvalidRecord("already-active", f"activation {same['id']} of plan "
                                    f"{plan.id}{where} is still active; stand it down first")
            alert_id = trig.get("alert_id")
            if alert_id in same["triggers"]:
                out.ignored += 1
                return
            same["triggers"].append(alert_id)
            self._save(same)
            out.audit.append((f"{same['id']}:trigger:{alert_id}", {
                "activation": same["id"], "plan": plan.id, "event": "trigger",
                "at": self._ts(now), "by": by, "reason": reason, "trigger": trig,
                "source": _src(src)}))
            out.statuses.append(self.status(same, now))
            return
        sites = plan.sites(self.net, site)
        if not sites:
            raise InvalidRecord("empty-scope", f"plan {plan.id} orders no site here "
                                               f"({plan.scope.describe(self.net)})")
        start = min(src.timestamp, now) if src.timestamp > 0 else now
        a: dict[str, Any] = {
            "id": aid, "plan": plan.id, "site": site, "action": plan.action,
            "sites": {s: {"state": "ordered", "acknowledged": None, "closed": None,
                          "by": None, "reported": {}} for s in sites},
            "activated": start, "issued": now,
            "respond_by": start + plan.respond_ms, "close_by": start + plan.close_ms,
            "expires": start + plan.lasts_ms,
            "triggered_by": triggered_by, "trigger": trig, "by": by, "reason": reason,
            "triggers": [trig["alert_id"]] if "alert_id" in trig else [],
            "fired": [], "responded": None, "closed": None, "stood_down": None,
        }
        self._save(a)
        for s in sites:
            out.orders.append(self._order(a, s, plan.action))
        out.audit.append((f"{aid}:activate", {
            "activation": aid, "plan": plan.id, "event": "activate", "at": self._ts(now),
            "activated": self._ts(start), "site": site, "sites": sites,
            "triggered_by": triggered_by, "trigger": trig, "by": by, "reason": reason,
            "source": _src(src)}))
        out.statuses.append(self.status(a, now))
        out.events.append(("activated", plan.id, "rule" if fold else "command"))

    def _order(self, a: dict[str, Any], site: str, action: str) -> dict[str, Any]:
        return {"activation": a["id"], "plan": a["plan"], "site": site, "action": action,
                "respond_by": self._ts(a["respond_by"]), "close_by": self._ts(a["close_by"]),
                "issued": self._ts(a["issued"] if action != "stand-down"
                                   else a["stood_down"]["at"])}

    # ------------------------------------------------------------------ stand-down

    def _stand_down_cmd(self, d: dict[str, Any], now: int, out: Outcome) -> None:
        aid = _text(d, "activation", limit=MAX_ID)
        by = _text(d, "by")
        reason = _text(d, "reason")
        a = self.live.get(aid or "")
        if a is None:
            raise InvalidRecord("unknown-activation", "no activation with that id (or it "
                                "was stood down more than a day ago)")
        if a["stood_down"] is not None:
            raise InvalidRecord("already-stood-down", f"activation {a['id']} was stood down "
                                f"at {self._ts(a['stood_down']['at'])}")
        self._do_stand_down(a, by or "", reason or "", now, out)

    def _do_stand_down(self, a: dict[str, Any], by: str, reason: str, now: int,
                       out: Outcome) -> None:
        a["stood_down"] = {"at": now, "by": by, "reason": reason}
        self._save(a)
        for s in a["sites"]:
            out.orders.append(self._order(a, s, "stand-down"))
        out.audit.append((f"{a['id']}:stand-down", {
            "activation": a["id"], "plan": a["plan"], "event": "stand-down",
            "at": self._ts(now), "by": by, "reason": reason}))
        out.statuses.append(self.status(a, now))

    # ------------------------------------------------------------------ acks

    def _ack(self, raw: bytes, src: Source, now: int, out: Outcome) -> None:
        d = parse_json(raw, LIMITS)
        if type(d) is not dict:
            raise InvalidRecord("not-an-object", "an ack must be a JSON object")
        aid = _text(d, "activation", limit=MAX_ID)
        site = _text(d, "site", limit=MAX_ID)
        state = d.get("state")
        if state is None:
            raise InvalidRecord("missing-field", "`state` is required")
        if state not in ACK_STATES:
            raise InvalidRecord("bad-field", "`state` must be acknowledged or closed")
        if "ts" not in d:
            raise InvalidRecord("missing-field", "`ts` is required")
        reported, _tz = parse_ts(d["ts"])
        by = _text(d, "by")
        a = self.live.get(aid or "")
        if a is None:
            raise InvalidRecord("unknown-activation", "no activation with that id")
        if a["stood_down"] is not None:
            raise InvalidRecord("stood-down", f"activation {a['id']} was stood down")
        if site not in self.net.sites:
            raise InvalidRecord("unknown-site", "`site` is not a site of the net")
        st = a["sites"].get(site)
        if st is None:
            raise InvalidRecord("not-ordered", f"activation {a['id']} gave no order to this "
                                               "site")
        cur = st["state"]
        if cur == state:
            raise InvalidRecord("duplicate-ack", f"the site had already reported {state}")
        if cur == "closed":
            raise InvalidRecord("out-of-order", "acknowledged after closed")
        if reported < a["activated"] - ACK_SLACK_MS:
            raise InvalidRecord("out-of-order", "the ack's ts is before the order was issued")
        prev = max((parse_ts(t)[0] for t in st["reported"].values()), default=None)
        if prev is not None and reported < prev:
            raise InvalidRecord("out-of-order", "the ack's ts is before the site's previous "
                                                "report")
        got = max(a["activated"], min(src.timestamp if src.timestamp > 0 else now, now))
        st["state"] = state
        st["by"] = by
        st["reported"][state] = d["ts"] if isinstance(d["ts"], str) else self._ts(reported)
        if st["acknowledged"] is None:
            st["acknowledged"] = got          # closing answers the order too
        if state == "closed":
            st["closed"] = got
        sites = a["sites"].values()
        if a["responded"] is None and all(s["acknowledged"] is not None for s in sites):
            a["responded"] = max(s["acknowledged"] for s in sites)
            out.events.append(("responded", a["plan"], (a["responded"] - a["activated"]) / 1000))
        if a["closed"] is None and all(s["closed"] is not None for s in sites):
            a["closed"] = max(s["closed"] for s in sites)
            out.events.append(("closed", a["plan"], (a["closed"] - a["activated"]) / 1000))
        self._save(a)
        out.statuses.append(self.status(a, now))

    # ------------------------------------------------------------------ status

    def _missing(self, a: dict[str, Any], kind: str) -> list[str]:
        """Sites that had not done what `kind` ("respond" or "close") asks by its deadline."""
        deadline = a[kind + "_by"]
        field_ = "acknowledged" if kind == "respond" else "closed"
        return sorted(s for s, st in a["sites"].items()
                      if st[field_] is None or st[field_] > deadline)

    def overdue(self, a: dict[str, Any]) -> list[str]:
        """Sites still missing after a deadline that has passed (fired)."""
        out: set[str] = set()
        for kind in a["fired"]:
            field_ = "acknowledged" if kind == "respond" else "closed"
            out.update(s for s, st in a["sites"].items() if st[field_] is None)
        return sorted(out)

    def state_of(self, a: dict[str, Any]) -> str:
        if a["stood_down"] is not None:
            return "stood-down"
        if a["closed"] is not None:
            return "closed"
        if self.overdue(a):
            return "overdue"
        if a["responded"] is not None:
            return "responded"
        return "ordering"

    def status(self, a: dict[str, Any], now: int) -> dict[str, Any]:
        late = sorted({s for kind in ("respond", "close") if kind in a["fired"]
                       for s in self._missing(a, kind)} - set(self.overdue(a)))
        sd = a["stood_down"]
        return {
            "activation": a["id"], "plan": a["plan"], "state": self.state_of(a),
            "sites": {s: st["state"] for s, st in a["sites"].items()},
            "overdue": self.overdue(a),
            "late": late,
            "time_to_respond_s": None if a["responded"] is None
            else (a["responded"] - a["activated"]) / 1000,
            "time_to_close_s": None if a["closed"] is None
            else (a["closed"] - a["activated"]) / 1000,
            "triggered_by": a["triggered_by"], "trigger": a["trigger"],
            "triggers": len(a["triggers"]) or None,
            "by": a["by"], "reason": a["reason"], "site": a["site"], "action": a["action"],
            "activated": self._ts(a["activated"]), "respond_by": self._ts(a["respond_by"]),
            "close_by": self._ts(a["close_by"]),
            "site_times": {s: {"acknowledged": self._ts(st["acknowledged"]),
                               "closed": self._ts(st["closed"]), "by": st["by"],
                               "reported": st["reported"] or None}
                           for s, st in a["sites"].items()},
            "stood_down": None if sd is None else {"at": self._ts(sd["at"]), "by": sd["by"],
                                                   "reason": sd["reason"]},
            "updated": self._ts(now),
        }

    def _overdue_alert(self, a: dict[str, Any], kind: str, missing: list[str]) -> Alert:
        plan = self.plans.get(a["plan"])
        deadline = a[kind + "_by"]
        verb = "acknowledged" if kind == "respond" else "closed"
        n = len(a["sites"])
        limit = format_duration(deadline - a["activated"])
        site = self.net.sites.get(a["site"] or "")
        return Alert(
            rule=OVERDUE_RULE, severity=plan.escalate if plan else "high",
            subject=Subject("activation", a["id"]), ts=deadline, tz=self.tz,
            evidence=[a["id"], kind], related=[], site=a["site"],
            ring=site.ring if site else None, plan=a["plan"],
            rules_version=self.rules_version,
            summary=(f"{a['plan']} activation {a['id']}: {len(missing)} of {n} sites had not "
                     f"{verb} within {limit}: {', '.join(missing)}"),
            details={"activation": a["id"], "deadline": kind, "missing": missing,
                     "ordered": n})

    def overdue_sites_by_plan(self) -> dict[str, int]:
        out = {p: 0 for p in self.plans}
        for a in self.live.values():
            if a["stood_down"] is None:
                out[a["plan"]] = out.get(a["plan"], 0) + len(self.overdue(a))
        return out


def _src(src: Source) -> dict[str, Any]:
    return {"topic": src.topic, "partition": src.partition, "offset": src.offset}
