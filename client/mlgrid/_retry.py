"""How long the client keeps retrying a call refused with UNAVAILABLE (a server restarting, a database
failing over): MLGRID_CLIENT_RETRY_SECONDS, 300 by default, about as long as the stock mlflow client rides
through an outage. The waits grow from 0.1 s, doubling, to at most 10 s; each gets up to 50% jitter, which
spreads out the clients reconnecting together."""
import os

from mlgrid.exceptions import MlgridException

RETRY_SECONDS_ENV = "MLGRID_CLIENT_RETRY_SECONDS"
DEFAULT_RETRY_SECONDS = 300.0
FIRST_DELAY, MAX_DELAY = 0.1, 10.0


def retry_seconds() -> float:
    text = os.environ.get(RETRY_SECONDS_ENV, "").strip()
    if not text:
        return DEFAULT_RETRY_SECONDS
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        raise MlgridException(f"{RETRY_SECONDS_ENV}={text!r} is not a number of seconds (0: no retry)")
    return seconds


def retry_delays() -> tuple[float, ...]:
    """The waits before each retry (before jitter), adding up to the retry window."""
    delays, total, delay = [], 0.0, FIRST_DELAY
    window = retry_seconds()
    while total + delay <= window + 1e-9:
        delays.append(delay)
        total += delay
        delay = min(delay * 2, MAX_DELAY)
    return tuple(delays)
