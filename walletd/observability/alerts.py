"""Error-rate alerts: a rolling window over finished streams, one alert per episode,
logged and, when ALERT_WEBHOOK_URL is set, POSTed signed the Standard Webhooks way."""

from __future__ import annotations

import asyncio
import collections
import logging
import math
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import urlsplit

import aiohttp
import orjson

from walletd.config import Settings
from walletd.observability.logs import detached
from walletd.observability.webhooks import sign
from walletd.retry import RetryPolicy, UpstreamFailure, parse_retry_after, with_retries

logger = logging.getLogger("walletd.alerts")

# Below this many finished streams in the window a rate is noise: one failed stream out
# of one is 100 %, and a quiet night would page someone for it.
MIN_STREAMS = 5
MAX_IN_FLIGHT = 4  # deliveries at once; an alert storm beyond this is dropped (and logged)
REQUEST_TIMEOUT_S = 5.0  # per attempt: a slow receiver must not hold a slot for long
CLOSE_GRACE_S = 5.0  # how long close() lets pending deliveries finish before cancelling
DEFAULT_POLICY = RetryPolicy(max_retries=3, deadline_s=30.0, base_s=0.5, cap_s=8.0)
ALERT_TYPE = "walletd.error_rate.alert"
RECOVERED_TYPE = "walletd.error_rate.recovered"


class ErrorRate:
    """The share of streams finished within the last `window_s` seconds that errored.

    Counted per second: memory is an entry per second of the window in which a stream
    finished, not one per stream (a churn of 3,000 streams a second kept 900,000 entries,
    90 MB, in the default window), and a finish in a second already counted is two
    additions. So a stream counts for at least the window and at most a second more.
    """

    def __init__(self, window_s: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._window_s = window_s
        self._clock = clock
        self._seconds: collections.deque[list[int]] = collections.deque()  # [second, n, errors]
        self._finished = 0
        self._errors = 0

    def record(self, errored: bool) -> None:
        """One finished stream; `errored` when it ended with an `error` event."""
        second = math.floor(self._clock())
        seconds = self._seconds
        if seconds and seconds[-1][0] == second:
            tally = seconds[-1]
        else:
            self._expire(second)
            tally = [second, 0, 0]
            seconds.append(tally)
        tally[1] += 1
        tally[2] += errored
        self._finished += 1
        self._errors += errored

    def tally(self) -> tuple[float, int]:
        """(percent errored, 0..100 and 0.0 when none finished; streams finished) in the
        window."""
        self._expire(self._clock())
        finished = self._finished
        return (100.0 * self._errors / finished if finished else 0.0), finished

    def percent(self) -> float:
        return self.tally()[0]

    def _expire(self, now: float) -> None:
        # Second s is out once all of it is more than a window ago: at s + 1 + window.
        edge = now - self._window_s - 1
        seconds = self._seconds
        while seconds and seconds[0][0] <= edge:
            _, finished, errors = seconds.popleft()
            self._finished -= finished
            self._errors -= errors


def _where(url: str) -> str:
    """The URL without query, fragment or credentials: safe to log (a token may be there)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6
        host = f"[{host}]"
    if parts.port is not None:
        host += f":{parts.port}"
    return f"{parts.scheme}://{host}{parts.path}"


class AlertMonitor:
    """Turns the error rate into alert episodes: one `error_rate_alert` when the rate goes
    above ALERT_ERROR_RATE, one `error_rate_recovered` when it is back at or below it.

    Webhook deliveries run as background tasks on one ClientSession the monitor owns
    (created on first use, inside the running loop; closed by `close()`).
    """

    def __init__(
        self,
        settings: Settings,
        rate: ErrorRate,
        *,
        session_factory: Callable[[], aiohttp.ClientSession] | None = None,
        clock: Callable[[], float] = time.time,
        policy: RetryPolicy | None = None,
    ) -> None:
        """Raises ValueError when ALERT_WEBHOOK_URL is set without ALERT_WEBHOOK_SECRET:
        an unsigned alert is not one receivers may trust."""
        self._settings = settings
        self._rate = rate
        self._clock = clock
        self._policy = policy or DEFAULT_POLICY
        self._session_factory = session_factory or _default_session
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._alerting = False
        self._closed = False
        self._url = settings.alert_webhook_url
        # Its own secret, never SECRET_KEY: receivers hold this one (SPEC §7).
        self._key = settings.alert_webhook_key or b""
        if self._url is not None and not self._key:
            raise ValueError("ALERT_WEBHOOK_URL: needs ALERT_WEBHOOK_SECRET to sign alerts")

    @property
    def alerting(self) -> bool:
        """True during an episode (rate above the threshold)."""
        return self._alerting

    def check(self) -> None:
        """Compare the rate to the threshold; log and schedule a webhook on a change.

        Call it after each finished stream and periodically (a window that empties also
        ends an episode). It never blocks (deliveries are tasks) and never raises.
        """
        try:
            threshold = self._settings.alert_error_rate
            rate, streams = self._rate.tally()
            if not self._alerting and streams >= MIN_STREAMS and rate > threshold:
                self._alerting = True
                self._announce(ALERT_TYPE, "error_rate_alert", logging.ERROR, rate, streams)
            elif self._alerting and rate <= threshold:
                self._alerting = False
                self._announce(RECOVERED_TYPE, "error_rate_recovered", logging.INFO, rate, streams)
        except Exception:
            logger.exception("alert_check_failed")

    async def close(self, grace_s: float = CLOSE_GRACE_S) -> None:
        """Let pending deliveries finish for up to `grace_s`, cancel the rest, close the
        session. Later checks still log but send nothing."""
        self._closed = True
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=grace_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _announce(self, kind: str, message: str, level: int, rate: float, streams: int) -> None:
        data = {
            "error_rate": round(rate, 2),
            "threshold": self._settings.alert_error_rate,
            "window_s": self._settings.error_rate_window_s,
            "streams": streams,
        }
        logger.log(level, message, extra=data)
        if self._url is None or self._closed:
            return
        if len(self._tasks) >= MAX_IN_FLIGHT:
            logger.warning(
                "alert_webhook_dropped", extra={"type": kind, "in_flight": MAX_IN_FLIGHT}
            )
            return
        when = datetime.fromtimestamp(self._clock(), UTC).isoformat().replace("+00:00", "Z")
        body = orjson.dumps(
            {"type": kind, "timestamp": when, "data": {**data, "env": self._settings.env}}
        )
        task = asyncio.get_running_loop().create_task(
            self._deliver(self._url, kind, body), context=detached()
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, url: str, kind: str, body: bytes) -> None:
        """POST `body` until it is accepted, retrying what may pass on a later attempt.

        The webhook-id stays the same on every attempt, so a receiver can drop a
        duplicate; each attempt is signed afresh with its own timestamp, so a retry never
        falls outside the receiver's tolerance window. Failures are logged, never raised.
        """
        msg_id = "msg_" + secrets.token_hex(16)
        log = {"type": kind, "webhook_id": msg_id, "url": _where(url)}
        attempts = 0

        async def attempt() -> int:
            nonlocal attempts
            attempts += 1
            if self._session is None:
                self._session = self._session_factory()
            timestamp = int(self._clock())
            headers = {
                "content-type": "application/json",
                "webhook-id": msg_id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": sign(self._key, msg_id, timestamp, body),
            }
            try:
                async with self._session.post(
                    url,
                    data=body,
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S),
                    allow_redirects=False,  # a redirect could carry a signed alert elsewhere
                ) as resp:
                    status, retry_after = resp.status, resp.headers.get("Retry-After")
            except (aiohttp.ClientError, TimeoutError) as exc:
                # The class name only: some aiohttp messages quote the URL, query included.
                raise UpstreamFailure(type(exc).__name__, retryable=True) from None
            if 200 <= status < 300:
                return status
            raise UpstreamFailure(
                f"HTTP {status}",
                retryable=status == 429 or status >= 500,
                retry_after_s=parse_retry_after(retry_after),
                status=status,
            )

        def on_retry(retry: int, delay: float, exc: UpstreamFailure) -> None:
            logger.warning(
                "alert_webhook_retry",
                extra={**log, "retry": retry, "delay_s": round(delay, 3), "reason": str(exc)},
            )

        try:
            status = await with_retries(attempt, self._policy, on_retry=on_retry)
        except UpstreamFailure as exc:
            fields = {"attempts": attempts, "status": exc.status, "reason": str(exc)}
            logger.error("alert_webhook_failed", extra={**log, **fields})
        except Exception as exc:  # never let a delivery task end with an exception
            fields = {"attempts": attempts, "reason": type(exc).__name__}
            logger.error("alert_webhook_failed", extra={**log, **fields})
        else:
            fields = {"attempts": attempts, "status": status}
            logger.info("alert_webhook_delivered", extra={**log, **fields})


def _default_session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S))
