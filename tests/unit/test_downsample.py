import math

import numpy as np

from services.tracking.store.downsample import downsample, sample_indices


def history(n: int):
    steps = np.arange(n, dtype=np.int64)
    return steps, steps * 10, np.sin(steps / 1000.0)


def test_a_history_that_fits_is_returned_whole():
    steps, timestamps, values = downsample(history(1000), None, None, 1000)
    assert steps.tolist() == list(range(1000)) and timestamps[-1] == 9990


def test_peaks_and_dips_survive_and_the_count_is_bounded():
    steps, timestamps, values = history(1_000_000)
    values = values.copy()
    values[123_457], values[876_543] = 50.0, -50.0
    got_steps, got_timestamps, got_values = downsample((steps, timestamps, values), None, None, 1000)
    assert len(got_steps) <= 1000
    assert np.all(np.diff(got_steps) > 0)
    assert 123_457 in got_steps.tolist() and 876_543 in got_steps.tolist()
    assert got_values.max() == 50.0 and got_values.min() == -50.0
    assert got_steps[0] == 0 and got_steps[-1] == 999_999
    assert np.array_equal(got_timestamps, got_steps * 10)


def test_a_step_range_is_cut_first_and_returned_whole_when_it_fits():
    steps, _, values = downsample(history(1_000_000), 500_000, 500_999, 1000)
    assert steps.tolist() == list(range(500_000, 501_000))
    assert np.array_equal(values, np.sin(steps / 1000.0))


def test_a_range_outside_the_history_is_empty():
    steps, timestamps, values = downsample(history(100), 200, 300, 10)
    assert len(steps) == len(timestamps) == len(values) == 0


def test_nan_is_not_an_extreme_and_inf_is():
    steps = np.arange(100, dtype=np.int64)
    values = np.ones(100)
    values[10:20] = math.nan
    values[50] = math.inf
    kept = sample_indices(steps, values, 8)
    assert len(kept) <= 8 and 50 in kept.tolist()


def test_fewer_than_four_points_asked():
    kept = sample_indices(np.arange(100, dtype=np.int64), np.zeros(100), 3)
    assert kept.tolist() == [0, 34, 67]


def test_int64_extreme_steps():
    steps = np.array([-(2**63), 0, 1, 2**63 - 1], dtype=np.int64)
    kept = sample_indices(steps, np.array([1.0, 5.0, -5.0, 2.0]), 2)
    assert len(kept) <= 2
