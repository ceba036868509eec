"""One root error for the core, so callers can catch everything the core raises on purpose."""

from __future__ import annotations


class RingsError(Exception):
    """Root of every error the core raises deliberately."""


class SourceError(RingsError):
    """An error that points into a file the user wrote (net, rules, plans).

    Carrying file, line and column lets every command print `file:line:col: message`,
    the form editors and CI logs turn into links.
    """

    def __init__(self, message: str, file: str | None = None, line: int | None = None,
                 col: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line
        self.col = col

    def __str__(self) -> str:
        where = self.file or "<input>"
        if self.line is not None:
            where += f":{self.line}"
            if self.col is not None:
                where += f":{self.col}"
        return f"{where}: {self.message}"


class SourceErrors(RingsError):
    """Several source errors at once: a check reports all it finds, not just the first."""

    def __init__(self, errors: list[SourceError]) -> None:
        super().__init__("\n".join(str(e) for e in errors))
        self.errors = errors


class NetError(SourceError):
    """The net file is invalid."""


class RuleError(SourceError):
    """A rule file is invalid."""


class InvalidRecord(RingsError):
    """An input record (sighting, watchlist entry) is invalid; `reason` is a short stable code.

    The reason code becomes a DLQ field and a metric label, so it must never contain
    data from the record itself (no identifiers), only a fixed vocabulary plus the field path.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
