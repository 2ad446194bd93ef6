"""What every protocol's request becomes before it reaches a model: named arrays (DataFrame
columns or named tensors) or one unnamed tensor, sharing a first dimension (rows) when they can
be batched, plus inference params. Codecs build Payloads; the data plane batches and predicts them."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

UNNAMED = ""  # the key of a request's single unnamed tensor


def shared_rows(arrays: dict[str, np.ndarray]) -> int | None:
    """The first dimension all the arrays share, or None."""
    sizes = {len(a) if a.ndim else -1 for a in arrays.values()}
    return sizes.pop() if len(sizes) == 1 and -1 not in sizes else None


@dataclass
class Payload:
    arrays: dict[str, np.ndarray]  # in the order given; {UNNAMED: array} for one unnamed tensor
    params: dict | None = None
    # How the input was shaped on the wire, for answering in kind: "columns" (a table: DataFrame
    # columns, OIP named inputs), "tensor" (one unnamed array), "tensors" (named arrays), "json" (anything else)
    kind: str = "columns"
    raw: object = None  # for kind "json": the decoded value, given to the model as it is
    id: str = ""
    requested_outputs: list[str] = field(default_factory=list)  # empty: all

    @property
    def rows(self) -> int | None:
        """The shared first dimension, or None when the arrays do not share one (not batchable)."""
        return None if self.kind == "json" else shared_rows(self.arrays)


@dataclass
class Prediction:
    """A model's output as named arrays sharing a first dimension: "frame" (DataFrame columns),
    "tensor" ({UNNAMED: array}), "tensors" (named arrays), or "json" (anything else, in `raw`)."""

    kind: str
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    raw: object = None

    @property
    def rows(self) -> int | None:
        return None if self.kind == "json" else shared_rows(self.arrays)

    def slice(self, start: int, stop: int) -> "Prediction":
        return Prediction(self.kind, {k: v[start:stop] for k, v in self.arrays.items()})
