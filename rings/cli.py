"""The `rings` command line (CONTRACTS.md §7).

Core commands (replay, net check, rules check, simulate to a file) need only the core; the
commands that talk to Kafka import the runtime in `streams` when they run, so a rule author
can backtest on a laptop without Faust or a broker.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from .errors import InvalidRecord, RingsError, SourceError, SourceErrors

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_RULES = Path(os.environ.get("RINGS_RULES", ROOT / "rules"))
DEFAULT_NET = Path(os.environ.get("RINGS_NET", DEFAULT_RULES / "net.yaml"))


def _die(msg: str, code: int = 2) -> None:
    print(f"rings: {msg}", file=sys.stderr)
    raise SystemExit(code)


def _report(err: RingsError) -> int:
    errors = err.errors if isinstance(err, SourceErrors) else [err]
    for e in errors:
        print(str(e), file=sys.stderr)
    return 1


def _load(args: argparse.Namespace, need_rules: bool = True) -> tuple[Any, Any]:
    from .net import load_net
    from .ruleset import load_rules

    net = load_net(str(args.net))
    rules = load_rules(str(args.rules)) if need_rules else None
    if rules is not None:
        rules.check_against(net)
    return net, rules


def _open_in(path: str) -> BinaryIO:
    return sys.stdin.buffer if path == "-" else open(path, "rb")


def _replay_now(args: argparse.Namespace) -> int | None:
    """`rings replay --now`: epoch ms of RFC 3339, integer ms or `now`; None if not given."""
    v = getattr(args, "now", None)
    if v is None:
        return None
    if v == "now":
        return int(time.time() * 1000)
    from .timefmt import parse_ts
    try:
        return parse_ts(int(v) if v.lstrip("-").isdigit() else v)[0]
    except InvalidRecord:
        pass
    _die(f"--now {v!r}: give an RFC 3339 time with its offset, epoch milliseconds or now")
    return None


# ---------------------------------------------------------------------------- commands

def cmd_replay(args: argparse.Namespace) -> int:
    from .replay import ReplayStats, replay_lines
    from .timefmt import format_ts
    from .watchlist import Watchlist, load_watchlist

    from .gctune import tune_for_throughput

    if args.summary or args.diff:
        return cmd_backtest(args)
    from .pseudonym import from_env

    net, rules = _load(args)
    wl = load_watchlist(args.watchlist, net.sites) if args.watchlist else Watchlist()
    pz = from_env()              # the worker's key: replay must see what the worker sees
    if pz is not None:
        wl = Watchlist(pz.entry(e) for e in wl)
        print("rings replay: subject ids pseudonymised (RINGS_PSEUDONYM_KEY*)",
              file=sys.stderr)
    src = args.sightings
    tune_for_throughput()

    def on_bad(line: int, err: InvalidRecord) -> None:
        print(f"{src}:{line}: {err.reason}: {err.detail}", file=sys.stderr)

    stats = ReplayStats()
    out = sys.stdout.buffer
    n = 0
    now = _replay_now(args)
    with _open_in(src) as f:
        for alert in replay_lines(f, net, rules, wl, on_bad=on_bad, stats=stats,
                                  flush=args.flush, now=now, pseudonyms=pz):
            emitted = format_ts(int(time.time() * 1000), alert.tz)
            out.write(orjson.dumps(alert.to_json(emitted)) + b"\n")
            n += 1
    out.flush()
    print(f"rings replay: {stats.lines} sightings, {stats.bad} bad, {n} alerts",
          file=sys.stderr)
    return 0


def cmd_backtest(args: argparse.Namespace) -> int:
    """`rings replay --summary` / `--diff OTHER`: a summary (rings.backtest) instead of the
    alerts; with --diff, the same traffic under both rule sets, compared per rule (exit 1
    when they differ, as diff(1) does)."""
    import contextlib

    from .backtest import compare, comparison_text, summarize, summary_text
    from .gctune import tune_for_throughput
    from .replay import ReplayStats, replay_lines
    from .ruleset import load_rules
    from .watchlist import Watchlist, load_watchlist

    net, rules = _load(args)
    other = None
    if args.diff:
        other = load_rules(args.diff)
        other.check_against(net)
    wl = load_watchlist(args.watchlist, net.sites) if args.watchlist else Watchlist()
    src = args.sightings
    tune_for_throughput()

    def on_bad(line: int, err: InvalidRecord) -> None:
        print(f"{src}:{line}: {err.reason}: {err.detail}", file=sys.stderr)

    stats = ReplayStats()
    ids = [d.rule_id for d in rules.detectors]
    now = _replay_now(args)
    if other is None:
        with _open_in(src) as f:
            s = summarize(replay_lines(f, net, rules, wl, on_bad=on_bad, stats=stats,
                                       flush=args.flush, now=now), ids)
        print(f"rings replay: {stats.lines} sightings, {stats.bad} bad, {s.alerts} alerts",
              file=sys.stderr)
        print(summary_text(s))
        return 0
    # Two passes over the traffic, one after the other (standard input is read once,
    # into memory).
    stdin = list(sys.stdin.buffer) if src == "-" else None

    def traffic() -> Any:
        return open(src, "rb") if stdin is None else contextlib.nullcontext(stdin)

    with traffic() as f, traffic() as g:
        c = compare(replay_lines(f, net, rules, wl, on_bad=on_bad, stats=stats,
                                 flush=args.flush, now=now),
                    replay_lines(g, net, other, wl, flush=args.flush, now=now),
                    ids + [d.rule_id for d in other.detectors])
    print(f"rings replay: {stats.lines} sightings, {stats.bad} bad, {sum(c.base.values())} "
          f"alerts under {args.rules}, {sum(c.other.values())} under {args.diff}",
          file=sys.stderr)
    print(comparison_text(c, f"{args.rules} (version {rules.version})",
                          f"{args.diff} (version {other.version})"))
    return 1 if c.only_base or c.only_other else 0


def cmd_net_check(args: argparse.Namespace) -> int:
    from .net import load_net

    net = load_net(args.file)
    leaves = [r for r in net.rings.values() if not r.children]
    print(f"{args.file}: ok: net {net.name!r}, {len(net.rings)} rings "
          f"({len(net.root_rings())} root, {len(leaves)} innermost), {len(net.sites)} sites "
          f"({len(net.checkpoints())} checkpoints)")
    return 0


def cmd_rules_check(args: argparse.Namespace) -> int:
    from .net import load_net
    from .ruleset import in_order, load_rules, rule_files

    paths = args.paths or [str(DEFAULT_RULES)]
    net = load_net(args.net)
    failed = 0
    for p in paths:
        try:
            rs = load_rules(p)
            try:
                rs.check_against(net)
                errors = []
            except SourceErrors as e:
                errors = e.errors
            errors += rs.never_fire(net)        # rules that can never fire on this net
            if errors:
                raise SourceErrors(errors)
        except (SourceError, SourceErrors) as e:
            if isinstance(e, SourceErrors):     # as a compiler lists them
                e = SourceErrors(in_order(e.errors, rule_files(p)))
            failed += _report(e)
            continue
        ids = ", ".join(d.rule_id for d in rs.detectors)
        plans = f", {len(rs.plans)} plans ({', '.join(rs.plans)})" if rs.plans else ""
        print(f"{p}: ok: {len(rs.detectors)} rules ({ids}){plans}, version {rs.version}")
    return 1 if failed else 0


def cmd_rules_push(args: argparse.Namespace) -> int:
    """Check, then publish: an invalid set never reaches the topic (and a worker would
    refuse one that did, keeping the set it runs)."""
    import asyncio

    from streams.rules_feed import publish_bundle

    from .net import load_net
    from .rulebundle import make_bundle

    net = load_net(args.net)
    for name in ("by", "reason"):
        if not getattr(args, name).strip():
            _die(f"--{name} must not be empty")
    try:
        bundle = make_bundle(args.path, net, args.by, args.reason, int(time.time() * 1000))
    except (SourceError, SourceErrors) as e:
        _report(e)
        print(f"rings rules push: refused: {args.path} has errors; nothing was pushed",
              file=sys.stderr)
        return 1
    settings = _kafka(args)
    asyncio.run(publish_bundle(settings, bundle))
    print(f"pushed rule set {bundle['version']} ({len(bundle['rules'])} rules, "
          f"{len(bundle['plans'])} plans) to {settings.topic('rules')}")
    return 0


def cmd_rules_test(args: argparse.Namespace) -> int:
    """Rule unit tests (rings.ruletest): exit 0 all pass, 1 a case failed, 2 a broken file."""
    from .ruletest import run_files

    paths = args.files or [str(DEFAULT_RULES / "tests")]
    rep = run_files(paths, sys.stdout, sys.stderr, default_rules=str(DEFAULT_RULES),
                    default_net=str(DEFAULT_NET), rules=args.rules, net=args.net,
                    quiet=args.quiet, verbose=args.verbose)
    return rep.exit_code


def cmd_rules_schema(args: argparse.Namespace) -> int:
    from .rules_schema import schema_text

    sys.stdout.write(schema_text())
    return 0


def cmd_pseudonym(args: argparse.Namespace) -> int:
    """The pseudonym the engine uses for a subject, under the configured key: how a command
    centre that holds the key finds a suspect in pseudonymous alerts."""
    from .pseudonym import from_env

    pz = from_env()
    if pz is None:
        _die("no key: set RINGS_PSEUDONYM_KEY_FILE (or RINGS_PSEUDONYM_KEY)")
    for key in args.subjects:
        if ":" not in key:
            _die(f"{key!r}: give subjects as type:id, e.g. vehicle:蒙K3X521")
        print(f"{key}\t{pz.key(key)}")
    return 0


def cmd_answer_orders(args: argparse.Namespace) -> int:
    """`rings simulate --answer-orders`: simulated checkpoints answer plan orders."""
    from streams.checkpoint_sim import SimStats, run_answer_orders

    from .checkpoints import Checkpoints

    try:
        model = Checkpoints(seed=args.seed, late_fraction=args.late_fraction,
                            never_fraction=args.never_fraction, time_scale=args.time_scale)
    except ValueError as e:
        _die(str(e))
    settings = _kafka(args)
    stats = SimStats()
    try:
        run_answer_orders(settings, model, from_beginning=args.from_beginning,
                          duration=args.duration, quiet=args.quiet, stats=stats)
    except KeyboardInterrupt:
        pass
    print(f"rings simulate: {stats.orders} orders, {stats.acks} acks to "
          f"{settings.topic('plan-acks')}, {stats.cancelled} answers cancelled by "
          f"{stats.stand_downs} stand-down orders, {model.pending} not yet due",
          file=sys.stderr)
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    if args.answer_orders:
        return cmd_answer_orders(args)
    from .net import load_net
    from .scenarios import parse_rules
    from .sim import SimConfig, Simulator

    plant: tuple[str, ...] = ()
    if args.plant:
        try:
            plant = parse_rules(args.plant)
        except ValueError as e:
            _die(f"--plant: {e}")
        if not args.truth:
            _die("--plant needs --truth FILE (the alerts the planted cases must raise)")
    if args.cases < 0:
        _die("--cases cannot be negative")
    net = load_net(str(args.net))
    cfg = SimConfig(rate=args.rate, duration_s=args.duration, seed=args.seed,
                    watch_fraction=args.watch_fraction, subjects=args.subjects,
                    plant=plant, cases=args.cases)
    if args.start:
        cfg.start = args.start
    elif args.topic:
        from .timefmt import format_ts
        cfg.start = format_ts(int(time.time() * 1000), 480)
    try:
        sim = Simulator(net, cfg)
    except ValueError as e:
        _die(str(e))
    for note in sim.plan_notes:
        print(f"rings simulate: {note}", file=sys.stderr)
    if args.watchlist_out:
        with open(args.watchlist_out, "wb") as f:
            for e in sim.watchlist():
                f.write(orjson.dumps(e) + b"\n")
    if args.topic:
        from streams.sim_publish import publish_sim
        settings = _kafka(args)
        n = publish_sim(settings, args.topic, sim, realtime=args.realtime,
                        speed=args.speed, watchlist_topic=args.watchlist_topic)
        print(f"rings simulate: {n} sightings to topic {settings.topic(args.topic)}",
              file=sys.stderr)
    else:
        out = open(args.out, "wb") if args.out and args.out != "-" else sys.stdout.buffer
        try:
            write = out.write
            for rec in sim.sightings():
                write(orjson.dumps(rec) + b"\n")
        finally:
            out.flush()
            if out is not sys.stdout.buffer:
                out.close()
    st = sim.stats
    msg = (f"rings simulate: {st.sightings} sightings ({st.background} background, "
           f"{st.planted} planted), {st.subjects} subjects of a population of "
           f"{sim.population}, {len(sim.watchlisted)} watchlisted")
    if plant:
        pos = sum(c.positive for c in sim.cases)
        msg += f"; {pos} positive and {len(sim.cases) - pos} near-miss cases planted"
    if args.truth:
        truth = sim.truth()
        with open(args.truth, "wb") as f:
            for t in truth:
                f.write(orjson.dumps(t) + b"\n")
        msg += f"; {len(truth)} truth lines to {args.truth}"
    print(msg, file=sys.stderr)
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    from .score import read_jsonl, score, to_json, to_text

    try:
        with _open_in(args.alerts) as f:
            alerts = read_jsonl(f, args.alerts)
        with open(args.truth, "rb") as f:
            truth = read_jsonl(f, args.truth)
    except InvalidRecord as e:
        _die(f"{e.detail} ({e.reason})")
    except OSError as e:
        _die(str(e))
    result = score(alerts, truth)
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(to_json(result), option=orjson.OPT_INDENT_2)
                                + b"\n")
    else:
        print(to_text(result))
    return 0 if result.perfect else 1


def _kafka(args: argparse.Namespace) -> Any:
    from streams.config import KafkaSettings
    from streams.errors import KafkaConfigError
    try:
        return KafkaSettings.from_env(getattr(args, "broker", None))
    except KafkaConfigError as e:       # RINGS_KAFKA_* (security): say what is wrong
        _die(str(e))


def cmd_publish(args: argparse.Namespace) -> int:
    import asyncio

    from streams.kafka_io import publish_lines

    settings = _kafka(args)
    with _open_in(args.file) as f:
        n = asyncio.run(publish_lines(settings, args.topic, f))
    print(f"rings publish: {n} messages to {settings.topic(args.topic)}", file=sys.stderr)
    return 0


def cmd_tail(args: argparse.Namespace) -> int:
    import asyncio

    from streams.kafka_io import tail

    settings = _kafka(args)
    try:
        asyncio.run(tail(settings, args.topic, sys.stdout.buffer,
                         from_beginning=args.from_beginning, idle_timeout=args.idle_timeout,
                         max_messages=args.max))
    except KeyboardInterrupt:
        pass
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from streams.app import WorkerOptions
    from streams.worker import run_worker

    net, rules = _load(args)
    from .pseudonym import from_env

    from streams.ingest_process import mode_from_env

    from streams.stage_process import processes_from_env

    processes = args.processes if args.processes is not None else \
        processes_from_env(args.partitions)
    if not 1 <= processes <= args.partitions:
        _die(f"--processes must be between 1 and --partitions ({args.partitions}), "
             f"not {processes}")
    opts = WorkerOptions(partitions=args.partitions, data_dir=args.data_dir,
                         web_port=args.web_port, web_host=args.web_host,
                         pseudonyms=from_env(), ingest=mode_from_env(), processes=processes)
    # Faust parses sys.argv itself; hand it only the program name.
    sys.argv = sys.argv[:1]
    run_worker(_kafka(args), net, rules, opts, loglevel=args.loglevel,
               log_format=args.log_format)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from streams.bench import BenchConfig, render, run_bench

    if args.events < 1000:
        _die("--events must be at least 1000")
    if args.workers < 1:
        _die("--workers must be at least 1")
    if args.processes is not None and not 1 <= args.processes <= args.partitions:
        _die(f"--processes must be between 1 and --partitions ({args.partitions})")
    net, rules = _load(args)
    cfg = BenchConfig(events=args.events, partitions=args.partitions, rate=args.rate,
                      latency_rate=args.latency_rate, latency_seconds=args.latency_seconds,
                      peers=not args.no_peers, timeout=args.timeout, workers=args.workers,
                      processes=args.processes)

    def say(msg: str) -> None:
        print(f"rings bench: {msg}", file=sys.stderr, flush=True)

    import logging
    # Fresh topics answer "not leader" for a moment; aiokafka retries and warns each time.
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    explicit = bool(args.broker or os.environ.get("RINGS_BROKER"))
    result = run_bench(_kafka(args), net, rules, cfg, explicit, say)
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(result) + b"\n")
    else:
        print(render(result))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from streams.demo import run_demo

    return run_demo(args)


# ---------------------------------------------------------------------------- plans
# Exit codes of `rings plan`: 0 done, 1 refused by the worker (or unknown activation),
# 2 refused here before sending, 3 no answer (no broker, no worker, or not in time).

def _plan_text(name: str, value: str) -> str:
    """`by` and `reason` as the desk accepts them (rings.lockdown: non-empty, bounded)."""
    from .lockdown import MAX_TEXT

    if not value.strip() or len(value) > MAX_TEXT:
        _die(f"--{name} must be non-empty text of at most {MAX_TEXT} characters")
    return value


def _plan_command(args: argparse.Namespace, cmd: dict[str, Any], key: str,
                  on_status: Any) -> Any:
    """Send a plan command and wait for the worker's status record or refusal; exit 1 on
    a refusal, 3 when nothing answers."""
    import asyncio

    from streams.errors import BrokerUnavailable
    from streams.plan_cli import MissingTopic, command

    from .planview import refusal

    if args.wait < 0:
        _die("--wait cannot be negative")
    settings = _kafka(args)
    cid = cmd["id"]
    try:
        ans = asyncio.run(command(settings, cmd, key, args.wait, on_status,
                                  lambda _t, d: cid in str(d.get("original", ""))))
    except (BrokerUnavailable, MissingTopic) as e:
        _die(str(e), 3)
    if args.wait <= 0:
        return None
    if ans is None:
        _die(f"the worker did not answer within {args.wait:g}s (is `rings worker` running "
             f"against {settings.broker}, topic prefix {settings.prefix!r}?); command "
             f"{cid} was sent and may still be applied", 3)
    if ans.kind == "dlq":
        _die(refusal(ans.record), 1)
    return ans.record


def cmd_plan_activate(args: argparse.Namespace) -> int:
    import uuid

    from .lockdown import activation_id
    from .planview import activated_summary

    net, rules = _load(args)
    plan = rules.plans.get(args.plan)
    if plan is None:
        _die(f"unknown plan {args.plan!r} (the rules in {args.rules} have: "
             f"{', '.join(sorted(rules.plans)) or 'none'})")
    if args.site is not None and args.site not in net.sites:
        _die(f"unknown site {args.site!r}: not a site of net {net.name!r}")
    if args.site is None and plan.scope.needs_site:
        _die(f"plan {plan.id} is {plan.scope.describe()}: name the site with --site")
    if not plan.sites(net, args.site):
        _die(f"plan {plan.id} orders no site here ({plan.scope.describe(net)})")
    cid = uuid.uuid4().hex
    cmd = {"cmd": "activate", "plan": plan.id, "site": args.site,
           "by": _plan_text("by", args.by), "reason": _plan_text("reason", args.reason),
           "id": cid}
    if args.site is None:
        del cmd["site"]                # plan-command.schema.json: a site is a string
    aid = activation_id("command", plan.id, cid)
    st = _plan_command(args, cmd, plan.id,
                       lambda _t, d: d.get("activation") == aid)
    if st is None:
        print(f"activation {aid}: command {cid} sent (not waiting for the worker)")
    else:
        print(activated_summary(st))
    return 0


def cmd_plan_stand_down(args: argparse.Namespace) -> int:
    import uuid

    from .planview import stood_down_summary

    by = _plan_text("by", args.by)
    reason = _plan_text("reason", args.reason)
    # `id` is not read by the desk (it ignores unknown fields): it only lets a refusal on
    # plan-dlq be told apart from anybody else's.
    cid = uuid.uuid4().hex
    cmd = {"cmd": "stand-down", "activation": args.id, "by": by, "reason": reason, "id": cid}

    def mine(_t: str, d: dict[str, Any]) -> bool:
        sd = d.get("stood_down") or {}
        return d.get("activation") == args.id and d.get("state") == "stood-down" and \
            sd.get("by") == by and sd.get("reason") == reason

    st = _plan_command(args, cmd, args.id, mine)
    if st is None:
        print(f"activation {args.id}: stand-down command {cid} sent (not waiting for the "
              "worker)")
    else:
        print(stood_down_summary(st))
    return 0


def cmd_plan_status(args: argparse.Namespace) -> int:
    import asyncio

    from streams.errors import BrokerUnavailable
    from streams.plan_cli import MissingTopic, read_status

    from .planview import activation_detail, activations_table, find_activation, \
        latest_by_activation

    try:
        latest = latest_by_activation(asyncio.run(read_status(_kafka(args))))
    except MissingTopic as e:
        print(f"rings: {e}", file=sys.stderr)
        latest = {}
    except BrokerUnavailable as e:
        _die(str(e), 3)
    out = sys.stdout.buffer
    if args.id is not None:
        st, cands = find_activation(latest, args.id)
        if st is None:
            more = f" (it starts {len(cands)}: {', '.join(cands)})" if cands else ""
            _die(f"no activation {args.id!r} on plan-status{more}", 1)
        if args.json:
            out.write(orjson.dumps(st) + b"\n")
        else:
            print(activation_detail(st))
        return 0
    shown = [s for s in latest.values() if args.all or s.get("state") != "stood-down"]
    if args.json:
        for s in shown:
            out.write(orjson.dumps(s) + b"\n")
    elif not shown:
        hidden = len(latest) - len(shown)
        print("no activations" + (" (only stood-down ones: --all shows them)" if hidden
                                  else ""))
    else:
        print(activations_table(latest, include_stood_down=args.all))
    return 0


def cmd_plan_list(args: argparse.Namespace) -> int:
    from .planview import plans_table

    net, rules = _load(args)
    if not rules.plans:
        print(f"no plans in {args.rules}")
        return 0
    print(plans_table(rules.plans, net))
    return 0


# ---------------------------------------------------------------------------- parser

def _common_net(p: argparse.ArgumentParser, rules: bool = True) -> None:
    p.add_argument("--net", default=str(DEFAULT_NET), help="net file (default: the sample net)")
    if rules:
        p.add_argument("--rules", default=str(DEFAULT_RULES),
                       help="rules directory or file (default: the shipped rules)")


def _broker(p: argparse.ArgumentParser) -> None:
    p.add_argument("--broker", help="Kafka bootstrap address (default: $RINGS_BROKER or "
                                    "127.0.0.1:9092)")


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="rings", description="Streaming event correlation for "
                                 "a three-ring control net.")
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("replay", help="run the detectors over a sightings file, in event time")
    p.add_argument("sightings", help="JSON lines file of sightings, or - for stdin")
    _common_net(p)
    p.add_argument("--watchlist", help="JSON lines file of watchlist entries")
    p.add_argument("--flush", action="store_true",
                   help="at the end, let event time run on: judge the last sightings and "
                        "fire every pending deadline (the worker would wait for more input)")
    p.add_argument("--now", metavar="TIME",
                   help="refuse sightings beyond the rule set's event-time bounds (engine "
                        "max_skew, max_age) around this wall-clock time (RFC 3339, epoch "
                        "ms, or `now`), as the worker does around its clock; default: a "
                        "recorded file has no clock, every valid time is accepted")
    bt = p.add_mutually_exclusive_group()
    bt.add_argument("--summary", action="store_true",
                    help="backtest: print alerts per rule and severity, per hour of event "
                         "time and the top subjects, instead of the alerts")
    bt.add_argument("--diff", metavar="OTHER_RULES_DIR",
                    help="backtest: run these rules too on the same traffic and print, per "
                         "rule, the alerts under each and the difference, with examples "
                         "(exit 1 if they differ)")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("net", help="net files")
    nsub = p.add_subparsers(dest="net_cmd", required=True)
    q = nsub.add_parser("check", help="validate a net file")
    q.add_argument("file")
    q.set_defaults(func=cmd_net_check)

    p = sub.add_parser("rules", help="rule sets")
    rsub = p.add_subparsers(dest="rules_cmd", required=True)
    q = rsub.add_parser("check", help="validate rule files or directories (rules and plans)")
    q.add_argument("paths", nargs="*")
    q.add_argument("--net", default=str(DEFAULT_NET),
                   help="net the plans are checked against (default: the sample net)")
    q.set_defaults(func=cmd_rules_check)
    q = rsub.add_parser("schema", help="print the JSON Schema of rules and plans files (for "
                        "editors; shipped as rings/schemas/rules.schema.json)")
    q.set_defaults(func=cmd_rules_schema)
    q = rsub.add_parser("test", help="run rule unit tests: sightings and a watchlist in, the "
                        "expected alerts out (exit 1 a case failed, 2 a broken test file)")
    q.add_argument("files", nargs="*", help="test files (YAML) or directories of them "
                                            "(default: the shipped rules/tests)")
    q.add_argument("--rules", help="run the tests against this rules directory instead of "
                                   "the one each file names")
    q.add_argument("--net", help="and this net instead of the one each file names")
    q.add_argument("-q", "--quiet", action="store_true", help="print only failing cases")
    q.add_argument("-v", "--verbose", action="store_true",
                   help="also print the alerts of passing cases")
    q.set_defaults(func=cmd_rules_test)
    q = rsub.add_parser("push", help="check a rules directory and publish it to the `rules` "
                        "topic: running workers switch to it without a restart")
    q.add_argument("path", help="rules directory (rules.yaml, plans.yaml, ...)")
    q.add_argument("--net", default=str(DEFAULT_NET),
                   help="net the workers run (default: the sample net)")
    q.add_argument("--by", required=True, help="who pushes (kept in rules-audit)")
    q.add_argument("--reason", required=True, help="why (kept in rules-audit)")
    _broker(q)
    q.set_defaults(func=cmd_rules_push)

    p = sub.add_parser("pseudonym", help="the pseudonym of subjects under the configured key")
    p.add_argument("subjects", nargs="+", metavar="TYPE:ID")
    p.set_defaults(func=cmd_pseudonym)

    p = sub.add_parser("simulate", help="synthetic traffic over a net, to a file or a topic")
    _common_net(p, rules=False)
    p.add_argument("--rate", type=float, default=50.0, help="sightings per second (event time)")
    p.add_argument("--duration", type=float, default=3600.0, help="seconds of event time")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--start", help="event time of the start (RFC 3339); default "
                                   "2026-11-29T00:00:00+08:00, or now with --topic")
    p.add_argument("--subjects", type=int, help="population size (default: enough for --rate)")
    p.add_argument("--watch-fraction", type=float, default=0.0005,
                   help="share of subjects on a watchlist")
    p.add_argument("--watchlist-out", help="write the watchlist entries (JSON lines) here")
    p.add_argument("--out", "-o", help="output file (default: stdout)")
    p.add_argument("--topic", help="publish to this topic instead of a file")
    p.add_argument("--watchlist-topic", help="with --topic: also publish the watchlist here")
    p.add_argument("--realtime", action="store_true",
                   help="with --topic: pace messages to their event time")
    p.add_argument("--speed", type=float, default=1.0, help="with --realtime: time factor")
    p.add_argument("--plant", metavar="all|RULE[,RULE...]",
                   help="plant each rule's pattern (and near misses) on fresh subjects")
    p.add_argument("--cases", type=int, default=5,
                   help="with --plant: positive (and as many near-miss) cases per rule")
    p.add_argument("--truth", metavar="TRUTH.jsonl",
                   help="write the alerts the run must raise (planted cases and every "
                        "watchlist-hit), one JSON line each")
    p.add_argument("--answer-orders", action="store_true",
                   help="instead of traffic: simulated checkpoints answer plan-orders on "
                        "plan-acks (--duration is then wall-clock seconds, 0: until Ctrl-C)")
    p.add_argument("--time-scale", type=float, default=1.0,
                   help="with --answer-orders: divide every answer's delay by this")
    p.add_argument("--late-fraction", type=float, default=0.15,
                   help="with --answer-orders: share of sites that miss a deadline")
    p.add_argument("--never-fraction", type=float, default=0.05,
                   help="with --answer-orders: share of sites that never answer")
    p.add_argument("--from-beginning", action="store_true",
                   help="with --answer-orders: also answer the orders already on the topic")
    p.add_argument("--quiet", action="store_true",
                   help="with --answer-orders: do not print each ack sent")
    _broker(p)
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("score", help="match alerts to a truth file: recall and precision "
                                     "per rule")
    p.add_argument("alerts", help="alerts, JSON lines (rings replay output), or - for stdin")
    p.add_argument("--truth", required=True, help="truth file of rings simulate --truth")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=cmd_score)

    p = sub.add_parser("publish", help="send each line of a file as one message")
    p.add_argument("file", help="file of lines, or - for stdin")
    p.add_argument("--topic", required=True)
    _broker(p)
    p.set_defaults(func=cmd_publish)

    p = sub.add_parser("tail", help="print a topic's message values as JSON lines")
    p.add_argument("topic")
    p.add_argument("--from-beginning", action="store_true")
    p.add_argument("--idle-timeout", type=float, help="exit after this many idle seconds")
    p.add_argument("--max", type=int, help="exit after this many messages")
    _broker(p)
    p.set_defaults(func=cmd_tail)

    p = sub.add_parser("worker", help="run the streaming engine on Kafka")
    _common_net(p)
    _broker(p)
    p.add_argument("--web-port", type=int, default=6066)
    p.add_argument("--web-host", default=os.environ.get("RINGS_WEB_HOST", "127.0.0.1"),
                   help="address /metrics and /ready listen on (default: $RINGS_WEB_HOST or "
                   "127.0.0.1; 0.0.0.0 in a container)")
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--processes", type=int, default=None,
                   help="stage processes, each with its share of the partitions (default: "
                   "$RINGS_PROCESSES, or the cores this process may use, at most "
                   "--partitions)")
    p.add_argument("--data-dir", default=os.environ.get("RINGS_DATA_DIR", ".rings-data"))
    p.add_argument("--loglevel", default=os.environ.get("RINGS_LOGLEVEL", "info"))
    p.add_argument("--log-format", choices=("text", "json"),
                   default=os.environ.get("RINGS_LOG_FORMAT", "text"),
                   help="json: one JSON object per line (ts, level, logger, message); "
                   "default: $RINGS_LOG_FORMAT or text")
    p.set_defaults(func=cmd_worker)

    p = sub.add_parser("bench", help="throughput and alert latency, side by side with peers")
    _common_net(p)
    _broker(p)
    p.add_argument("--events", type=int, default=200_000,
                   help="sightings of simulated traffic (default 200,000: ~190,000 subjects)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--rate", type=float, default=200.0,
                   help="sightings per second of simulated event time (lower: the traffic "
                        "spans more event time, and state expires during the run)")
    p.add_argument("--latency-rate", type=float, default=2000.0,
                   help="offered sightings per second in the latency phase")
    p.add_argument("--latency-seconds", type=float, default=None,
                   help="length of the latency phase (default: 20 s, less for small runs)")
    p.add_argument("--workers", type=int, default=1,
                   help="worker processes in one consumer group (scale-out; start at once)")
    p.add_argument("--processes", type=int, default=None,
                   help="stage processes of each worker (default: the worker's own, "
                   "$RINGS_PROCESSES or the cores, at most --partitions)")
    p.add_argument("--no-peers", action="store_true",
                   help="skip the aiokafka, Faust and Quix Streams measurements")
    p.add_argument("--timeout", type=float, default=900.0, help="give up after this long")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("demo", help="local Kafka, a worker, live simulated traffic, alerts")
    p.add_argument("--duration", type=float, default=120.0, help="seconds to run (0: until "
                                                                   "Ctrl-C)")
    p.add_argument("--rate", type=float, default=200.0)
    _broker(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("plan", help="lockdown plans: activate, stand down, status, list")
    psub = p.add_subparsers(dest="plan_cmd", required=True)
    q = psub.add_parser("activate", help="activate a plan and wait for the worker to order "
                                         "the sites (exit 1 refused, 2 invalid, 3 no answer)")
    q.add_argument("plan", help="plan id (see `rings plan list`)")
    q.add_argument("--site", metavar="SITE", help="the site the plan is activated at (needed by plans whose "
                                  "scope is a distance from it)")
    q.add_argument("--by", required=True, metavar="WHO", help="who activates it")
    q.add_argument("--reason", required=True, metavar="TEXT", help="why")
    q.add_argument("--wait", type=float, default=30.0, metavar="SECONDS",
                   help="seconds to wait for the worker's answer (0: send and return)")
    _common_net(q)
    _broker(q)
    q.set_defaults(func=cmd_plan_activate)
    q = psub.add_parser("stand-down", help="stand an activation down and wait for the worker "
                                           "(exit 1 refused, 3 no answer)")
    q.add_argument("id", help="activation id")
    q.add_argument("--by", required=True, metavar="WHO", help="who stands it down")
    q.add_argument("--reason", required=True, metavar="TEXT", help="why")
    q.add_argument("--wait", type=float, default=30.0, metavar="SECONDS",
                   help="seconds to wait for the worker's answer (0: send and return)")
    _broker(q)
    q.set_defaults(func=cmd_plan_stand_down)
    q = psub.add_parser("status", help="activations (latest status of each, from "
                                       "plan-status), or one activation's sites")
    q.add_argument("id", nargs="?", help="activation id (or a unique prefix of it)")
    q.add_argument("--all", action="store_true", help="include stood-down activations")
    q.add_argument("--json", action="store_true", help="the latest status record(s) as JSON "
                                                       "lines")
    _broker(q)
    q.set_defaults(func=cmd_plan_status)
    q = psub.add_parser("list", help="the plans of the rules directory")
    _common_net(q)
    q.set_defaults(func=cmd_plan_list)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (SourceError, SourceErrors) as e:
        return _report(e)
    except RingsError as e:
        print(f"rings: {e}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
