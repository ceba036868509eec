"""The core stays pure Python: importing it must not pull in the streaming runtime."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import rings

from .support import ROOT

FORBIDDEN = ("faust", "aiokafka", "mode")


def core_modules() -> list[str]:
    paths = [str(Path(p)) for p in rings.__path__]
    names = [m.name for m in pkgutil.walk_packages(paths, prefix="rings.")]
    return sorted(n for n in names if n != "rings.cli")


def test_core_modules_are_found():
    mods = core_modules()
    for expected in ("rings.engine", "rings.decode", "rings.net", "rings.replay", "rings.sim",
                     "rings.detectors.watchlist_hit", "rings.clock"):
        assert expected in mods
    assert "rings.cli" not in mods


def test_importing_the_core_does_not_import_the_runtime():
    code = (
        "import importlib, json, sys\n"
        f"for m in {core_modules()!r}:\n"
        "    importlib.import_module(m)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})\n"
        "print(json.dumps({'bad': bad, 'streams': 'streams' in sys.modules}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"bad": [], "streams": False}


def test_the_check_would_see_the_runtime():
    """Guard against a vacuous pass: the subprocess does see these modules when imported."""
    code = ("import sys, aiokafka\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'aiokafka')[:1])\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=60, check=True)
    assert "aiokafka" in out.stdout
