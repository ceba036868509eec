"""What `rings plan` prints: plan activations and plans as tables a duty officer can read.

Pure formatting of the records the worker publishes (CONTRACTS.md §6: the status records of
`rings.lockdown.Desk.status`) and of the plans of a rule set, kept apart from the Kafka I/O
(`streams.plan_cli`) so that it can be tested on a desk's real output without a broker.
Times are shown as the RFC 3339 strings they come as (the worker's own proof, never
re-zoned); durations in seconds as `4m 12s`.
"""

from __future__ import annotations

import textwrap
from typing import Any, Iterable, Mapping, Sequence

from .net import Net
from .plans import Plan
from .timefmt import format_duration

NONE = "-"


def fmt_seconds(s: float | None) -> str:
    """A duration in seconds for a human: `0.4s`, `42s`, `4m 12s`, `1h 5m`, `2d 3h`.

    Below ten seconds a tenth is kept (a fast acknowledgement is worth seeing as such);
    above, whole seconds, and only the two largest units."""
    if s is None:
        return NONE
    if s < 0:
        return "-" + fmt_seconds(-s)
    if s < 10:
        return f"{s:.1f}s"
    total = int(round(s))
    parts = []
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)):
        n, total = divmod(total, size)
        if n or parts:
            parts.append(f"{n}{unit}")
    # the two largest units, dropping a trailing zero ("5m", not "5m 0s")
    shown = parts[:2]
    if len(shown) == 2 and shown[1].startswith("0"):
        shown = shown[:1]
    return " ".join(shown)


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A plain text table: columns padded to their widest cell, `-` for missing (None)
    values; an empty string stays blank (a mark that is not there)."""
    body = [[NONE if c is None else str(c) for c in r] for r in rows]
    widths = [len(h) for h in headers]
    for r in body:
        for i, c in enumerate(r):
            widths[i] = max(widths[i], len(c))

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()

    out = [line(list(headers)), line(["-" * w for w in widths])]
    out += [line(r) for r in body]
    return "\n".join(out)


# ---------------------------------------------------------------------------- status records

def latest_by_activation(records: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """The last status record of each activation, in the order they were read.

    The worker writes an activation's records in order under its id as key, so the last
    one read is its current status; records that are not status objects are skipped."""
    out: dict[str, dict[str, Any]] = {}
    for r in records:
        if isinstance(r, Mapping) and isinstance(r.get("activation"), str):
            out.pop(r["activation"], None)      # re-insert: dict order = order of change
            out[r["activation"]] = dict(r)
    return out


def find_activation(latest: Mapping[str, dict[str, Any]], ident: str
                    ) -> tuple[dict[str, Any] | None, list[str]]:
    """The status of activation `ident`, also by a unique prefix of its id.

    Returns (status, []) or (None, the ids the prefix matches: none or several)."""
    if ident in latest:
        return latest[ident], []
    cands = sorted(a for a in latest if a.startswith(ident)) if ident else []
    if len(cands) == 1:
        return latest[cands[0]], []
    return None, cands


def _sites_closed(st: Mapping[str, Any]) -> str:
    sites = st.get("sites") or {}
    closed = sum(1 for v in sites.values() if v == "closed")
    return f"{closed}/{len(sites)}"


def activations_table(latest: Mapping[str, dict[str, Any]], include_stood_down: bool = False
                      ) -> str:
    """One line per activation, oldest first: what is going on, and how fast it went."""
    shown = [s for s in latest.values()
             if include_stood_down or s.get("state") != "stood-down"]
    shown.sort(key=lambda s: (str(s.get("activated") or ""), str(s.get("activation"))))
    rows = [(s.get("activation"), s.get("plan"), s.get("state"), s.get("site"),
             s.get("activated"), s.get("triggered_by"), _sites_closed(s),
             len(s.get("overdue") or ()), fmt_seconds(s.get("time_to_respond_s")),
             fmt_seconds(s.get("time_to_close_s")))
            for s in shown]
    return table(("activation", "plan", "state", "site", "activated", "triggered by",
                  "closed", "overdue", "responded in", "closed in"), rows)


def activation_detail(st: Mapping[str, Any]) -> str:
    """One activation: its header (who, why, deadlines, how fast) and one line per site.

    A site still missing after a deadline is marked OVERDUE; one that answered, but after
    the deadline, is marked late (the proof keeps both apart)."""
    sd = st.get("stood_down")
    stood = NONE if not sd else f"{sd.get('at')} by {sd.get('by')}: {sd.get('reason')}"
    trig = st.get("triggered_by")
    trigger = st.get("trigger") or {}
    if trigger.get("rule"):
        trig = f"{trig} ({trigger.get('rule')} on {_subject(trigger.get('subject'))})"
    if st.get("triggers") and st["triggers"] > 1:
        trig = f"{trig}, {st['triggers']} alerts"
    head = [
        ("activation", st.get("activation")),
        ("plan", st.get("plan")),
        ("state", st.get("state")),
        ("site", st.get("site")),
        ("action", st.get("action")),
        ("activated", st.get("activated")),
        ("respond_by", st.get("respond_by")),
        ("close_by", st.get("close_by")),
        ("triggered_by", trig),
        ("by", st.get("by")),
        ("reason", st.get("reason")),
        ("time_to_respond_s", _seconds_both(st.get("time_to_respond_s"))),
        ("time_to_close_s", _seconds_both(st.get("time_to_close_s"))),
        ("stood_down", stood),
        ("updated", st.get("updated")),
    ]
    w = max(len(k) for k, _ in head)
    lines = [f"{k.ljust(w)}  {NONE if v is None or v == '' else v}" for k, v in head]
    overdue = set(st.get("overdue") or ())
    late = set(st.get("late") or ())
    times = st.get("site_times") or {}
    rows = []
    for site, state in sorted((st.get("sites") or {}).items()):
        t = times.get(site) or {}
        mark = "OVERDUE" if site in overdue else "late" if site in late else ""
        rows.append((site, state, t.get("acknowledged"), t.get("closed"), t.get("by"), mark))
    closed = sum(1 for r in rows if r[1] == "closed")
    lines += ["", f"{len(rows)} sites: {closed} closed, {len(overdue)} overdue, "
                  f"{len(late)} late",
              table(("site", "state", "acknowledged", "closed", "by", ""), rows)]
    return "\n".join(lines)


def _seconds_both(s: float | None) -> str:
    return NONE if s is None else f"{s:g} ({fmt_seconds(s)})"


def _subject(s: Any) -> str:
    if isinstance(s, Mapping):
        return f"{s.get('type')}:{s.get('id')}"
    return str(s)


def activated_summary(st: Mapping[str, Any]) -> str:
    """What `rings plan activate` prints once the worker has acted on the command."""
    return (f"activation {st.get('activation')}: plan {st.get('plan')}, "
            f"{len(st.get('sites') or {})} sites ordered to {st.get('action') or 'close'}\n"
            f"  respond by {st.get('respond_by')}\n"
            f"  close by   {st.get('close_by')}")


def stood_down_summary(st: Mapping[str, Any]) -> str:
    """What `rings plan stand-down` prints once the worker has stood the activation down."""
    sd = st.get("stood_down") or {}
    return (f"activation {st.get('activation')}: plan {st.get('plan')} stood down at "
            f"{sd.get('at')}; {len(st.get('sites') or {})} sites told to stand down "
            f"({_sites_closed(st)} had closed)")


def refusal(dead: Mapping[str, Any]) -> str:
    """A command the worker refused (its plan-dlq record)."""
    return f"refused by the worker: {dead.get('reason')}: {dead.get('detail')}"


# ---------------------------------------------------------------------------- plans

def plan_site_count(plan: Plan, net: Net) -> str:
    """How many sites a plan orders: a number, or for a plan whose scope is a distance
    from the activation's site, the least and most over every site of the net."""
    if not plan.scope.needs_site:
        return str(len(plan.sites(net, None)))
    counts = [len(plan.sites(net, s)) for s in net.sites]
    if not counts:
        return "depends on the site"
    return f"depends on the site ({min(counts)}-{max(counts)})"


def plans_table(plans: Mapping[str, Plan], net: Net, width: int = 100) -> str:
    """The plans of a rule set: a table, then each plan's description."""
    rows = [(p.id, p.scope.describe(net), plan_site_count(p, net),
             format_duration(p.respond_ms), format_duration(p.close_ms), p.escalate)
            for p in plans.values()]
    out = [table(("plan", "scope", "sites", "respond", "close", "escalate"), rows)]
    for p in plans.values():
        if p.description:
            out.append("")
            out.append(textwrap.fill(" ".join(p.description.split()), width=width,
                                     initial_indent=f"{p.id}: ", subsequent_indent="  "))
    return "\n".join(out)
