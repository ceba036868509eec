"""`rings worker`: load the net and rules, make sure the topics exist, run the Faust worker."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from rings.gctune import tune_for_throughput
from rings.net import Net
from rings.ruleset import RuleSet

from .app import WorkerOptions, build_app
from .config import (ALERTS, BY_PAIR, BY_SITE, BY_SUBJECT, ENGINE_DLQ, PSEUDO_WATCHLIST,
                     SIGHTINGS, SIGHTINGS_DLQ, WATCHLIST, KafkaSettings)
from .changelog import MAX_FLUSH_BYTES
from .kafka_io import ensure_topics, topic_partitions, wait_for_broker
from .lockdown import topic_specs as plan_topic_specs
from .rules_feed import TOPICS as RULES_TOPICS
from .rules_feed import read_latest


def topic_specs(partitions: int) -> dict[str, dict]:
    return {
        SIGHTINGS: {"partitions": partitions},
        SIGHTINGS_DLQ: {"partitions": partitions},
        ALERTS: {"partitions": partitions},
        WATCHLIST: {"partitions": partitions, "compact": True},
        PSEUDO_WATCHLIST: {"partitions": partitions, "compact": True},
        # Internal, created here too: Faust subscribes before it creates topics, and a
        # group whose topics do not exist yet is assigned nothing.
        BY_SUBJECT: {"partitions": partitions},
        BY_SITE: {"partitions": partitions},
        BY_PAIR: {"partitions": partitions},
        ENGINE_DLQ: {"partitions": 1},
        **{f"rings-{t}-state-changelog": {"partitions": partitions, "compact": True,
                                          "max_bytes": MAX_FLUSH_BYTES}
           for t in ("subject", "site", "pair")},
        **plan_topic_specs(),
        **RULES_TOPICS,
    }


def prepare(settings: KafkaSettings, partitions: int, net: Net, timeout: float = 60.0
            ) -> tuple[int, RuleSet | None, dict | None, int]:
    """Wait for the broker, create missing topics; return the partitions of `sightings`,
    the rule set last pushed to the `rules` topic (None if none) and where to follow it."""
    async def go() -> tuple[int, RuleSet | None, dict | None, int]:
        await wait_for_broker(settings, timeout)
        await ensure_topics(settings, topic_specs(partitions))
        pushed, bundle, offset = await read_latest(settings, net)
        return await topic_partitions(settings, SIGHTINGS), pushed, bundle, offset
    return asyncio.run(go())


def run_worker(settings: KafkaSettings, net: Net, rules: RuleSet, opts: WorkerOptions,
               loglevel: str = "info", log_format: str = "text") -> None:
    if log_format == "json":            # one JSON object per line (streams.logjson)
        from .logjson import configure_root
        # From here (Faust's worker sets it up again, the same way, when it starts).
        configure_root(loglevel)
        logging.captureWarnings(True)   # warnings too, as records, not as bare text
    opts.source_partitions, pushed, bundle, offset = prepare(settings, opts.partitions, net)
    if pushed is not None and bundle is not None:
        # A restart keeps what was pushed: the files it was started with may be older.
        # A warning: an operator who started it with other files should notice.
        logging.getLogger("rings.worker").warning(
            "running rule set %s from the rules topic (pushed by %s at %s), not %s from the "
            "rules directory", pushed.version, bundle.get("by"), bundle.get("pushed"),
            rules.version)
        rules = pushed
    # (for the ingest and stage processes)
    opts.loglevel, opts.log_format = loglevel, log_format
    app, _ = build_app(settings, net, rules, opts, rules_offset=offset)
    tune_for_throughput()
    run_app(app, loglevel, log_format)


def run_app(app: Any, loglevel: str, log_format: str) -> None:
    """Run a worker's app (in the worker's process, or in one of its stage processes)
    until it is stopped."""
    from faust.worker import Worker

    log_config = None
    if log_format == "json":
        from .logjson import logging_config
        log_config = logging_config(loglevel)
    logging.getLogger("rings").setLevel(loglevel.upper())
    worker = Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False,
                    override_logging=True, logging_config=log_config)
    # At level warning and above Faust shows a terminal spinner, and to spin it on every
    # record it sets the root logger to DEBUG: each Kafka send then builds a debug record
    # (15% of the worker's time, measured). No spinner: logging stays at the level asked.
    worker.spinner = None
    worker.execute_from_commandline()
