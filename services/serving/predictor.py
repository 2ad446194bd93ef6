"""A loaded model answering Payloads: builds the model's input as its signature asks (a DataFrame
for column-based models, arrays for tensor-based ones), predicts, and returns a Prediction. Runs
in the serving worker processes (or in-process with --workers 0)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from mlgrid.exceptions import MlgridException
from mlgrid.models.signature import NUMPY_TYPES
from mlgrid.pyfunc import PyFuncModel, load_pyfunc_from_dir
from services.common.errors import InvalidArgument, from_status
from services.serving.payload import UNNAMED, Payload, Prediction


class Predictor:
    def __init__(self, model: PyFuncModel):
        self.model = model
        self.schema = model.metadata.get_input_schema()
        if self.schema is not None and not self.schema.is_tensor_based:
            # Built once: making an Index of strings costs more than predicting a few rows.
            names = self.schema.names()
            self._column_index = pd.Index([str(n) for n in names] if self.schema.has_names else range(len(names)), dtype=object)
        self._string_columns = {
            spec.name for spec in (self.schema.inputs if self.schema and not self.schema.is_tensor_based else ()) if spec.type == "string"
        }

    @classmethod
    def load(cls, model_dir: str) -> "Predictor":
        return cls(load_pyfunc_from_dir(model_dir))

    def _as_schema_dtype(self, matrix: np.ndarray) -> np.ndarray:
        """A matrix for a table whose columns all have one numeric type, in that type (one block, no per-column work)."""
        kinds = {spec.type for spec in self.schema.inputs}
        kind = kinds.pop() if len(kinds) == 1 else None
        if kind in ("double", "float") and matrix.dtype.kind in "iuf" or kind in ("long", "integer") and matrix.dtype.kind in "iu":
            return matrix.astype(NUMPY_TYPES[kind], copy=False)
        return matrix  # anything else is checked column by column by the model's signature

    def model_input(self, payload: Payload):
        """The payload as this model takes it."""
        if payload.kind == "json":
            return payload.raw
        arrays = payload.arrays
        schema = self.schema
        only = next(iter(arrays.values())) if len(arrays) == 1 else None
        if schema is not None and schema.is_tensor_based:
            if len(schema.inputs) == 1 and only is not None:
                return only
            return dict(arrays)
        if schema is not None and schema.inputs:
            names = schema.names()
            if only is not None and only.ndim == 2 and only.shape[1] == len(names) and (UNNAMED in arrays or not set(arrays) & set(names)):
                return pd.DataFrame(self._as_schema_dtype(only), columns=self._column_index)
            return pd.DataFrame(_columns(arrays, self._string_columns))
        if only is not None and (UNNAMED in arrays or payload.kind == "tensor"):
            return only
        if payload.kind == "columns" and all(a.ndim == 1 for a in arrays.values()):
            return pd.DataFrame(arrays)
        return dict(arrays)

    def predict(self, payload: Payload) -> Prediction:
        try:
            output = self.model.predict(self.model_input(payload), params=payload.params)
        except MlgridException as error:
            raise from_status(error.code, error.message) from None
        except (ValueError, TypeError, KeyError) as error:  # the model refused the input
            raise InvalidArgument(f"the model could not use the input: {type(error).__name__}: {error}") from None
        return as_prediction(output)


def _columns(arrays: dict[str, np.ndarray], string_columns: set[str]) -> dict[str, np.ndarray]:
    """Named arrays as DataFrame columns: [N, 1] arrays flattened (OIP sends columns so), and BYTES
    (OIP's only text type) decoded as UTF-8 for the schema's string columns."""
    columns = {}
    for name, array in arrays.items():
        if array.ndim == 2 and array.shape[1] == 1:
            array = array.reshape(-1)
        if name in string_columns and array.dtype == object:
            array = np.array([v.decode("utf-8", "replace") if isinstance(v, bytes) else v for v in array], dtype=object)
        columns[name] = array
    return columns


def as_prediction(output) -> Prediction:
    if isinstance(output, pd.DataFrame):
        return Prediction("frame", {str(c): output[c].to_numpy() for c in output.columns})
    if isinstance(output, pd.Series):
        return Prediction("tensor", {UNNAMED: output.to_numpy()})
    if hasattr(output, "detach") and hasattr(output, "numpy"):
        output = output.detach().cpu().numpy()
    if isinstance(output, np.ndarray):
        return Prediction("tensor", {UNNAMED: output})
    if isinstance(output, dict) and output and all(isinstance(v, (np.ndarray, list)) for v in output.values()):
        return Prediction("tensors", {str(k): np.asarray(v) for k, v in output.items()})
    if isinstance(output, list):
        return Prediction("tensor", {UNNAMED: np.asarray(output)}) if _is_rectangular(output) else Prediction("json", raw=output)
    return Prediction("json", raw=output)


def _is_rectangular(values: list) -> bool:
    try:
        array = np.asarray(values)
    except ValueError:
        return False
    return array.dtype != object or all(isinstance(v, (str, bytes)) for v in values)
