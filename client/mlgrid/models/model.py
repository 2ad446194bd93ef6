"""The MLmodel file: what a model folder holds and how to load it, in MLflow's format.

    artifact_path: model
    flavors:
      python_function: {loader_module: mlgrid.sklearn, env: {...}, python_version: ...}
      sklearn: {pickled_model: model.skops, serialization_format: skops, ...}
    model_uuid: ...
    run_id: ...
    signature: {inputs: '[...]', outputs: '[...]', params: null}
    saved_input_example_info: {artifact_path: input_example.json, type: dataframe, ...}
    utc_time_created: '2026-11-27 06:51:20.258723'

Keys this module does not know (mlflow_version, model_id, prompts, ...) are kept as they are."""
from __future__ import annotations

import datetime
import importlib.metadata
import os
import uuid
from dataclasses import dataclass, field

import grpc

from mlgrid.exceptions import MlgridException
from mlgrid.models.input_example import load_input_example
from mlgrid.models.signature import ModelSignature, ParamSpec, Schema

MLMODEL_FILE = "MLmodel"
PYFUNC = "python_function"
_KNOWN_KEYS = (
    "artifact_path", "run_id", "utc_time_created", "flavors", "signature", "saved_input_example_info",
    "model_uuid", "model_size_bytes",
)


def _yaml():
    try:
        import yaml
    except ImportError:
        raise MlgridException(
            "reading and writing MLmodel files needs pyyaml: pip install 'mlgrid[models]'", grpc.StatusCode.FAILED_PRECONDITION
        ) from None
    return yaml


def _mlgrid_version() -> str:
    try:
        return importlib.metadata.version("mlgrid")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


@dataclass
class Model:
    artifact_path: str | None = None
    run_id: str | None = None
    utc_time_created: str = field(default_factory=lambda: str(datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)))
    flavors: dict = field(default_factory=dict)
    signature: ModelSignature | None = None
    saved_input_example_info: dict | None = None
    model_uuid: str = field(default_factory=lambda: uuid.uuid4().hex)
    model_size_bytes: int | None = None
    other: dict = field(default_factory=lambda: {"mlgrid_version": _mlgrid_version()})

    def add_flavor(self, name: str, **conf) -> "Model":
        self.flavors[name] = conf
        return self

    def pyfunc_conf(self) -> dict | None:
        return self.flavors.get(PYFUNC)

    def get_input_schema(self) -> Schema | None:
        return self.signature.inputs if self.signature else None

    def get_output_schema(self) -> Schema | None:
        return self.signature.outputs if self.signature else None

    def get_params_schema(self) -> tuple[ParamSpec, ...]:
        return self.signature.params if self.signature else ()

    def load_input_example(self, model_dir: str):
        return load_input_example(model_dir, self.saved_input_example_info)

    def to_dict(self) -> dict:
        entry = {
            "artifact_path": self.artifact_path,
            "flavors": self.flavors,
            "model_uuid": self.model_uuid,
            "model_size_bytes": self.model_size_bytes,
            "run_id": self.run_id,
            "saved_input_example_info": self.saved_input_example_info,
            "signature": self.signature.to_dict() if self.signature else None,
            "utc_time_created": self.utc_time_created,
            **self.other,
        }
        return {k: v for k, v in sorted(entry.items()) if v is not None}

    def save(self, model_dir: str) -> None:
        with open(os.path.join(model_dir, MLMODEL_FILE), "w") as f:
            _yaml().safe_dump(self.to_dict(), f, default_flow_style=False)

    @classmethod
    def from_dict(cls, entry: dict) -> "Model":
        if not isinstance(entry, dict) or not isinstance(entry.get("flavors"), dict):
            raise MlgridException("not an MLmodel file: it has no flavors", grpc.StatusCode.INVALID_ARGUMENT)
        return cls(
            artifact_path=entry.get("artifact_path"),
            run_id=entry.get("run_id"),
            utc_time_created=str(entry.get("utc_time_created", "")),
            flavors=entry["flavors"],
            signature=ModelSignature.from_dict(entry["signature"]) if entry.get("signature") else None,
            saved_input_example_info=entry.get("saved_input_example_info"),
            model_uuid=entry.get("model_uuid") or "",
            model_size_bytes=entry.get("model_size_bytes"),
            other={k: v for k, v in entry.items() if k not in _KNOWN_KEYS},
        )

    @classmethod
    def load(cls, path: str) -> "Model":
        """The MLmodel of a model folder (or the MLmodel file itself)."""
        if os.path.isdir(path):
            path = os.path.join(path, MLMODEL_FILE)
        if not os.path.isfile(path):
            raise MlgridException(f"no MLmodel file at {path}: is this a model folder?", grpc.StatusCode.NOT_FOUND)
        with open(path) as f:
            return cls.from_dict(_yaml().safe_load(f))
