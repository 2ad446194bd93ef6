"""The pytorch flavor: a torch.nn.Module saved whole with torch.save (data/model.pth), as MLflow's
pickle format; MLflow's torch.export (model.pt2) and TorchScript models load too. As a
python_function, predict takes a tensor, a numpy array or a DataFrame (as float32) and returns
numpy (a DataFrame for a DataFrame), computed without gradients; loaded modules are in eval mode.

    info = mlgrid.pytorch.log_model(net, name="model", input_example=x[:4])
    net = mlgrid.pytorch.load_model(info.model_uri)
"""
from __future__ import annotations

import os
import pickle
import warnings

import grpc
import numpy as np

from mlgrid.exceptions import MlgridException
from mlgrid.models import Model, ModelInfo, ModelSignature, saving
from mlgrid.models.environment import pinned
from mlgrid.models.uri import download_model

FLAVOR = "pytorch"
DATA_DIR = "data"
PICKLED_FILE = "model.pth"
EXPORTED_FILE = "model.pt2"
PICKLE_MODULE_FILE = "pickle_module_info.txt"


def _invalid(message: str) -> MlgridException:
    return MlgridException(message, grpc.StatusCode.INVALID_ARGUMENT)


def save_model(
    pytorch_model,
    path: str,
    code_paths: list[str] | None = None,
    signature: ModelSignature | None = None,
    input_example=None,
    pip_requirements=None,
    extra_pip_requirements=None,
    conda_env=None,
    mlmodel: Model | None = None,
) -> Model:
    """Save a torch.nn.Module (whole, with torch.save) into a new folder at `path`."""
    import torch

    if not isinstance(pytorch_model, torch.nn.Module):
        raise _invalid(f"pytorch_model must be a torch.nn.Module, not {type(pytorch_model).__name__}")
    with saving.new_model_dir(path) as model_dir:
        code = saving.copy_code_paths(model_dir, code_paths)
        data_dir = os.path.join(model_dir, DATA_DIR)
        os.makedirs(data_dir)
        if isinstance(pytorch_model, torch.jit.ScriptModule):
            torch.jit.save(pytorch_model, os.path.join(data_dir, PICKLED_FILE))
        else:
            torch.save(pytorch_model, os.path.join(data_dir, PICKLED_FILE), pickle_module=pickle)
        with open(os.path.join(data_dir, PICKLE_MODULE_FILE), "w") as f:
            f.write(pickle.__name__)
        model = mlmodel or Model()
        model.add_flavor(saving.PYFUNC, **saving.pyfunc_flavor(
            "mlgrid.pytorch", code, data=DATA_DIR, pickle_module_name=pickle.__name__, config={"device": None},
        ))
        model.add_flavor(FLAVOR, model_data=DATA_DIR, pytorch_version=str(torch.__version__), code=code)
        predictor = _TorchPredictor(pytorch_model, None)
        return saving.finish_model_dir(
            model_dir, model, pinned("mlgrid", "torch", "cloudpickle", "numpy", "pandas"), signature=signature,
            input_example=input_example, predict=predictor.predict, pip_requirements=pip_requirements,
            extra_pip_requirements=extra_pip_requirements, conda_env=conda_env,
        )


def log_model(pytorch_model, name: str = "model", registered_model_name: str | None = None, **kwargs) -> ModelInfo:
    """Save the module as the active run's artifacts `name`, and register it when asked; kwargs as save_model's."""
    return saving.log_model(save_model, name, registered_model_name, pytorch_model=pytorch_model, **kwargs)


def _load_module(data_dir: str, device: str | None = None):
    import torch

    map_location = device or "cpu"
    exported = os.path.join(data_dir, EXPORTED_FILE)
    if os.path.exists(exported):
        return torch.export.load(exported).module()
    path = os.path.join(data_dir, PICKLED_FILE)
    if not os.path.exists(path):
        raise MlgridException(f"no {PICKLED_FILE} or {EXPORTED_FILE} in {data_dir}", grpc.StatusCode.NOT_FOUND)
    with warnings.catch_warnings():  # torch.load itself hands TorchScript archives to torch.jit.load
        warnings.filterwarnings("ignore", message=".*TorchScript archive", category=UserWarning)
        return torch.load(path, map_location=map_location, weights_only=False).eval()


def load_model(model_uri: str, dst_path: str | None = None, device: str | None = None):
    """The torch.nn.Module at `model_uri` (local folder, runs:/, models:/...)."""
    model_dir = download_model(model_uri, dst_path)
    conf = Model.load(model_dir).flavors.get(FLAVOR)
    if conf is None:
        raise _invalid(f"the model at {model_dir} has no pytorch flavor")
    return _load_module(os.path.join(model_dir, conf.get("model_data", DATA_DIR)), device)


class _TorchPredictor:
    def __init__(self, module, device: str | None):
        self.raw_model = module
        self._device = device or "cpu"

    def predict(self, data, params: dict | None = None):
        import pandas as pd
        import torch

        if isinstance(data, pd.DataFrame):
            tensor = torch.tensor(data.to_numpy(dtype=np.float32))
        elif isinstance(data, torch.Tensor):
            tensor = data
        elif isinstance(data, np.ndarray):
            tensor = torch.from_numpy(data if data.flags.writeable else data.copy())
        else:
            raise _invalid(f"a pytorch model takes a DataFrame, numpy array or tensor, not {type(data).__name__}")
        with torch.no_grad():
            output = self.raw_model(tensor.to(self._device))
        if isinstance(output, torch.Tensor):
            output = output.detach().cpu().numpy()
        return pd.DataFrame(output) if isinstance(data, pd.DataFrame) and np.ndim(output) <= 2 else output


def _load_pyfunc(path: str, model_config: dict | None = None):
    """Loader of the python_function flavor: `path` is the model's data folder (mlgrid's and mlflow.pytorch's)."""
    device = (model_config or {}).get("device")
    return _TorchPredictor(_load_module(path, device), device)
