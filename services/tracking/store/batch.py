"""A write batch made ready for any backend: validated, metric series packed
into chunks, and the latest point of each series picked (pure, no I/O)."""
import math
from dataclasses import dataclass, field

import numpy as np

from services.common.errors import InvalidArgument
from services.db import run_data_fields, validation
from services.tracking.store import metric_codec

RUN_NAME_TAG = "mlflow.runName"


@dataclass
class PreparedBatch:
    # (key, n, step_data, timestamp_data, value_data) per series
    chunks: list[tuple[str, int, bytes, bytes, bytes]] = field(default_factory=list)
    # (key, value, is_nan, timestamp, step, encoded): the latest point of each series;
    # NaN stored as 0 + is_nan, encoded as run_data_fields.metric
    latest: list[tuple[str, float, bool, int, int, bytes]] = field(default_factory=list)
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def points(self) -> int:
        return sum(chunk[1] for chunk in self.chunks)


def prepare(series, param_list, tag_list) -> PreparedBatch:
    """series: (key, steps, timestamps, values) columns; raises InvalidArgument on any bad item."""
    batch = PreparedBatch()
    for p in param_list:
        validation.param_value(validation.key("param", p.key), p.value)
        if batch.params.setdefault(p.key, p.value) != p.value:
            raise InvalidArgument(f"param {p.key!r} appears twice in the batch with different values")
    for t in tag_list:
        batch.tags[validation.key("tag", t.key)] = validation.tag_value(t.key, t.value)
    # Every write of a batch upserts its rows in key order, so that concurrent batches to one run take their
    # row locks in the same order and cannot deadlock.
    batch.params = dict(sorted(batch.params.items()))
    batch.tags = dict(sorted(batch.tags.items()))
    for key, steps, timestamps, values in sorted(_one_series_per_key(series), key=lambda s: s[0]):
        validation.key("metric", key)
        step_data, timestamp_data, value_data = metric_codec.pack(steps, timestamps, values)
        batch.chunks.append((key, len(values), step_data, timestamp_data, value_data))
        i = 0
        if len(values) > 1:
            i = metric_codec.latest_index(np.frombuffer(step_data, "<i8"), np.frombuffer(timestamp_data, "<i8"))
        value = values[i]
        is_nan = math.isnan(value)
        timestamp, step = timestamps[i], steps[i]
        encoded = run_data_fields.metric(key, value, timestamp, step)
        batch.latest.append((key, 0.0 if is_nan else value, is_nan, timestamp, step, encoded))
    return batch


def _one_series_per_key(series):
    """Series of one key joined into one, in order: a batch's latest value of a key is one row to upsert
    (PostgreSQL refuses a statement that updates a row twice)."""
    if len({key for key, *_ in series}) == len(series):
        return series
    merged: dict[str, tuple[list, list, list]] = {}
    for key, steps, timestamps, values in series:
        columns = merged.setdefault(key, ([], [], []))
        columns[0].extend(steps)
        columns[1].extend(timestamps)
        columns[2].extend(values)
    return [(key, *columns) for key, columns in merged.items()]


def params_to_insert(run_id: str, existing: dict[str, str], new_params: dict[str, str]) -> dict[str, str]:
    """Params are immutable: the same value again is accepted (and not rewritten), another value is refused."""
    for key, value in new_params.items():
        if key in existing and existing[key] != value:
            raise InvalidArgument(
                f"param {key!r} of run {run_id} is already {existing[key]!r} and cannot be changed to {value!r}: "
                "params are immutable; log the new value under another key or start a new run"
            )
    return {k: v for k, v in new_params.items() if k not in existing}
