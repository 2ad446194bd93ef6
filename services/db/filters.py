"""MLflow's filter and order_by grammar, shared by every search (runs, experiments, logged models,
registered models and versions): the tokenizer, the parser into comparisons and order keys, and the
SQL comparison operators. Each search names its keys and columns in a `Grammar`.

A filter is comparisons joined by AND, for example

    metrics.loss < 0.5 AND params.optimizer = 'adam' AND tags."my tag" LIKE 'a%'
    AND attributes.run_id IN ('a1', 'b2')

Keys after a prefix are bare (letters, digits, _ - . / :) or quoted with double
quotes or backticks. Strings take single or double quotes; a quote doubled
inside a string stands for itself. LIKE (case-sensitive) and ILIKE use % and _
as wildcards and backslash as the escape character, on every backend: SQLite's
case-insensitive LIKE is settled as the selects compile.
"""
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Boolean, Column, ColumnElement, literal
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from services.common.errors import InvalidArgument

# Narrows a search to the rows the caller may read, given the column of their experiment id or model name
# (services.identity builds it for the caller; None: every row).
Visible = Callable[[ColumnElement], ColumnElement]

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

def ordered(column, ascending: bool, nulls_last: bool):
    """`column` ASC or DESC, with NULLs last when asked (the grammar shared by runs, experiments and the registry)."""
    by = column.asc() if ascending else column.desc()
    return by.nulls_last() if nulls_last else by
