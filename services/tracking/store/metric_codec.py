"""Metric points as packed columns: int64 steps and timestamps, float64 values, little-endian."""
import numpy as np

STEP_DTYPE = np.dtype("<i8")
VALUE_DTYPE = np.dtype("<f8")


def pack(steps, timestamps, values) -> tuple[bytes, bytes, bytes]:
    return (
        np.asarray(steps, dtype=STEP_DTYPE).tobytes(),
        np.asarray(timestamps, dtype=STEP_DTYPE).tobytes(),
        np.asarray(values, dtype=VALUE_DTYPE).tobytes(),
    )


def unpack(chunks) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Concatenate (step_data, timestamp_data, value_data) chunks, ordered by step then timestamp."""
    chunks = list(chunks)
    if not chunks:
        empty = np.empty(0, STEP_DTYPE)
        return empty, empty, np.empty(0, VALUE_DTYPE)
    steps = np.frombuffer(b"".join(c[0] for c in chunks), STEP_DTYPE)
    timestamps = np.frombuffer(b"".join(c[1] for c in chunks), STEP_DTYPE)
    values = np.frombuffer(b"".join(c[2] for c in chunks), VALUE_DTYPE)
    if len(steps) > 1:
        step_diff = np.diff(steps)
        in_order = bool(np.all((step_diff > 0) | ((step_diff == 0) & (np.diff(timestamps) >= 0))))
        if not in_order:
            order = np.lexsort((timestamps, steps))  # stable: equal points keep logging order
            steps, timestamps, values = steps[order], timestamps[order], values[order]
    return steps, timestamps, values


def latest_index(steps: np.ndarray, timestamps: np.ndarray) -> int:
    """Index of the point MLflow reports as latest: highest step, then latest timestamp."""
    candidates = np.flatnonzero(steps == steps.max())[::-1]  # on a full tie, the last logged wins
    return int(candidates[np.argmax(timestamps[candidates])])
