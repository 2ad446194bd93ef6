import math

import numpy as np

from services.tracking.store import metric_codec


def test_pack_unpack_round_trip_keeps_nan_inf_and_int64_limits():
    steps = [0, -(2**63), 2**63 - 1]
    chunk = metric_codec.pack(steps, [1, 2, 3], [math.nan, math.inf, -math.inf])
    got_steps, got_timestamps, got_values = metric_codec.unpack([chunk])
    assert got_steps.tolist() == [-(2**63), 0, 2**63 - 1]
    assert got_timestamps.tolist() == [2, 1, 3]
    assert math.isinf(got_values[0]) and math.isnan(got_values[1]) and got_values[2] == -math.inf


def test_unpack_orders_chunks_by_step_then_timestamp_stably():
    first = metric_codec.pack([5, 1], [10, 10], [0.5, 0.1])
    second = metric_codec.pack([1, 5, 1], [5, 10, 10], [0.0, 0.6, 0.2])
    steps, timestamps, values = metric_codec.unpack([first, second])
    assert steps.tolist() == [1, 1, 1, 5, 5]
    assert timestamps.tolist() == [5, 10, 10, 10, 10]
    assert values.tolist() == [0.0, 0.1, 0.2, 0.5, 0.6]  # equal points keep logging order


def test_unpack_of_nothing_is_empty():
    steps, timestamps, values = metric_codec.unpack([])
    assert len(steps) == len(timestamps) == len(values) == 0


def test_latest_index_prefers_highest_step_then_latest_timestamp_then_last_logged():
    steps = np.array([3, 7, 7, 2, 7])
    timestamps = np.array([99, 5, 8, 100, 8])
    assert metric_codec.latest_index(steps, timestamps) == 4
