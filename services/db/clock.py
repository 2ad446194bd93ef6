"""The stores' clock: timestamps are milliseconds since the epoch, as MLflow's."""
import time


def now_ms() -> int:
    return int(time.time() * 1000)
