"""Pseudonymous subject identifiers: a keyed HMAC of each plate or person id, at ingest.

With a key configured, the engine replaces every subject id (a sighting's subject and its
`with` subjects, a watchlist entry's subject and key) by `h` + the first 32 hex digits of
HMAC-SHA256(key, "type:id") before anything is kept: state, changelogs and alerts hold only
pseudonyms. The same id always gives the same pseudonym under the same key, so detection is
unchanged, and a command centre that holds the key can check a suspect's pseudonym
(`rings pseudonym TYPE:ID`) without the engine ever storing the identity. Without the key a
pseudonym cannot be turned back into an id. Dead letters keep the refused bytes as they
came: they are evidence of bad input, not state.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import replace

from .errors import RingsError
from .models import Sighting, Subject, WatchEntry

MIN_KEY_BYTES = 16
ENV_KEY = "RINGS_PSEUDONYM_KEY"
ENV_KEY_FILE = "RINGS_PSEUDONYM_KEY_FILE"


class PseudonymKeyError(RingsError):
    """The pseudonymisation key is missing, unreadable or too short."""


class Pseudonymizer:
    __slots__ = ("_key", "_cache")

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise PseudonymKeyError(f"the pseudonymisation key must be at least "
                                    f"{MIN_KEY_BYTES} bytes")
        self._key = key
        self._cache: dict[str, str] = {}       # few distinct subjects per batch repeat

    def key(self, subject_key: str) -> str:
        """`type:id` -> `type:h…`."""
        p = self._cache.get(subject_key)
        if p is None:
            t, _, _ = subject_key.partition(":")
            digest = hmac.new(self._key, subject_key.encode(), hashlib.sha256).hexdigest()
            p = f"{t}:h{digest[:32]}"
            if len(self._cache) > 200_000:
                self._cache.clear()
            self._cache[subject_key] = p
        return p

    def subject(self, s: Subject) -> Subject:
        return Subject(s.type, self.key(s.key).partition(":")[2])

    def sighting(self, s: Sighting) -> Sighting:
        return replace(s, subject=self.subject(s.subject),
                       with_=tuple(self.subject(w) for w in s.with_))

    def entry(self, e: WatchEntry) -> WatchEntry:
        return replace(e, subject=self.subject(e.subject))


def from_env(env: dict[str, str] | None = None) -> Pseudonymizer | None:
    """The key from RINGS_PSEUDONYM_KEY_FILE (preferred: a secret file, trailing newline
    ignored) or RINGS_PSEUDONYM_KEY; None when neither is set."""
    env = dict(os.environ) if env is None else env
    path = env.get(ENV_KEY_FILE)
    if path:
        try:
            with open(path, "rb") as f:
                key = f.read().rstrip(b"\r\n")
        except OSError as e:
            raise PseudonymKeyError(f"cannot read {ENV_KEY_FILE} ({path}): {e.strerror}"
                                    ) from None
        return Pseudonymizer(key)
    raw = env.get(ENV_KEY)
    if raw:
        return Pseudonymizer(raw.encode())
    return None
