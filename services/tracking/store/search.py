"""MLflow's search grammar for runs and experiments, compiled to SQLAlchemy Core selects.

A filter is comparisons joined by AND, for example

    metrics.loss < 0.5 AND params.optimizer = 'adam' AND tags."my tag" LIKE 'a%'
    AND attributes.run_id IN ('a1', 'b2')

(the grammar itself: services/db/filters.py).

A run lacking a compared metric, param or tag never matches, also for != and
NOT IN (as in MLflow). The selects are dialect-neutral: the one difference
between SQLite and PostgreSQL, case-sensitive LIKE, is settled as they compile.
"""
from sqlalchemy import Column, Select, and_, case, false, func, literal_column, select
from sqlalchemy.ext.asyncio import AsyncConnection

from mlgrid.v1 import tracking_pb2 as pb
from services.common.errors import InvalidArgument
from services.db.filters import (
    ATTRIBUTE_PREFIXES,
    COMPARE,
    TAG_PREFIXES,
    Comparison,
    Grammar,
    OrderKey,
    Visible,
    ordered,
    parse_filter,
    parse_order_by,
)
from services.db.schema import VALUE_INDEX_PREFIX, experiment_tags, experiments, latest_metrics, params, runs, tags

_RUN_ATTRIBUTES = {
    "run_id": runs.c.run_uuid,
    "run_name": runs.c.name,
    "status": runs.c.status,
    "start_time": runs.c.start_time,
    "end_time": runs.c.end_time,
    "artifact_uri": runs.c.artifact_uri,
    "user_id": runs.c.user_id,
}
_RUNS = Grammar(
    subject="run",
    prefixes={
        "metric": "metric", "metrics": "metric",
        "param": "param", "params": "param", "parameter": "param", "parameters": "param",
        **TAG_PREFIXES, **ATTRIBUTE_PREFIXES, "run": "attribute",
    },
    filter_attributes=_RUN_ATTRIBUTES,
    order_attributes=_RUN_ATTRIBUTES,
    bare_filter_attributes=False,
    order_entities=frozenset({"metric", "param", "tag", "attribute"}),
    string_ops=("=", "!=", "LIKE", "ILIKE", "IN", "NOT IN"),
    keys_hint="a key such as metrics.loss, params.lr, tags.\"my tag\" or attributes.status",
)

_EXPERIMENT_FILTER_ATTRIBUTES = {
    "name": experiments.c.name,
    "creation_time": experiments.c.creation_time,
    "last_update_time": experiments.c.last_update_time,
}
_EXPERIMENTS = Grammar(
    subject="experiment",
    prefixes={**TAG_PREFIXES, **ATTRIBUTE_PREFIXES},
    filter_attributes=_EXPERIMENT_FILTER_ATTRIBUTES,
    order_attributes={**_EXPERIMENT_FILTER_ATTRIBUTES, "experiment_id": experiments.c.experiment_id},
    bare_filter_attributes=True,
    order_entities=frozenset({"attribute"}),
    string_ops=("=", "!=", "LIKE", "ILIKE"),
    keys_hint="a key such as name, creation_time, last_update_time or tags.\"my tag\"",
)


_VIEW_STAGES = {pb.VIEW_TYPE_UNSPECIFIED: "active", pb.ACTIVE_ONLY: "active", pb.DELETED_ONLY: "deleted", pb.ALL: None}


def _view_conditions(lifecycle_stage: Column, view_type: int) -> list:
    if view_type not in _VIEW_STAGES:
        raise InvalidArgument(f"Invalid view type {view_type}: expected 1 (ACTIVE_ONLY), 2 (DELETED_ONLY) or 3 (ALL)")
    stage = _VIEW_STAGES[view_type]
    return [] if stage is None else [lifecycle_stage == stage]


def _value_prefix(value: Column):
    # Written exactly as in ix_params_key_value / ix_tags_key_value (constants, not
    # bound parameters), so that both planners match the expression index.
    return func.substr(value, literal_column("1"), literal_column(str(VALUE_INDEX_PREFIX)))


_RUN_KEYED = {"metric": latest_metrics, "param": params, "tag": tags}


def _value_conditions(c: Comparison, row) -> list:
    """`c` on a metric, param or tag row, in a form the value indexes serve."""
    if c.entity == "metric":
        return [COMPARE[c.op](row.value, c.value), row.is_nan == false()]  # NaN matches no comparison
    prefix = _value_prefix(row.value)
    if c.op == "=" and len(c.value) < VALUE_INDEX_PREFIX:
        # Exact on its own for a shorter value. (With `value = constant` beside it,
        # SQLite would propagate the constant into it and no longer match the index.)
        return [prefix == c.value]
    if c.op == "=":
        return [prefix == c.value[:VALUE_INDEX_PREFIX], row.value == c.value]
    if c.op == "IN":
        return [prefix.in_([v[:VALUE_INDEX_PREFIX] for v in c.value]), row.value.in_(c.value)]
    return [COMPARE[c.op](row.value, c.value)]


def _run_condition(c: Comparison):
    if c.entity == "attribute":
        return COMPARE[c.op](_RUN_ATTRIBUTES[c.key], c.value)
    table = _RUN_KEYED[c.entity]
    return runs.c.run_uuid.in_(select(table.c.run_uuid).where(table.c.key == c.key, *_value_conditions(c, table.c)))


def run_search_phases(
    experiment_ids: list[int] | None, filter_string: str, view_type: int, order_by: list[str],
    visible: Visible | None = None,
) -> list[Select]:
    """The search as ordered selects whose results, concatenated, are the whole answer in order.

    When the first order key is a metric, its runs come in three phases — those
    with a number, those with NaN, those without the metric — so that the first
    phase is an inner join that PostgreSQL walks along the (key, value) index,
    stopping at the end of the page instead of ranking every matching run.
    """
    conditions = _view_conditions(runs.c.lifecycle_stage, view_type)
    if experiment_ids:
        conditions.append(runs.c.experiment_id.in_(experiment_ids))
    if visible is not None:
        conditions.append(visible(runs.c.experiment_id))
    conditions += [_run_condition(c) for c in parse_filter(filter_string, _RUNS)]
    keys = parse_order_by(order_by, _RUNS)
    if not keys or keys[0].entity != "metric":
        return [_ordered_runs(conditions, keys)]
    first = keys[0]
    lm = latest_metrics.alias("order_first")
    on_key = and_(lm.c.run_uuid == runs.c.run_uuid, lm.c.key == first.key)
    numbers = runs.join(lm, and_(on_key, lm.c.is_nan == false()))
    nans = runs.join(lm, and_(on_key, lm.c.is_nan))
    missing = ~select(lm.c.run_uuid).where(on_key).exists()
    rest = keys[1:]
    return [
        _ordered_runs(conditions, rest, source=numbers, leading=[ordered(lm.c.value, first.ascending, nulls_last=False)]),
        _ordered_runs(conditions, rest, source=nans),
        _ordered_runs([*conditions, missing], rest),
    ]


async def fetch_run_page(
    conn: AsyncConnection,
    experiment_ids: list[int] | None,
    filter_string: str,
    view_type: int,
    order_by: list[str],
    offset: int,
    limit: int,
    visible: Visible | None = None,
) -> list:
    """Rows offset..offset+limit of the search, walking its phases in order."""
    rows, skip = [], offset
    for phase in run_search_phases(experiment_ids, filter_string, view_type, order_by, visible):
        found = (await conn.execute(phase.offset(skip).limit(limit - len(rows)))).all()
        if found:
            rows += found
            skip = 0
        elif skip:  # the page starts beyond this phase: skip all of it
            skip -= (await conn.execute(select(func.count()).select_from(phase.order_by(None).subquery()))).scalar()
        if len(rows) == limit:
            break
    return rows


def _ordered_runs(conditions: list, keys: list[OrderKey], source=runs, leading: list | None = None) -> Select:
    """Runs of `source` meeting `conditions`, ordered by `leading`, then `keys`, then the tie-breakers."""
    # Each ordered metric, param or tag is a LEFT JOIN to its row: runs without it sort last.
    ordering, joined = list(leading or []), {}
    for k in keys:
        if k.entity == "attribute":
            column = _RUN_ATTRIBUTES[k.key]
            ordering.append(ordered(column, k.ascending, nulls_last=column.nullable))
            continue
        row = joined.get((k.entity, k.key))
        if row is None:
            row = joined[k.entity, k.key] = _RUN_KEYED[k.entity].alias(f"order_{len(joined)}")
            source = source.outerjoin(row, and_(row.c.run_uuid == runs.c.run_uuid, row.c.key == k.key))
        if k.entity == "metric":
            # Numbers, then NaN, then runs without the metric, in both directions.
            ordering.append(case((row.c.run_uuid.is_(None), 2), (row.c.is_nan, 1), else_=0))
            ordering.append(ordered(row.c.value, k.ascending, nulls_last=False))
        else:
            ordering.append(ordered(row.c.value, k.ascending, nulls_last=True))
    attributes = {k.key for k in keys if k.entity == "attribute"}
    if "start_time" not in attributes:
        ordering.append(runs.c.start_time.desc())
    if "run_id" not in attributes:
        ordering.append(runs.c.run_uuid.asc())
    return select(runs).select_from(source).where(*conditions).order_by(*ordering)


def _experiment_condition(c: Comparison):
    if c.entity == "attribute":
        return COMPARE[c.op](_EXPERIMENT_FILTER_ATTRIBUTES[c.key], c.value)
    tagged = select(experiment_tags.c.experiment_id).where(
        experiment_tags.c.key == c.key, COMPARE[c.op](experiment_tags.c.value, c.value)
    )
    return experiments.c.experiment_id.in_(tagged)


def experiment_search_select(filter_string: str, view_type: int, order_by: list[str], offset: int, limit: int) -> Select:
    """The experiments matching the search, in order, one page (OFFSET/LIMIT)."""
    conditions = _view_conditions(experiments.c.lifecycle_stage, view_type)
    conditions += [_experiment_condition(c) for c in parse_filter(filter_string, _EXPERIMENTS)]
    keys = parse_order_by(order_by, _EXPERIMENTS) or [OrderKey("attribute", "creation_time", ascending=False)]
    ordering = [ordered(_EXPERIMENTS.order_attributes[k.key], k.ascending, nulls_last=False) for k in keys]
    if "experiment_id" not in {k.key for k in keys}:
        ordering.append(experiments.c.experiment_id.asc())
    return select(experiments).where(*conditions).order_by(*ordering).offset(offset).limit(limit)
