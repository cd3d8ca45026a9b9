"""The Journeys exception hierarchy: one root, structured fields, mapped at each boundary."""

from __future__ import annotations

from dataclasses import dataclass


class JourneyError(Exception):
    """Root of every error Journeys raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a journey file.

    Attributes:
        path: YAML path such as ``steps[1].send.channel`` (empty for the whole document).
        line: 1-based line in the file, when known.
        message: What is wrong and, where possible, how to fix it.
    """

    path: str
    line: int | None
    message: str

    def format(self, source: str) -> str:
        """Render as ``file:line: path: message``."""
        where = f"{source}:{self.line}" if self.line else source
        return f"{where}: {self.path or '<document>'}: {self.message}"

    def as_dict(self) -> dict[str, object]:
        """JSON-friendly form for API error details."""
        return {"path": self.path, "line": self.line, "message": self.message}


class SpecError(JourneyError):
    """A journey (or scenario) file is invalid; carries every problem found.

    Attributes:
        source: File name or label of the document.
        problems: All problems, in document order.
    """

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = sorted(problems, key=lambda p: (p.line or 0, p.path))
        super().__init__("\n".join(p.format(source) for p in self.problems))


class NotFoundError(JourneyError):
    """A named journey, version, customer or enrollment does not exist."""

    def __init__(self, kind: str, ident: str) -> None:
        self.kind = kind
        self.ident = ident
        super().__init__(f"{kind} {ident!r} not found")


class JourneyStateError(JourneyError):
    """An operation is illegal in the current state (e.g. activating an archived journey).

    Attributes:
        current: The state the object is in.
        requested: The operation or state asked for.
    """

    def __init__(self, message: str, *, current: str, requested: str) -> None:
        self.current = current
        self.requested = requested
        super().__init__(message)


class PermanentActivityError(JourneyError):
    """Raised by a journey activity for a failure that retrying cannot fix.

    The worker turns it into a non-retryable Temporal failure at once: the step takes its
    ``on_error`` edge, or the enrollment parks as ``needs_attention`` with this message as
    the reason. Raise anything else (``httpx.TransportError``, a 5xx) to let the step's
    retry policy try again.

    Attributes:
        message: What went wrong, for the operator.
        code: A short machine-readable kind (e.g. ``invalid_phone``); it becomes the
            failure's type, so ``needs_attention`` reasons read ``code: message``.
        details: Extra JSON-friendly facts (e.g. the other system's response).
    """

    def __init__(self, message: str, *, code: str = "PermanentActivityError",
                 details: dict[str, object] | None = None) -> None:  # fmt: skip
        self.message = message
        self.code = code
        self.details = dict(details or {})
        super().__init__(message)
