"""MLflow 3's logged models in the tracking store, on SQLite and PostgreSQL: create, finalize, tags,
params, metrics linked to a model, run outputs and inputs, search, delete, and registering one."""
import math

import pytest
from conftest import unique

from mlgrid.v1 import tracking_pb2 as pb
from services.common.config import RegistryConfig
from services.common.errors import FailedPrecondition, InvalidArgument, NotFound
from services.registry.service import shared_store

Param, Tag = pb.LoggedModelParameter, pb.LoggedModelTag


async def _experiment_and_run(store):
    exp_id = await store.create_experiment(unique(), "", {})
    run = await store.create_run(exp_id, "me", None, [], "trainer")
    return exp_id, run.info.run_id


async def test_create_get_finalize(store):
    exp_id, run_id = await _experiment_and_run(store)
    exp = await store.get_experiment(exp_id)
    model = await store.logged_models.create(exp_id, "m", "sklearn", run_id, [Param(key="C", value="1.0")], [Tag(key="t", value="v")])
    info = model.info
    assert info.model_id.startswith("m-") and len(info.model_id) == 34
    assert info.artifact_uri == f"{exp.artifact_location}/models/{info.model_id}/artifacts"
    assert (info.name, info.model_type, info.source_run_id, info.experiment_id) == ("m", "sklearn", run_id, exp_id)
    assert info.status == pb.LOGGED_MODEL_PENDING
    assert [(t.key, t.value) for t in info.tags] == [("t", "v")]
    assert [(p.key, p.value) for p in model.data.params] == [("C", "1.0")]

    ready = await store.logged_models.finalize(info.model_id, pb.LOGGED_MODEL_READY)
    assert ready.info.status == pb.LOGGED_MODEL_READY
    assert ready.info.last_updated_timestamp_ms >= info.creation_timestamp_ms
    assert (await store.logged_models.get(info.model_id)) == ready
    with pytest.raises(InvalidArgument, match="LOGGED_MODEL_READY"):
        await store.logged_models.finalize(info.model_id, pb.LOGGED_MODEL_PENDING)


async def test_name_generated_and_checks(store):
    exp_id, _ = await _experiment_and_run(store)
    assert (await store.logged_models.create(exp_id, "", "", "", [], [])).info.name
    with pytest.raises(NotFound, match="experiment"):
        await store.logged_models.create("987654", "m", "", "", [], [])
    with pytest.raises(NotFound, match="run"):
        await store.logged_models.create(exp_id, "m", "", "0" * 32, [], [])
    with pytest.raises(InvalidArgument, match="key"):
        await store.logged_models.create(exp_id, "m", "", "", [Param(key="../x", value="1")], [])
    with pytest.raises(InvalidArgument, match="logged model id"):
        await store.logged_models.get("m-nope")
    with pytest.raises(NotFound, match="does not exist"):
        await store.logged_models.get("m-" + "0" * 32)
    await store.set_experiment_lifecycle(exp_id, "deleted")
    with pytest.raises(FailedPrecondition, match="deleted"):
        await store.logged_models.create(exp_id, "m", "", "", [], [])


async def test_tags_params_and_delete(store):
    exp_id, _ = await _experiment_and_run(store)
    model_id = (await store.logged_models.create(exp_id, "m", "", "", [], [])).info.model_id
    await store.logged_models.set_tags(model_id, [Tag(key="a", value="1"), Tag(key="b", value="2")])
    await store.logged_models.set_tags(model_id, [Tag(key="a", value="3")])
    await store.logged_models.delete_tag(model_id, "b")
    with pytest.raises(NotFound, match="no tag 'b'"):
        await store.logged_models.delete_tag(model_id, "b")
    await store.logged_models.log_params(model_id, [Param(key=f"p{i}", value=str(i)) for i in range(3)])
    model = await store.logged_models.get(model_id)
    assert [(t.key, t.value) for t in model.info.tags] == [("a", "3")]
    assert [p.key for p in model.data.params] == ["p0", "p1", "p2"]

    await store.logged_models.delete(model_id)
    with pytest.raises(NotFound):
        await store.logged_models.get(model_id)
    assert (await store.logged_models.get(model_id, allow_deleted=True)).info.model_id == model_id
    with pytest.raises(NotFound):
        await store.logged_models.set_tags(model_id, [Tag(key="a", value="1")])


async def test_metrics_linked_to_a_model_and_run_outputs(store):
    exp_id, run_id = await _experiment_and_run(store)
    model_id = (await store.logged_models.create(exp_id, "m", "", run_id, [], [])).info.model_id
    await store.log_metric(run_id, "acc", 0.5, 1000, 0)
    await store.logged_models.link_run(run_id, [pb.ModelOutput(model_id=model_id, step=0)], ())
    # As MLflow's log_model: the run's points of the model's step again, now with the model's id.
    again = pb.Metric(key="acc", value=0.5, timestamp=1000, step=0, model_id=model_id)
    await store.log_batch(run_id, [again, again], [], [], "")
    await store.log_metric(run_id, "loss", math.nan, 2000, 1, pb.Metric(
        key="loss", value=math.nan, timestamp=2000, step=1, model_id=model_id, dataset_name="eval", dataset_digest="d1",
    ))
    steps, _, values = await store.metric_history(run_id, "acc")
    assert values.tolist() == [0.5]  # not logged twice in the run's history
    metrics = (await store.logged_models.get(model_id)).data.metrics
    assert [(m.key, m.value, m.step, m.run_id, m.model_id) for m in metrics][0] == ("acc", 0.5, 0, run_id, model_id)
    assert metrics[1].key == "loss" and math.isnan(metrics[1].value) and metrics[1].dataset_name == "eval"
    run = await store.get_run(run_id)
    assert [(o.model_id, o.step) for o in run.outputs.model_outputs] == [(model_id, 0)]
    found = (await store.search_runs([exp_id], "", pb.ACTIVE_ONLY, [], 0, "")).runs
    assert [(r.info.run_id, [o.model_id for o in r.outputs.model_outputs]) for r in found] == [(run_id, [model_id])]

    other = await store.create_run(exp_id, "me", None, [], "scorer")
    await store.logged_models.link_run(other.info.run_id, (), [pb.ModelInput(model_id=model_id)])
    assert [i.model_id for i in (await store.get_run(other.info.run_id)).inputs.model_inputs] == [model_id]

    unknown = "m-" + "f" * 32
    with pytest.raises(NotFound, match=unknown):
        await store.log_batch(run_id, [pb.Metric(key="x", value=1, timestamp=1, step=0, model_id=unknown)], [], [], "")
    assert "x" not in {m.key for m in (await store.get_run(run_id)).data.metrics}  # nothing of the batch was kept
    with pytest.raises(NotFound, match=unknown):
        await store.logged_models.link_run(run_id, [pb.ModelOutput(model_id=unknown)], ())


async def test_search(store):
    exp_id, run_id = await _experiment_and_run(store)
    other_exp, _ = await _experiment_and_run(store)
    ids = {}
    for name, acc in (("a", 0.7), ("b", 0.9), ("c", 0.8)):
        ids[name] = (await store.logged_models.create(exp_id, name, "", run_id, [Param(key="kind", value=name)], [])).info.model_id
        metric = pb.Metric(key="acc", value=acc, timestamp=1, step=0, model_id=ids[name], dataset_name="eval")
        await store.log_metric(run_id, "acc", acc, 1, 0, metric)
    await store.logged_models.create(other_exp, "elsewhere", "", "", [], [])
    await store.logged_models.finalize(ids["b"], pb.LOGGED_MODEL_READY)
    search = store.logged_models.search
    By = pb.SearchLoggedModelsRequest.OrderBy

    names = lambda models: [m.info.name for m in models]  # noqa: E731
    assert names((await search([exp_id], "", [], 0, [], ""))[0]) == ["c", "b", "a"]  # newest first
    assert names((await search([exp_id], "metrics.acc >= 0.8", [], 0, [By(field_name="name", ascending=True)], ""))[0]) == ["b", "c"]
    assert names((await search([exp_id], "params.kind = 'a'", [], 0, [], ""))[0]) == ["a"]
    assert names((await search([exp_id], "status = 'READY'", [], 0, [], ""))[0]) == ["b"]
    assert names((await search([exp_id], "name LIKE 'elsew%'", [], 0, [], ""))[0]) == []
    by_acc = [By(field_name="metrics.acc", ascending=False)]
    assert names((await search([exp_id], "", [], 0, by_acc, ""))[0]) == ["b", "c", "a"]
    no_such_dataset = [pb.SearchLoggedModelsRequest.Dataset(dataset_name="train")]
    assert names((await search([exp_id], "metrics.acc > 0", no_such_dataset, 0, [], ""))[0]) == []

    first, token = await search([exp_id], "", [], 2, [], "")
    rest, last = await search([exp_id], "", [], 2, [], token)
    assert names(first) + names(rest) == ["c", "b", "a"] and last == ""
    with pytest.raises(InvalidArgument):
        await search([exp_id], "metrics.acc >", [], 0, [], "")
    with pytest.raises(InvalidArgument, match="order"):
        await search([exp_id], "", [], 0, [By(field_name="nope")], "")


async def test_register_a_logged_model(store):
    registry = shared_store(store.engine, RegistryConfig())
    exp_id, run_id = await _experiment_and_run(store)
    model = (await store.logged_models.create(exp_id, "m", "", run_id, [], [])).info
    name = unique("model")
    await registry.create_registered_model(name, {}, "")
    version = await registry.create_model_version(name, f"models:/{model.model_id}", "", {}, "", "", model.model_id)
    assert (version.source, version.run_id, version.model_id) == (f"models:/{model.model_id}", run_id, model.model_id)
    assert version.storage_location == model.artifact_uri
    runs_version = await registry.create_model_version(name, f"runs:/{run_id}/model", "", {}, "", "")
    assert (runs_version.model_id, runs_version.storage_location) == ("", f"runs:/{run_id}/model")

    missing = "m-" + "0" * 32
    with pytest.raises(NotFound, match="logged model"):
        await registry.create_model_version(name, f"models:/{missing}", "", {}, "", "")
    with pytest.raises(InvalidArgument, match="differs"):
        await registry.create_model_version(name, f"models:/{model.model_id}", "", {}, "", "", missing)
    with pytest.raises(InvalidArgument, match="logged model"):
        await registry.create_model_version(name, f"models:/{name}/1", "", {}, "", "")
