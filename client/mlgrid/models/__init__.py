"""The MLmodel format that flavors write and serving loads: Model (the MLmodel file), signatures,
input examples, environment files, and model URIs."""
try:
    import numpy  # noqa: F401  (every flavor comes through here first)
except ImportError as error:
    raise ImportError("mlgrid's models and flavors need the models extra: pip install 'mlgrid[models]'") from error

from mlgrid.models.model import MLMODEL_FILE, Model
from mlgrid.models.saving import ModelInfo
from mlgrid.models.signature import ColSpec, ModelSignature, ParamSpec, Schema, TensorSpec, infer_signature
from mlgrid.models.uri import download_model

__all__ = [
    "MLMODEL_FILE", "ColSpec", "Model", "ModelInfo", "ModelSignature", "ParamSpec", "Schema", "TensorSpec",
    "download_model", "infer_signature",
]
