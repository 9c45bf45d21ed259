"""The one retry policy and the HTTP plumbing shared by both adapters.

`call_with_retry` is the single choke point where a request is repeated: it retries only
`RetriableError`, only when the operation is safe to repeat, waits what a 429 asked for or backs
off exponentially with jitter, and turns a network failure that outlives every attempt into
`UnreachableError`. Adapters decide what is retriable (their `classify`); this module decides how.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
)
from urllib3.exceptions import NewConnectionError

from core.errors import (
    ConfigError,
    RateLimitedError,
    RetriableError,
    StopRequested,
    UnansweredError,
    UnreachableError,
)

__all__ = [
    "MAYBE_APPLIED_STATUSES",
    "TRANSIENT_STATUSES",
    "PlainHTTPAdapter",
    "TimeoutHTTPAdapter",
    "backoff_wait",
    "call_with_retry",
    "interruptible_sleep",
    "make_session",
    "never_sent",
    "not_json",
]

T = TypeVar("T")

log = logging.getLogger(__name__)

_Timeout = float | tuple[float, float] | tuple[float, None] | None
_Cert = bytes | str | tuple[bytes | str, bytes | str] | None


# Statuses no service documents but that proxies and Salesforce's edge answer while they recover:
# 406 (usually without a body) and 420 (Salesforce Edge's "We are setting things up" page).
# Connectors used in production retry both (Airbyte's source-salesforce, rate_limiting.py).
TRANSIENT_STATUSES = frozenset({406, 420})

# Answers a gateway gives when the service behind it may well have done the work: 502 (the
# origin's answer was invalid), 504 (the origin did not answer in time), and Cloudflare's 520 (an
# unknown error from the origin) and 524 ("A timeout occurred": the origin was reached, and kept
# working). To a write they are a lost answer (`UnansweredError`), not "try again": a 429, 500 or
# 503 says the request was not processed, and is retried at once.
MAYBE_APPLIED_STATUSES = frozenset({502, 504, 520, 524})


def never_sent(error: BaseException) -> bool:
    """Whether a requests failure happened before the request could reach the service: the
    connection was refused, timed out while connecting, its name did not resolve, or the proxy
    could not be reached. Such a write is safe to send again as it is. Any other network failure
    (a read timeout, a connection closed or reset once the request was on its way, a TLS error,
    which requests raises alike for a handshake and for an answer broken off) leaves a write's
    effect unknown (`UnansweredError`)."""
    if isinstance(error, requests.ConnectTimeout | requests.exceptions.ProxyError):
        return True
    if not isinstance(error, requests.ConnectionError) or not error.args:
        return False
    reason = getattr(error.args[0], "reason", error.args[0])  # urllib3's MaxRetryError wraps the cause
    return isinstance(reason, NewConnectionError)


def not_json(content: bytes | str | None) -> bool:
    """Whether an answer's body is not JSON at all (empty, an HTML page from a proxy or an edge
    server): a transient answer to retry, unlike a JSON body beyond the decoding limits, which
    the same request would get again."""
    text = content.decode("utf-8", "replace") if isinstance(content, bytes) else (content or "")
    return text.lstrip()[:1] not in ("{", "[")


def backoff_wait(attempt: int, *, max_wait: float) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based): 1, 2, 4, … plus up to 1 s
    of jitter, capped at `max_wait`. The one backoff curve, also used for per-record re-sends."""
    exponent = min(max(attempt - 1, 0), 32)
    return min(float(2**exponent) + random.uniform(0.0, 1.0), max_wait)


def interruptible_sleep(should_stop: Callable[[], bool], *, nap: float = 0.1) -> Callable[[float], None]:
    """A `sleep` for the adapters that ends as soon as `should_stop()` is true, raising
    `StopRequested`: a retry wait (a 429's `RateLimit-Reset` of 120 s included) or a rate-limiter
    wait never delays a stop by more than `nap` seconds, and no attempt starts after it (the retry
    policy sleeps before every new attempt). A wait of 0 still looks: a stop already asked for
    raises at once."""

    def sleep(seconds: float) -> None:
        end = time.monotonic() + seconds
        while True:
            if should_stop():
                raise StopRequested("stopping: the wait was cut short, the request is not sent again")
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(nap, left))

    return sleep


def _wait(max_wait: float) -> Callable[[RetryCallState], float]:
    def wait(state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome is not None else None
        if isinstance(error, RateLimitedError) and error.wait_seconds is not None:
            # The service told us when the window reopens (Vitally's RateLimit-Reset): waiting
            # less only burns an attempt on another 429; waiting longer than max_wait stalls a cycle.
            return min(max(error.wait_seconds, 0.0), max_wait)
        return backoff_wait(state.attempt_number, max_wait=max_wait)

    return wait


def _log_retry(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome is not None else None
    wait = state.next_action.sleep if state.next_action is not None else 0.0
    # Error messages are built secret-free by the adapters, so they may be logged.
    log.warning("attempt %d failed (%s); retrying in %.1fs", state.attempt_number, error, wait)


def call_with_retry(
    fn: Callable[[], T],
    *,
    sleep: Callable[[float], None],
    max_attempts: int,
    max_wait: float,
    is_safe: bool = True,
) -> T:
    """Call `fn` until it returns, under the one retry policy of crm-sync.

    `max_attempts` and `max_wait` come from the adapter's settings (`max_attempts`,
    `max_wait_seconds`), which `sync.config` has checked; this module has no defaults of its own.

    - Only `RetriableError` is retried, and only when `is_safe` (the operation may be repeated
      without effect: reads, upserts by external id, idempotent PUTs); otherwise `fn` runs once.
      Any other exception propagates at once, unchanged, and so does `UnansweredError` (a write
      whose answer was lost: repeating it could undo what a person did since; the caller looks
      at the record first).
    - Between attempts: `RateLimitedError.wait_seconds` when the service gave one, else
      exponential backoff with jitter (1, 2, 4 … s plus up to 1 s); every wait is capped at
      `max_wait` and spent through `sleep`.
    - After the last attempt a network failure (a `RetriableError` without an HTTP status)
      becomes `UnreachableError`; an HTTP one (5xx, 429) is re-raised as it is.
    """
    retrying = Retrying(
        sleep=sleep,
        stop=stop_after_attempt(max_attempts if is_safe else 1),
        wait=_wait(max_wait),
        retry=retry_if_exception(_resend),
        before_sleep=_log_retry,
        reraise=True,
    )
    try:
        return retrying(fn)
    except RetriableError as error:
        if error.status is None and not isinstance(error, UnansweredError):
            raise UnreachableError(str(error), system=error.system) from error
        raise


def _resend(error: BaseException) -> bool:
    return isinstance(error, RetriableError) and not isinstance(error, UnansweredError)


class TimeoutHTTPAdapter(HTTPAdapter):
    """An `HTTPAdapter` with a default timeout: neither requests nor simple-salesforce sets one."""

    def __init__(self, timeout: float, *, pool_maxsize: int = 10) -> None:
        self.timeout = timeout
        # No urllib3 retries (max_retries stays 0): `call_with_retry` is the only retry policy.
        super().__init__(pool_maxsize=pool_maxsize)

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: _Timeout = None,
        verify: bool | str = True,
        cert: _Cert = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        return super().send(
            request,
            stream=stream,
            timeout=self.timeout if timeout is None else timeout,
            verify=verify,
            cert=cert,
            proxies=proxies,
        )


class PlainHTTPAdapter(TimeoutHTTPAdapter):
    """Sends `https://` requests over plain `http://`.

    simple-salesforce keeps only host and port of `instance_url` and always builds
    `https://host:port/...`; the local sandbox speaks plain HTTP. Mount this adapter for the
    sandbox's `https://host:port/` prefix only, never for a real service.
    """

    def send(
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: _Timeout = None,
        verify: bool | str = True,
        cert: _Cert = None,
        proxies: Mapping[str, str] | None = None,
    ) -> requests.Response:
        if request.url is not None and request.url.startswith("https://"):
            request.url = "http://" + request.url[len("https://") :]
        return super().send(request, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies=proxies)


class EnvironmentOnceSession(requests.Session):
    """A `requests.Session` that reads the environment's settings for a host (`HTTPS_PROXY`,
    `NO_PROXY`, `REQUESTS_CA_BUNDLE`, ...) once, not on every request: requests looks them up
    for each one (~80 µs: every proxy variable, the bypass list), and a cold cycle sends ~1,400
    from the thread that reads Vitally's chain of pages. A request given its own proxies, stream,
    verify or cert settings is merged as requests merges it."""

    def __init__(self) -> None:
        super().__init__()
        self._environment: dict[tuple[str, str], Any] = {}

    def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any) -> Any:
        if proxies or stream is not None or verify is not None or cert is not None or not isinstance(url, str):
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc)
        settings = self._environment.get(key)
        if settings is None:
            settings = self._environment[key] = super().merge_environment_settings(url, {}, None, None, None)
        # A copy each time: nothing a request does to its settings reaches the next one.
        return {name: dict(value) if isinstance(value, dict) else value for name, value in settings.items()}


def make_session(base_url: str, timeout: float) -> requests.Session:
    """A session whose every request has a default timeout of `timeout` seconds.

    For an `https://` base URL both schemes get a `TimeoutHTTPAdapter`. For a plain `http://` base
    URL (the local sandbox) requests to `https://<same host:port>/` are also sent over plain HTTP
    through a `PlainHTTPAdapter`, because simple-salesforce rewrites the scheme to https.
    """
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError([f"base_url: {base_url!r} is not an http(s) URL"])
    session = EnvironmentOnceSession()
    session.mount("https://", TimeoutHTTPAdapter(timeout))
    session.mount("http://", TimeoutHTTPAdapter(timeout))
    if parts.scheme == "http":
        # simple-salesforce leaves the port out when it is 443 or absent, so match what it builds.
        netloc = parts.hostname if parts.port in (None, 443) else f"{parts.hostname}:{parts.port}"
        session.mount(f"https://{netloc}/", PlainHTTPAdapter(timeout))
    return session
