"""Typed rule parameters: every number a rule uses is declared here with its default.

Declaring parameters (instead of reading dict keys inside detectors) lets `rules check`
report a wrong value at its file:line, and lets the docs list every knob with its default.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .timefmt import format_duration, parse_duration


@dataclass(frozen=True, slots=True)
class Param:
    name: str
    kind: str                 # duration | opt-duration (or null) | int | float | bool | str
    #                           | str-list | utc-offset
    default: Any
    help: str
    min: float | None = None
    choices: tuple[str, ...] | None = None
    why: str | None = None    # why a value below `min` cannot work (said in the error)

    def parse(self, value: Any) -> Any:
        """Return the typed value (ms for durations) or raise ValueError with a user message."""
        k = self.kind
        if k == "opt-duration" and value is None:
            return None                 # null: no bound
        if k in ("duration", "opt-duration"):
            v = parse_duration(value)
        elif k == "int":
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{self.name} must be a whole number")
            v = value
        elif k == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{self.name} must be a number")
            v = float(value)
        elif k == "bool":
            if not isinstance(value, bool):
                raise ValueError(f"{self.name} must be true or false")
            v = value
        elif k == "str":
            if not isinstance(value, str) or (self.choices and value not in self.choices):
                opts = f" (one of: {', '.join(self.choices)})" if self.choices else ""
                raise ValueError(f"{self.name} must be a string{opts}")
            v = value
        elif k == "utc-offset":
            m = re.fullmatch(r"([+-])([01]\d|2[0-3]):([0-5]\d)|[Zz]", str(value)) \
                if isinstance(value, str) else None
            if m is None:
                raise ValueError(f"{self.name} must be a UTC offset like +08:00 or Z")
            v = 0 if m.group(1) is None else \
                (1 if m.group(1) == "+" else -1) * (int(m.group(2)) * 60 + int(m.group(3)))
        elif k == "str-list":
            if not isinstance(value, list) or any(not isinstance(x, str) for x in value):
                raise ValueError(f"{self.name} must be a list of strings")
            v = tuple(value)
        else:  # pragma: no cover - a programming error, not user input
            raise AssertionError(k)
        if self.min is not None and isinstance(v, (int, float)) and v < self.min:
            shown = format_duration(int(self.min)) if k.endswith("duration") else \
                f"{self.min:g}"
            why = f": {self.why}" if self.why else ""
            raise ValueError(f"{self.name} must be at least {shown}{why}")
        return v

    def default_value(self) -> Any:
        return self.parse(self.default) if self.default is not None else None
