"""Error types, and the one place that maps them to exit codes and gRPC status codes.

Every failure a user can cause or meet has its own type here. The CLI turns them into
exit codes, the gRPC service into status codes, both through the tables at the bottom,
so the two front ends never disagree about what an error means.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping, TypeVar

_V = TypeVar("_V")


@dataclass(frozen=True)
class FieldError:
    """One problem in one input file, located by a dotted field path."""

    file: str
    path: str
    message: str
    severity: str = "error"  # "error" | "warning"

    def __str__(self) -> str:
        # a file name is the user's text: keep it on one line so it cannot forge lines
        file = "".join(c if c.isprintable() else repr(c)[1:-1] for c in self.file)
        where = f"{file}: {self.path}" if self.path else file
        prefix = "warning: " if self.severity == "warning" else ""
        return f"{where}: {prefix}{self.message}"


class DynplanError(Exception):
    """Base of every error dynplan raises on purpose."""


class InputError(DynplanError):
    """Bad user input (plan, profile, trace, flags): reported together, exit 2."""

    def __init__(self, errors: Iterable[FieldError]):
        self.errors: list[FieldError] = list(errors)
        super().__init__("\n".join(str(e) for e in self.errors))


class PlanError(InputError):
    """A plan file is invalid."""


class ProfileError(InputError):
    """A profile directory is missing or malformed."""


class InputBoundExceeded(DynplanError):
    """An input file breaks a reader's bound (too large, not a regular file, too deep); the
    reader that called for the bytes reports it as its own InputError with file and field."""


class TraceError(InputError):
    """A request trace cannot be read."""


class CredentialsError(InputError):
    """The scaler's --credentials file is invalid (messages never quote its values)."""


class RenderError(InputError):
    """Rendering cannot proceed (bad output dir, rendered object fails a check)."""


class MetadataError(DynplanError):
    """A KEDA trigger's metadata is missing a key or has a bad value."""


class PlanNotFound(DynplanError):
    """No plan of that name in the caller's namespace (other namespaces look the same)."""


class MetricsUnavailable(DynplanError):
    """Prometheus could not answer (down, slow, error, empty where data was expected)."""


class PlannerUnavailable(MetricsUnavailable):
    """The planner process (`serve --planner-processes`) died or stopped before answering:
    like an unavailable dependency, no decision is made and the window is read again."""


class WindowRejected(MetricsUnavailable):
    """One window's data is outside the physical limits, or made the planner fail: the
    window is skipped (counted in dynplan_windows_rejected_total by `reason`), never retried."""

    def __init__(self, message: str, reason: str = "rejected"):
        self.reason = reason
        super().__init__(message)


class InsufficientHistory(MetricsUnavailable):
    """Prometheus answered, but its history lacks what a learned profile needs (too few
    samples, a range never covered): `dynplan profile learn` names what is missing."""


class StaleDecision(DynplanError):
    """The latest good decision is too old to act on; KEDA's fallback should take over."""


class NoDecisionYet(DynplanError):
    """The plan is loaded but its first decision has not been made yet."""


class EndpointUnavailable(DynplanError):
    """An inference endpoint (`profile sweep --url`) cannot be reached or failed mid-answer:
    refused, timed out, HTTP 5xx, connection dropped."""


class EndpointIncompatible(DynplanError):
    """An inference endpoint answered, but not as an OpenAI-compatible streaming server does
    (no /v1/completions, no SSE stream, no `usage`, an unknown model, a rejected API key):
    the URL, model or key given is wrong for the command, so retrying does not help."""


class OptionalDependencyMissing(DynplanError):
    """An optional extra (statsmodels, prophet, matplotlib) is needed but not installed."""

    def __init__(self, feature: str, extra: str, module: str):
        self.feature, self.extra, self.module = feature, extra, module
        super().__init__(
            f"{feature} needs the optional package '{module}': pip install 'dynplan[{extra}]'"
        )


# Exit codes of the CLI. 2 = the user's input is wrong; 3 = a dependency failed.
EXIT_CODES: dict[type[BaseException], int] = {
    InputError: 2,
    InputBoundExceeded: 2,
    MetadataError: 2,
    PlanNotFound: 2,
    OptionalDependencyMissing: 2,
    EndpointIncompatible: 2,
    MetricsUnavailable: 3,
    EndpointUnavailable: 3,
    StaleDecision: 3,
    NoDecisionYet: 3,
    DynplanError: 1,
}

# gRPC status code names (grpc.StatusCode[name]); kept as strings so the pure core never
# imports grpc.
GRPC_STATUS: dict[type[BaseException], str] = {
    MetadataError: "INVALID_ARGUMENT",
    PlanNotFound: "NOT_FOUND",
    MetricsUnavailable: "UNAVAILABLE",
    StaleDecision: "UNAVAILABLE",
    NoDecisionYet: "UNAVAILABLE",
    InputError: "FAILED_PRECONDITION",
    InputBoundExceeded: "FAILED_PRECONDITION",
    DynplanError: "INTERNAL",
}


def _lookup(table: Mapping[type[BaseException], _V], exc: BaseException, default: _V) -> _V:
    for cls in type(exc).__mro__:
        if cls in table:
            return table[cls]
    return default


def exit_code_for(exc: BaseException) -> int:
    """The CLI exit code for an exception (1 for anything unexpected)."""
    return _lookup(EXIT_CODES, exc, 1)


def grpc_status_for(exc: BaseException) -> str:
    """The gRPC status code name for an exception (INTERNAL for anything unexpected)."""
    return _lookup(GRPC_STATUS, exc, "INTERNAL")
