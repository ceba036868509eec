"""`rings worker --log-format json`: one JSON object per line, for log shippers.

Every record has `ts` (UTC, RFC 3339 with milliseconds), `level`, `logger` and `message`;
a record with an exception adds `exc` (the traceback as text). Nothing at info level names a
subject (plate, person id, ...): the engine logs counts, reasons, rule, plan and activation
ids only, and the integration suite checks a worker's info log on real traffic for it.
"""

from __future__ import annotations

import logging
import logging.config
import time
from typing import Any

import orjson

FORMATS = ("text", "json")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        secs = int(record.created)
        ms = int((record.created - secs) * 1000)
        d: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{ms:03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            d["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            d["exc"] = record.exc_text
        return orjson.dumps(d, default=str).decode()


def logging_config(level: str) -> dict[str, Any]:
    """For mode's worker (`logging_config`, merged into its own): the root handler writes
    JSON lines to standard error instead of mode's coloured text."""
    return {
        "merge": True,
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"default": {"class": "logging.StreamHandler", "formatter": "json",
                                 "level": level.upper(), "stream": "ext://sys.stderr"}},
    }


def configure_root(level: str) -> None:
    """The root logger writes JSON lines now (before mode's worker, or in a child process
    that has none)."""
    cfg = logging_config(level)
    logging.config.dictConfig({"version": 1, "disable_existing_loggers": False,
                               "formatters": cfg["formatters"], "handlers": cfg["handlers"],
                               "root": {"level": level.upper(), "handlers": ["default"]}})
