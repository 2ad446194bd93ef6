"""MLGRID_SERVING_MODELS as `python -m services.serving` reads it, and its mistakes."""
import pytest

from services.common.config import ServingConfig
from services.common.errors import InvalidArgument
from services.serving.repository import ModelRepository, ModelSpec
from services.serving.service import parse_models

CONFIG = ServingConfig(workers=2, max_batch_size=16, max_batch_wait_ms=5)


def test_name_uri_pairs_bare_uris_and_json():
    assert parse_models("a=models:/fraud@champion, b=runs:/0123/model", CONFIG) == [
        ModelSpec("a", "models:/fraud@champion", 2, 16, 5), ModelSpec("b", "runs:/0123/model", 2, 16, 5),
    ]
    assert parse_models("models:/fraud/3", CONFIG) == [ModelSpec("fraud", "models:/fraud/3", 2, 16, 5)]
    assert parse_models("/srv/models/iris", CONFIG)[0].name == "model"
    specs = parse_models('[{"name": "x", "uri": "models:/x@prod", "workers": 4, "max_batch_size": 64}]', CONFIG)
    assert specs == [ModelSpec("x", "models:/x@prod", 4, 64, 5)]  # unset fields take the defaults


@pytest.mark.parametrize("text, needle", [
    ("", "no model to serve"),
    ("[{\"name\": \"x\"}]", "JSON list"),
    ("[not json", "JSON list"),
    ("[{\"name\": \"x\", \"uri\": \"u\", \"colour\": 1}]", "JSON list"),
])
def test_bad_model_lists_are_invalid_argument(text, needle):
    with pytest.raises(InvalidArgument, match=needle):
        parse_models(text, CONFIG)


def test_two_models_under_one_name_are_refused():
    with pytest.raises(InvalidArgument, match="one name"):
        ModelRepository(parse_models("a=models:/x@p,a=models:/y@p", CONFIG), None)
