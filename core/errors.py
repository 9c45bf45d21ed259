"""The one exception tree of crm-sync, grouped by what the caller should do.

    SyncError                      root: nothing else crosses a layer
    ├── ConfigError                bad configuration; every problem listed; exit 2
    ├── FatalError                 stop the cycle; a person must act
    │   ├── AuthError              credentials refused (401 after one re-login); exit 3
    │   ├── UnreachableError       the service cannot be reached at all; exit 3
    │   └── ContractError          the service answered in a shape we do not understand
    ├── RetriableError             safe to try again later (429, 5xx, timeouts, resets)
    │   ├── RateLimitedError       429; carries the seconds to wait
    │   └── UnansweredError        a write went out and its answer was lost: it may have taken
    │                              effect, so it is looked at again before it is sent again
    ├── RecordError                one bad record: report it (id + field) and skip it
    ├── WriteRejectedError         one write refused for good (validation, duplicates): park it
    ├── QuotaExhaustedError        the daily API allocation (or our share of it) is used up:
    │                              stop writing and end the cycle cleanly
    └── StopRequested              a stop was asked for (SIGTERM) during a wait: the wait ends,
                                   nothing new starts, what was not done stays pending

Leaves carry data (record id, field, status code, error code) so that callers never
parse messages. Messages never contain credentials.
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "ConfigError",
    "ContractError",
    "FatalError",
    "QuotaExhaustedError",
    "RateLimitedError",
    "RecordError",
    "RetriableError",
    "StopRequested",
    "SyncError",
    "UnansweredError",
    "UnreachableError",
    "WriteRejectedError",
]


class SyncError(Exception):
    """Root of every error crm-sync raises on purpose."""


class ConfigError(SyncError):
    """The configuration is invalid; `problems` lists every `path: message`."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


class FatalError(SyncError):
    """The cycle cannot go on; retrying will not help until a person acts."""

    def __init__(self, message: str, *, system: str = "", status: int | None = None) -> None:
        self.system = system
        self.status = status
        super().__init__(message)


class AuthError(FatalError):
    """The service refused our credentials."""


class UnreachableError(FatalError):
    """The service could not be reached after the retry policy gave up."""


class ContractError(FatalError):
    """The service answered in a shape the connector does not understand."""


class RetriableError(SyncError):
    """A transient failure: safe to repeat (reads, upserts by external id, idempotent PUTs)."""

    def __init__(self, message: str, *, system: str = "", status: int | None = None) -> None:
        self.system = system
        self.status = status
        super().__init__(message)


class RateLimitedError(RetriableError):
    """HTTP 429; `wait_seconds` comes from `RateLimit-Reset` or `Retry-After` when given."""

    def __init__(self, message: str, *, system: str = "", wait_seconds: float | None = None) -> None:
        super().__init__(message, system=system, status=429)
        self.wait_seconds = wait_seconds


class UnansweredError(RetriableError):
    """A write request went out and its answer never came (a read timeout, a connection closed or
    reset after the request was sent): it may have taken effect. The connectors never send it again
    on their own, because a person (or an org's automation) may have changed the record since: the
    apply step looks at the record first (`sync.apply`), as before any send."""

    def __init__(self, message: str, *, system: str = "", status: int | None = None) -> None:
        """`status`: the HTTP status a gateway answered with (502, 504, 520, 524: the service
        behind it was reached); None when no answer came at all."""
        super().__init__(message, system=system, status=status)


class RecordError(SyncError):
    """One external record is malformed: which record, which field, what is wrong."""

    def __init__(self, system: str, record_id: str, field: str, message: str) -> None:
        self.system = system
        self.record_id = record_id
        self.field = field
        self.message = message
        super().__init__(f"{system} record {record_id}: field {field}: {message}")


class WriteRejectedError(SyncError):
    """The service refused one write for good (e.g. DUPLICATES_DETECTED): park it, never turn it
    into a create."""

    def __init__(self, record_id: str, code: str, message: str, fields: tuple[str, ...] = ()) -> None:
        self.record_id = record_id
        self.code = code
        self.fields = fields
        super().__init__(f"{record_id}: {code}: {message}")


class QuotaExhaustedError(SyncError):
    """The API allocation is used up (403 REQUEST_LIMIT_EXCEEDED or our configured share)."""

    def __init__(self, message: str, *, system: str = "salesforce") -> None:
        self.system = system
        super().__init__(message)


class StopRequested(SyncError):
    """A stop was asked for while waiting (a retry's backoff, a 429's reset, the rate limiter): the
    wait ended at once and no new attempt starts. The write or read waited on is not done: a write
    stays pending and is sent again on the next start (every write is idempotent)."""
