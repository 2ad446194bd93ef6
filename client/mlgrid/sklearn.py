"""The sklearn flavor: scikit-learn estimators saved with skops (safe to load: only the types skops
trusts, scikit-learn's own classes, and those given in skops_trusted_types) or, when asked,
pickle/cloudpickle. The MLmodel
entry is MLflow's, so mlflow.sklearn reads these models and this module reads MLflow's.

    info = mlgrid.sklearn.log_model(estimator, name="model", input_example=X[:5])
    estimator = mlgrid.sklearn.load_model(info.model_uri)
"""
from __future__ import annotations

import os
import pickle
import pydoc
import warnings

import grpc

from mlgrid.exceptions import MlgridException
from mlgrid.models import Model, ModelInfo, ModelSignature, saving
from mlgrid.models.environment import pinned
from mlgrid.models.uri import download_model

FLAVOR = "sklearn"
FORMATS = ("skops", "pickle", "cloudpickle")
MODEL_FILES = {"skops": "model.skops", "pickle": "model.pkl", "cloudpickle": "model.pkl"}


def _invalid(message: str) -> MlgridException:
    return MlgridException(message, grpc.StatusCode.INVALID_ARGUMENT)


def _library_class(name: str) -> bool:
    """Whether `name` is a class of scikit-learn itself (such as sklearn.tree._tree.Tree), which a
    saved estimator may hold and skops does not trust by default."""
    return name.startswith("sklearn.") and isinstance(pydoc.locate(name), type)


def _dump(sk_model, path: str, serialization_format: str, skops_trusted_types: list[str] | None) -> list[str] | None:
    """Write the model file; for skops, returns the trusted types that loading needs (the given ones
    and scikit-learn's own classes), refusing a model that holds other untrusted types."""
    if serialization_format == "skops":
        import skops.io

        skops.io.dump(sk_model, path)
        needed = sorted(skops.io.get_untrusted_types(file=path))
        untrusted = [t for t in needed if t not in (skops_trusted_types or []) and not _library_class(t)]
        if untrusted:
            raise _invalid(
                f"skops does not trust the types {untrusted} in this model, so it could not be loaded; "
                "if you trust them, pass skops_trusted_types=[...] with them, or save with serialization_format='pickle'"
            )
        return needed or None
    with open(path, "wb") as f:
        if serialization_format == "cloudpickle":
            import cloudpickle

            cloudpickle.dump(sk_model, f)
        else:
            pickle.dump(sk_model, f)
    return None


def save_model(
    sk_model,
    path: str,
    serialization_format: str = "skops",
    skops_trusted_types: list[str] | None = None,
    code_paths: list[str] | None = None,
    signature: ModelSignature | None = None,
    input_example=None,
    pip_requirements=None,
    extra_pip_requirements=None,
    conda_env=None,
    pyfunc_predict_fn: str = "predict",
    mlmodel: Model | None = None,
) -> Model:
    """Save a scikit-learn model into a new folder at `path` (MLmodel, model file, environment files)."""
    import sklearn

    if serialization_format not in FORMATS:
        raise _invalid(f"unknown serialization_format {serialization_format!r}: use one of {', '.join(FORMATS)}")
    if not callable(getattr(sk_model, pyfunc_predict_fn, None)):
        raise _invalid(f"the model has no method {pyfunc_predict_fn!r} (pyfunc_predict_fn)")
    with saving.new_model_dir(path) as model_dir:
        code = saving.copy_code_paths(model_dir, code_paths)
        model_file = MODEL_FILES[serialization_format]
        trusted = _dump(sk_model, os.path.join(model_dir, model_file), serialization_format, skops_trusted_types)
        model = mlmodel or Model()
        model.add_flavor(saving.PYFUNC, **saving.pyfunc_flavor(
            "mlgrid.sklearn", code, model_path=model_file, predict_fn=pyfunc_predict_fn,
        ))
        model.add_flavor(
            FLAVOR, pickled_model=model_file, serialization_format=serialization_format,
            sklearn_version=sklearn.__version__, code=code, skops_trusted_types=trusted,
        )
        library = "skops" if serialization_format == "skops" else "cloudpickle" if serialization_format == "cloudpickle" else None
        return saving.finish_model_dir(
            model_dir, model, pinned("mlgrid", "scikit-learn", *([library] if library else []), "numpy", "pandas"),
            signature=signature, input_example=input_example, predict=getattr(sk_model, pyfunc_predict_fn),
            pip_requirements=pip_requirements, extra_pip_requirements=extra_pip_requirements, conda_env=conda_env,
        )


def log_model(sk_model, name: str = "model", registered_model_name: str | None = None, **kwargs) -> ModelInfo:
    """Save the model as the active run's artifacts `name`, and register it when asked; kwargs as save_model's."""
    return saving.log_model(save_model, name, registered_model_name, sk_model=sk_model, **kwargs)


def _load_from_dir(model_dir: str):
    metadata = Model.load(model_dir)
    conf = metadata.flavors.get(FLAVOR)
    if conf is None:
        raise _invalid(f"the model at {model_dir} has no sklearn flavor (it has {sorted(metadata.flavors)})")
    serialization_format = conf.get("serialization_format", "pickle")
    if serialization_format not in FORMATS:
        raise _invalid(f"the model's serialization_format {serialization_format!r} is not one of {', '.join(FORMATS)}")
    path = os.path.join(model_dir, conf["pickled_model"])
    if serialization_format == "skops":
        import skops.io

        return skops.io.load(path, trusted=conf.get("skops_trusted_types") or None)
    with open(path, "rb") as f:
        if serialization_format == "cloudpickle":
            import cloudpickle

            return cloudpickle.load(f)
        return pickle.load(f)


def load_model(model_uri: str, dst_path: str | None = None):
    """The scikit-learn model at `model_uri` (local folder, runs:/, models:/...)."""
    return _load_from_dir(download_model(model_uri, dst_path))


class _SklearnPredictor:
    def __init__(self, sk_model, predict_fn: str):
        self.raw_model = sk_model
        self._predict = getattr(sk_model, predict_fn)
        names = getattr(sk_model, "feature_names_in_", None)
        self._feature_names = [str(n) for n in names] if names is not None else None

    def predict(self, data, params: dict | None = None):
        if self._feature_names is not None and _is_frame(data) and list(data.columns) == self._feature_names:
            # The columns are the ones the model was fit on, in its order: its checks of feature
            # names on a DataFrame cost several times the prediction of a few rows, so skip them.
            values = data.to_numpy()
            if values.dtype != object:
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message="X does not have valid feature names")
                    return self._predict(values)
        return self._predict(data)


def _is_frame(data) -> bool:
    return type(data).__name__ == "DataFrame" and hasattr(data, "columns")


def _load_pyfunc(path: str, model_config: dict | None = None):
    """Loader of the python_function flavor (mlgrid's and mlflow.sklearn's models)."""
    model_dir = path if os.path.isdir(path) else os.path.dirname(path)
    conf = Model.load(model_dir).pyfunc_conf() or {}
    return _SklearnPredictor(_load_from_dir(model_dir), conf.get("predict_fn", "predict"))
