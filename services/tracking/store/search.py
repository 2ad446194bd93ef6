"""MLflow's search grammar for runs and experiments, compiled to SQLAlchemy Core selects.

A filter is comparisons joined by AND, for example

    metrics.loss < 0.5 AND params.optimizer = 'adam' AND tags."my tag" LIKE 'a%'
    AND attributes.run_id IN ('a1', 'b2')

Keys after a prefix are bare (letters, digits, _ - . / :) or quoted with double
quotes or backticks. Strings take single or double quotes; a quote doubled
inside a string stands for itself. LIKE (case-sensitive) and ILIKE use % and _
as wildcards and backslash as the escape character, on every backend.

A run lacking a compared metric, param or tag never matches, also for != and
NOT IN (as in MLflow). The selects are dialect-neutral: the one difference
between SQLite and PostgreSQL, case-sensitive LIKE, is settled as they compile.
"""
import operator
import re
from dataclasses import dataclass

from sqlalchemy import Boolean, Column, Select, and_, case, false, func, literal, literal_column, select
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from mlgrid.v1 import tracking_pb2 as pb
from services.common.errors import InvalidArgument
from services.tracking.store.schema import (
    VALUE_INDEX_PREFIX,
    experiment_tags,
    experiments,
    latest_metrics,
    params,
    runs,
    tags,
)

# ---------------------------------------------------------------- tokens

_TOKEN = re.compile(
    r"""(?P<space>\s+)
      | (?P<number>[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)
      | (?P<word>[^\W\d][\w\-./:]*)
      | (?P<string>'(?:[^']|'')*'|"(?:[^"]|"")*")
      | (?P<backtick>`(?:[^`]|``)*`)
      | (?P<op>!=|<=|>=|=|<|>)
      | (?P<punct>[(),])""",
    re.VERBOSE,
)
_KEYWORDS = {"AND", "OR", "NOT", "IN", "LIKE", "ILIKE", "ASC", "DESC"}


@dataclass(frozen=True)
class _Token:
    kind: str  # number, word, string, backtick, op, punct or end
    text: str  # as written
    pos: int

    @property
    def keyword(self) -> str:
        return self.text.upper() if self.kind == "word" else ""

    @property
    def unquoted(self) -> str:
        quote = self.text[0]
        return self.text[1:-1].replace(quote * 2, quote)


# ---------------------------------------------------------------- parser

@dataclass(frozen=True)
class Comparison:
    entity: str  # "metric", "param", "tag" or "attribute"
    key: str  # the metric, param or tag key, or the attribute name
    op: str  # =, !=, <, <=, >, >=, LIKE, ILIKE, IN or NOT IN
    value: int | float | str | tuple[str, ...]


@dataclass(frozen=True)
class OrderKey:
    entity: str
    key: str
    ascending: bool


@dataclass(frozen=True)
class Grammar:
    subject: str  # "run" or "experiment", for messages
    prefixes: dict[str, str]  # prefix (lower case) -> entity
    filter_attributes: dict[str, Column]
    order_attributes: dict[str, Column]
    bare_filter_attributes: bool  # may filters name attributes without a prefix?
    order_entities: frozenset[str]
    string_ops: tuple[str, ...]
    keys_hint: str  # what a key looks like, for messages


_NUMERIC_OPS = ("=", "!=", "<", "<=", ">", ">=")
_ALL_OPS = "a comparison operator (=, !=, <, <=, >, >=, LIKE, ILIKE, IN, NOT IN)"
ATTRIBUTE_PREFIXES = {"attribute": "attribute", "attributes": "attribute", "attr": "attribute"}
TAG_PREFIXES = {"tag": "tag", "tags": "tag"}

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


def _is_numeric(column: Column) -> bool:
    return column.type.python_type in (int, float)


class _Parser:
    """Recursive descent over one filter or order_by clause; errors quote it and point at a position."""

    def __init__(self, what: str, text: str, grammar: Grammar):
        self.what, self.text, self.grammar = what, text, grammar
        self.tokens = self._tokenize()
        self.i = 0

    def fail(self, pos: int, problem: str, hint: str = "") -> InvalidArgument:
        return InvalidArgument(f"Invalid {self.what} {self.text!r}: {problem} at position {pos}" + (f"; {hint}" if hint else ""))

    def unexpected(self, token: _Token, expected: str) -> InvalidArgument:
        if token.kind == "end":
            return InvalidArgument(f"Invalid {self.what} {self.text!r}: unexpected end of {self.what}; expected {expected}")
        return self.fail(token.pos, f"unexpected token {token.text!r}", f"expected {expected}")

    def _tokenize(self) -> list[_Token]:
        tokens, pos = [], 0
        while pos < len(self.text):
            match = _TOKEN.match(self.text, pos)
            if match is None:
                problem = "unterminated quote" if self.text[pos] in "'\"`" else "unexpected character"
                raise self.fail(pos, f"{problem} {self.text[pos]!r}")
            if match.lastgroup != "space":
                tokens.append(_Token(match.lastgroup, match.group(), pos))
            pos = match.end()
        tokens.append(_Token("end", "", len(self.text)))
        return tokens

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def next(self) -> _Token:
        token = self.tokens[self.i]
        self.i = min(self.i + 1, len(self.tokens) - 1)
        return token

    # filter := comparison (AND comparison)*
    def filter(self) -> list[Comparison]:
        if self.peek().kind == "end":
            return []
        found = [self.comparison()]
        while (token := self.next()).kind != "end":
            if token.keyword == "OR":
                raise self.fail(token.pos, "OR is not supported", "search filters can only join comparisons with AND")
            if token.keyword != "AND":
                raise self.unexpected(token, "AND or the end of the filter")
            found.append(self.comparison())
        return found

    # comparison := operand operator (number | string | '(' string (',' string)* ')')
    def comparison(self) -> Comparison:
        entity, key, lhs = self.operand(self.grammar.bare_filter_attributes)
        column = self.grammar.filter_attributes.get(key) if entity == "attribute" else None
        numeric = entity == "metric" or (column is not None and _is_numeric(column))
        allowed = _NUMERIC_OPS if numeric else self.grammar.string_ops
        op_token = self.peek()
        op = self.operator()
        if op not in allowed:
            kind = "numeric" if numeric else "string"
            raise self.fail(op_token.pos, f"{op} does not apply to {kind} key {lhs}", f"use one of {', '.join(allowed)}")
        value_pos = self.peek().pos
        if op in ("IN", "NOT IN"):
            value = self.string_list(lhs)
        elif numeric:
            value = self.number(lhs, integer=column is not None)  # numeric attributes are integer milliseconds
        else:
            value = self.string(lhs)
            if op in ("LIKE", "ILIKE") and (len(value) - len(value.rstrip("\\"))) % 2:
                raise self.fail(value_pos, "the pattern ends with the escape character '\\'", "write '\\\\' for a backslash")
        return Comparison(entity, key, op, value)

    def operand(self, bare_attributes: bool) -> tuple[str, str, str]:
        """`prefix.key`, `prefix."quoted key"`, `prefix.`quoted key`` or a bare attribute: (entity, key, as written)."""
        token = self.next()
        if token.kind != "word" or token.keyword in _KEYWORDS:
            raise self.unexpected(token, self.grammar.keys_hint)
        prefix, dot, key = token.text.partition(".")
        end = token.pos + len(token.text)
        if dot and not key:
            quoted = self.next()
            if not (quoted.kind == "backtick" or (quoted.kind == "string" and quoted.text[0] == '"')):
                raise self.unexpected(quoted, f"a key after {token.text!r} (quote keys with double quotes or backticks)")
            key, end = quoted.unquoted, quoted.pos + len(quoted.text)
            if not key:
                raise self.fail(quoted.pos, "empty key")
        lhs = self.text[token.pos:end]
        g = self.grammar
        attributes = g.filter_attributes if self.what == "filter" else g.order_attributes
        if not dot:
            if bare_attributes and prefix in attributes:
                return "attribute", prefix, lhs
            hint = f"write attributes.{prefix}" if prefix in attributes else f"expected {g.keys_hint}"
            raise self.fail(token.pos, f"{prefix!r} has no prefix", hint)
        entity = g.prefixes.get(prefix.lower())
        if entity is None:
            raise self.fail(token.pos, f"unknown prefix {prefix!r}", f"expected {g.keys_hint}")
        if entity == "attribute" and key not in attributes:
            raise self.fail(token.pos, f"unknown {g.subject} attribute {key!r}", f"expected one of {', '.join(attributes)}")
        return entity, key, lhs

    def operator(self) -> str:
        token = self.next()
        if token.kind == "op":
            return token.text
        if token.keyword in ("LIKE", "ILIKE", "IN"):
            return token.keyword
        if token.keyword == "NOT" and self.peek().keyword == "IN":
            self.next()
            return "NOT IN"
        if token.kind == "word" and token.keyword not in _KEYWORDS:
            raise self.unexpected(token, f"{_ALL_OPS} (quote keys that contain spaces: metrics.\"my key\")")
        raise self.unexpected(token, _ALL_OPS)

    def number(self, lhs: str, integer: bool) -> int | float:
        token = self.next()
        if token.kind != "number":
            raise self.unexpected(token, f"a number ({lhs} is numeric)")
        value = int(token.text) if re.fullmatch(r"[+-]?\d+", token.text) else float(token.text)
        if not integer:
            return float(value)
        if isinstance(value, float) and not value.is_integer():
            raise self.fail(token.pos, f"{lhs} is in whole milliseconds, got {token.text}")
        return int(value)

    def string(self, lhs: str) -> str:
        token = self.next()
        if token.kind != "string":
            raise self.unexpected(token, f"a quoted string ({lhs} is a string)")
        return token.unquoted

    def string_list(self, lhs: str) -> tuple[str, ...]:
        token = self.next()
        if token.text != "(" or token.kind != "punct":
            raise self.unexpected(token, "a parenthesised list of quoted strings, e.g. ('a', 'b')")
        values = [self.string(lhs)]
        while (token := self.next()).kind == "punct" and token.text == ",":
            values.append(self.string(lhs))
        if token.kind != "punct" or token.text != ")":
            raise self.unexpected(token, "',' or ')'")
        return tuple(values)

    # order_key := operand [ASC | DESC]
    def order_key(self) -> OrderKey:
        entity, key, lhs = self.operand(bare_attributes=True)
        if entity not in self.grammar.order_entities:
            raise self.fail(self.tokens[0].pos, f"cannot order {self.grammar.subject}s by {lhs}",
                            f"order by one of {', '.join(self.grammar.order_attributes)}")
        token = self.next()
        ascending = token.keyword != "DESC"
        if token.keyword in ("ASC", "DESC"):
            token = self.next()
        if token.kind != "end":
            raise self.unexpected(token, "ASC, DESC or the end of the order_by clause")
        return OrderKey(entity, key, ascending)


def parse_filter(filter_string: str, grammar: Grammar) -> list[Comparison]:
    return _Parser("filter", filter_string, grammar).filter()


def parse_order_by(order_by: list[str], grammar: Grammar) -> list[OrderKey]:
    return [_Parser("order_by", clause, grammar).order_key() for clause in order_by]


# ---------------------------------------------------------------- SQL

class _CaseSensitiveLike(FunctionElement):
    """`column LIKE pattern ESCAPE '\\'`. SQLite's LIKE ignores ASCII case, so
    there it compiles to GLOB with the pattern translated (args: column, like pattern, glob pattern)."""

    type = Boolean()
    inherit_cache = True
    _is_implicitly_boolean = True  # a predicate: SQLite gets no "= 1" appended


@compiles(_CaseSensitiveLike)
def _compile_like(element, compiler, **kw):
    column, pattern, _ = element.clauses
    return compiler.process(column.like(pattern, escape="\\"), **kw)


@compiles(_CaseSensitiveLike, "sqlite")
def _compile_like_sqlite(element, compiler, **kw):
    column, _, glob = element.clauses
    return compiler.process(column.op("GLOB")(glob), **kw)


def _like_to_glob(pattern: str) -> str:
    """The GLOB pattern matching what LIKE `pattern` (escape '\\') matches, case-sensitively."""
    out, chars = [], iter(pattern)
    for char in chars:
        if char == "%":
            out.append("*")
        elif char == "_":
            out.append("?")
        else:
            if char == "\\":
                char = next(chars)
            out.append(f"[{char}]" if char in "*?[" else char)
    return "".join(out)


COMPARE = {
    "=": operator.eq, "!=": operator.ne, "<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
    "LIKE": lambda column, pattern: _CaseSensitiveLike(column, literal(pattern), literal(_like_to_glob(pattern))),
    "ILIKE": lambda column, pattern: column.ilike(pattern, escape="\\"),
    "IN": lambda column, values: column.in_(values),
    "NOT IN": lambda column, values: column.not_in(values),
}

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


def ordered(column, ascending: bool, nulls_last: bool):
    """`column` ASC or DESC, with NULLs last when asked (the grammar shared by runs, experiments and the registry)."""
    by = column.asc() if ascending else column.desc()
    return by.nulls_last() if nulls_last else by


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
    experiment_ids: list[int] | None, filter_string: str, view_type: int, order_by: list[str]
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
) -> list:
    """Rows offset..offset+limit of the search, walking its phases in order."""
    rows, skip = [], offset
    for phase in run_search_phases(experiment_ids, filter_string, view_type, order_by):
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
