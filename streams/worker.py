"""`rings worker`: load the net and rules, make sure the topics exist, run the Faust worker."""

from __future__ import annotations

import asyncio
import logging

from rings.gctune import tune_for_throughput
from rings.net import Net
from rings.ruleset import RuleSet

from .app import WorkerOptions, build_app
from .config import (ALERTS, BY_PAIR, BY_SITE, BY_SUBJECT, ENGINE_DLQ, SIGHTINGS,
                     SIGHTINGS_DLQ, WATCHLIST, KafkaSettings)
from .kafka_io import ensure_topics, topic_partitions, wait_for_broker
from .lockdown import topic_specs as plan_topic_specs


def topic_specs(partitions: int) -> dict[str, dict]:
    return {
        SIGHTINGS: {"partitions": partitions},
        SIGHTINGS_DLQ: {"partitions": partitions},
        ALERTS: {"partitions": partitions},
        WATCHLIST: {"partitions": partitions, "compact": True},
        # Internal, created here too: Faust subscribes before it creates topics, and a
        # group whose topics do not exist yet is assigned nothing.
        BY_SUBJECT: {"partitions": partitions},
        BY_SITE: {"partitions": partitions},
        BY_PAIR: {"partitions": partitions},
        ENGINE_DLQ: {"partitions": 1},
        **{f"rings-{t}-state-changelog": {"partitions": partitions, "compact": True}
           for t in ("subject", "site", "pair")},
        **plan_topic_specs(),
    }


def prepare(settings: KafkaSettings, partitions: int, timeout: float = 60.0) -> int:
    """Wait for the broker, create missing topics; return the partitions of `sightings`."""
    async def go() -> int:
        await wait_for_broker(settings, timeout)
        await ensure_topics(settings, topic_specs(partitions))
        return await topic_partitions(settings, SIGHTINGS)
    return asyncio.run(go())


def run_worker(settings: KafkaSettings, net: Net, rules: RuleSet, opts: WorkerOptions,
               loglevel: str = "info") -> None:
    opts.source_partitions = prepare(settings, opts.partitions)
    from faust.worker import Worker

    app, _ = build_app(settings, net, rules, opts)
    tune_for_throughput()
    logging.getLogger("rings").setLevel(loglevel.upper())
    worker = Worker(app, loglevel=loglevel, quiet=True, redirect_stdouts=False,
                    override_logging=True)
    # At level warning and above Faust shows a terminal spinner, and to spin it on every
    # record it sets the root logger to DEBUG: each Kafka send then builds a debug record
    # (15% of the worker's time, measured). No spinner: logging stays at the level asked.
    worker.spinner = None
    worker.execute_from_commandline()
