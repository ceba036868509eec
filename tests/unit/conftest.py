"""Fixtures of the core's unit tests: the sample net and the shipped rules, loaded once."""

from __future__ import annotations

import gc
from typing import Iterator

import pytest

from rings.net import Net, load_net
from rings.ruleset import RuleSet, load_rules

from .support import NET_PATH, RULES_DIR


@pytest.fixture(scope="session")
def net() -> Net:
    return load_net(str(NET_PATH))


@pytest.fixture(scope="session")
def rules() -> RuleSet:
    return load_rules(str(RULES_DIR))


@pytest.fixture(autouse=True)
def _collector_back_on() -> Iterator[None]:
    """`rings replay` run in-process turns automatic garbage collection off (rings.gctune),
    for a driver's whole life; the tests after it must not run that way."""
    yield
    if not gc.isenabled():
        gc.enable()
