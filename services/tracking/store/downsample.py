"""Downsampling a metric history for charts, keeping its peaks and dips (pure numpy, no I/O).

Within the step range, a history of more than `max_results` points is cut into
max_results // 4 buckets of equal step width; each bucket keeps its first, last,
lowest and highest point (a point once when it is several of these). A line
through what is kept reaches every extreme the full history reaches, at the step
where it happened. Where the curve is monotonic a bucket keeps only two points,
so the rest of the budget goes to a second, finer cut when it still fits. NaN
values are ignored when looking for extremes. Below 4, the first point of each
of `max_results` buckets is kept.
"""
import numpy as np

POINTS_PER_BUCKET = 4  # first, last, lowest, highest
DEFAULT_MAX_RESULTS = 2500  # MLflow's default (and its limit)
MAX_RESULTS = 100_000


def step_range(steps: np.ndarray, start_step: int | None, end_step: int | None) -> slice:
    """The points of `steps` (sorted) within [start_step, end_step]; None: unbounded."""
    lo = 0 if start_step is None else int(np.searchsorted(steps, start_step, side="left"))
    hi = len(steps) if end_step is None else int(np.searchsorted(steps, end_step, side="right"))
    return slice(lo, max(lo, hi))


def _first_of_each(segment: np.ndarray, hits: np.ndarray) -> np.ndarray:
    """The first index in `hits` (ascending) of each segment it touches."""
    if len(hits) == 0:
        return hits
    seg = segment[hits]
    return hits[np.flatnonzero(np.r_[True, seg[1:] != seg[:-1]])]


def _bucket_of(steps: np.ndarray, buckets: int) -> np.ndarray:
    span = float(steps[-1]) - float(steps[0]) + 1.0
    offset = steps.astype(np.float64) - float(steps[0])  # in floats: int64 differences may overflow
    return np.minimum((offset * (buckets / span)).astype(np.int64), buckets - 1)


def _bucket_extremes(steps: np.ndarray, values: np.ndarray, buckets: int) -> np.ndarray:
    """Ascending indices of the first, last, lowest and highest point of each bucket."""
    n = len(steps)
    bucket = _bucket_of(steps, buckets)
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    ends = np.r_[starts[1:], n] - 1
    segment = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, n]))
    with np.errstate(invalid="ignore"):
        lowest = np.fmin.reduceat(values, starts)
        highest = np.fmax.reduceat(values, starts)
    lows = _first_of_each(segment, np.flatnonzero(values == lowest[segment]))
    highs = _first_of_each(segment, np.flatnonzero(values == highest[segment]))
    return np.unique(np.concatenate([starts, ends, lows, highs]))


def sample_indices(steps: np.ndarray, values: np.ndarray, max_results: int) -> np.ndarray:
    """Ascending indices of the points to keep, at most `max_results` of them."""
    n = len(steps)
    if n <= max_results:
        return np.arange(n)
    if max_results < POINTS_PER_BUCKET:
        bucket = _bucket_of(steps, max_results)
        return np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    buckets = max_results // POINTS_PER_BUCKET
    kept = _bucket_extremes(steps, values, buckets)
    # Where the curve is monotonic a bucket keeps 2 points, not 4: spend the rest on finer buckets.
    finer = int(buckets * max_results / len(kept) * 0.9)
    if finer > buckets:
        again = _bucket_extremes(steps, values, finer)
        if len(again) <= max_results:
            kept = again
    return kept


def downsample(history, start_step: int | None, end_step: int | None, max_results: int):
    """(steps, timestamps, values) sorted by step, cut to the step range and downsampled."""
    steps, timestamps, values = history
    window = step_range(steps, start_step, end_step)
    steps, timestamps, values = steps[window], timestamps[window], values[window]
    keep = sample_indices(steps, values, max_results)
    return steps[keep], timestamps[keep], values[keep]
