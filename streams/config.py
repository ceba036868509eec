"""Settings shared by every command that talks to Kafka.

One place reads the environment, so the worker, publish, tail, simulate and bench all agree
on the broker and on topic names (`RINGS_TOPIC_PREFIX` lets several engines share a cluster).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

DEFAULT_BROKER = "127.0.0.1:9092"

# Contract topics (CONTRACTS.md) and internal ones, before the prefix.
SIGHTINGS = "sightings"
SIGHTINGS_DLQ = "sightings-dlq"
WATCHLIST = "watchlist"
ALERTS = "alerts"
BY_SUBJECT = "rings-by-subject"       # internal: batch envelopes, partitioned by subject key
BY_SITE = "rings-by-site"             # internal: vehicle sightings, partitioned by site (convoy)
BY_PAIR = "rings-by-pair"             # internal: co-passes, partitioned by pair of vehicles
ENGINE_DLQ = "rings-engine-dlq"       # internal: envelopes the engine failed on (a bug)
# Lockdown plans (CONTRACTS.md §6)
PLAN_COMMANDS = "plan-commands"       # in: activate / stand-down
PLAN_ACKS = "plan-acks"               # in: acknowledgements and closures from the sites
PLAN_ORDERS = "plan-orders"           # out: one order per site and activation
PLAN_STATUS = "plan-status"           # out: an activation's status on every change
PLAN_AUDIT = "plan-audit"             # out, compacted: who activated / stood down, and why
PLAN_DLQ = "plan-dlq"                 # out: refused commands and acks, with the reason
PLAN_INBOX = "rings-plan-inbox"       # internal: every plan input, in one partition


@dataclass(frozen=True, slots=True)
class KafkaSettings:
    broker: str = DEFAULT_BROKER
    prefix: str = ""
    client_options: dict = field(default_factory=dict)   # extra aiokafka options (security)

    def topic(self, name: str) -> str:
        return self.prefix + name

    @staticmethod
    def from_env(broker: str | None = None, prefix: str | None = None) -> "KafkaSettings":
        return KafkaSettings(
            broker=broker or os.environ.get("RINGS_BROKER") or DEFAULT_BROKER,
            prefix=prefix if prefix is not None else os.environ.get("RINGS_TOPIC_PREFIX", ""),
        )
