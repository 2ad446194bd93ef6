"""Search filters and orderings of registered models and model versions, in MLflow's grammar,
parsed by the shared parser (services/db/filters.py):

    name LIKE '%fraud%' AND tags.team = 'risk'
    name = 'fraud' AND run_id = '...' AND version_number >= 3 AND tags."validated" = 'yes'
"""
from sqlalchemy import Select, exists, select

from services.db.filters import (
    ATTRIBUTE_PREFIXES,
    COMPARE,
    TAG_PREFIXES,
    Comparison,
    Grammar,
    OrderKey,
    ordered,
    parse_filter,
    parse_order_by,
)
from services.db.schema import model_version_tags, model_versions, registered_model_tags, registered_models

_MODEL_ORDER_ATTRIBUTES = {
    "name": registered_models.c.name,
    "creation_timestamp": registered_models.c.creation_time,
    "last_updated_timestamp": registered_models.c.last_updated_time,
}
_MODELS = Grammar(
    subject="registered model",
    prefixes={**TAG_PREFIXES, **ATTRIBUTE_PREFIXES},
    filter_attributes={"name": registered_models.c.name},
    order_attributes=_MODEL_ORDER_ATTRIBUTES,
    bare_filter_attributes=True,
    order_entities=frozenset({"attribute"}),
    string_ops=("=", "!=", "LIKE", "ILIKE"),
    keys_hint="name or a tag such as tags.\"my tag\"",
)

_VERSION_FILTER_ATTRIBUTES = {
    "name": registered_models.c.name,
    "run_id": model_versions.c.run_id,
    "source_path": model_versions.c.source,
    "version_number": model_versions.c.version,
}
_VERSION_ORDER_ATTRIBUTES = {
    "name": registered_models.c.name,
    "version_number": model_versions.c.version,
    "creation_timestamp": model_versions.c.creation_time,
    "last_updated_timestamp": model_versions.c.last_updated_time,
}
_VERSIONS = Grammar(
    subject="model version",
    prefixes={**TAG_PREFIXES, **ATTRIBUTE_PREFIXES},
    filter_attributes=_VERSION_FILTER_ATTRIBUTES,
    order_attributes=_VERSION_ORDER_ATTRIBUTES,
    bare_filter_attributes=True,
    order_entities=frozenset({"attribute"}),
    string_ops=("=", "!=", "LIKE", "ILIKE", "IN", "NOT IN"),
    keys_hint="name, run_id, source_path, version_number or a tag such as tags.\"my tag\"",
)


# MLflow keeps prompts as registered models tagged mlflow.prompt.is_prompt=true, and its client adds
# `tags.mlflow.prompt.is_prompt != 'true'` to every registry search. As MLflow's server does, any filter
# on that tag but one asking for prompts (= 'true', != 'false') means "not a prompt", tagged or not.
IS_PROMPT_TAG = "mlflow.prompt.is_prompt"


def _asks_for_prompts(c: Comparison) -> bool:
    return (c.op == "=" and c.value.lower() == "true") or (c.op == "!=" and c.value.lower() == "false")


def _tag_condition(c: Comparison, tags, *owner):
    """`owner`: the conditions tying a tag row to the model (or version) being searched."""
    if c.key == IS_PROMPT_TAG and not _asks_for_prompts(c):
        return ~exists().where(*owner, tags.c.key == IS_PROMPT_TAG, tags.c.value == "true")
    return exists().where(*owner, tags.c.key == c.key, COMPARE[c.op](tags.c.value, c.value))


def _model_condition(c: Comparison):
    if c.entity == "attribute":
        return COMPARE[c.op](_MODELS.filter_attributes[c.key], c.value)
    t = registered_model_tags
    return _tag_condition(c, t, t.c.model_id == registered_models.c.model_id)


def _version_condition(c: Comparison):
    if c.entity == "attribute":
        return COMPARE[c.op](_VERSION_FILTER_ATTRIBUTES[c.key], c.value)
    t = model_version_tags
    return _tag_condition(c, t, t.c.model_id == model_versions.c.model_id, t.c.version == model_versions.c.version)


def _ordering(keys: list[OrderKey], attributes: dict) -> list:
    return [ordered(attributes[k.key], k.ascending, nulls_last=False) for k in keys]


def model_search_select(filter_string: str, order_by: list[str], offset: int, limit: int) -> Select:
    """The registered models matching the search, one page; by name unless ordered otherwise."""
    conditions = [_model_condition(c) for c in parse_filter(filter_string, _MODELS)]
    keys = parse_order_by(order_by, _MODELS) or [OrderKey("attribute", "name", ascending=True)]
    ordering = [*_ordering(keys, _MODEL_ORDER_ATTRIBUTES), registered_models.c.model_id.asc()]
    return select(registered_models).where(*conditions).order_by(*ordering).offset(offset).limit(limit)


def version_search_select(filter_string: str, order_by: list[str], offset: int, limit: int) -> Select:
    """The model versions matching the search, one page; by name, then newest version first, unless ordered otherwise."""
    conditions = [_version_condition(c) for c in parse_filter(filter_string, _VERSIONS)]
    keys = parse_order_by(order_by, _VERSIONS) or [
        OrderKey("attribute", "name", ascending=True), OrderKey("attribute", "version_number", ascending=False),
    ]
    ordering = [*_ordering(keys, _VERSION_ORDER_ATTRIBUTES), model_versions.c.model_id.asc(), model_versions.c.version.desc()]
    source = model_versions.join(registered_models, model_versions.c.model_id == registered_models.c.model_id)
    return (
        select(*model_versions.c, registered_models.c.name).select_from(source)
        .where(*conditions).order_by(*ordering).offset(offset).limit(limit)
    )
