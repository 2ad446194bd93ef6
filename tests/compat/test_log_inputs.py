"""Dataset inputs through the stock mlflow client: mlflow.log_input with a pandas dataset."""
import mlflow
import pandas as pd
from conftest import unique


def test_log_input_with_a_pandas_dataset(client):
    mlflow.set_experiment(unique())
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [0, 1, 0]})
    dataset = mlflow.data.from_pandas(frame, name="train-set", targets="y")
    with mlflow.start_run() as run:
        mlflow.log_input(dataset, context="training", tags={"split": "a"})
    [logged] = client.get_run(run.info.run_id).inputs.dataset_inputs
    assert (logged.dataset.name, logged.dataset.digest, logged.dataset.source_type) == ("train-set", dataset.digest, "code")
    assert {t.key: t.value for t in logged.tags} == {"mlflow.data.context": "training", "split": "a"}
    assert logged.dataset.schema == dataset.to_dict()["schema"] and '"num_rows": 3' in logged.dataset.profile
    assert mlflow.data.get_source(logged).to_dict() == dataset.source.to_dict()
