"""The expression grammar of `where:` and of the short value predicates (`"> 57"`).

Text is tokenised and parsed by a recursive-descent parser into a small typed AST, which is compiled once
into nested plain closures. Nothing is ever handed to `eval`/`exec`/`compile`, no Python attribute is
looked up by name, and only these names exist: `value`, `unit`, `site`, `kind`, `sensor`, `tags.<name>`.

Runtime semantics are total: a comparison of mismatched types is false, arithmetic on non-numbers or a
division by zero is undefined (and any comparison with undefined is false), `and`/`or`/`not` treat
anything but `true` as false. An expression therefore never raises while events flow.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from reflexes.errors import ExpressionError

MAX_EXPRESSION_CHARS = 1024
MAX_DEPTH = 32
MAX_NUMBER_CHARS = 32
MAX_STRING_CHARS = 256

NAMES = ("value", "unit", "site", "kind", "sensor")
COMPARISONS = ("==", "!=", "<=", ">=", "<", ">")


class EventLike(Protocol):
    """What an expression may read from an event."""

    @property
    def value(self) -> Any: ...
    @property
    def unit(self) -> str | None: ...
    @property
    def site(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def sensor(self) -> str: ...
    @property
    def tags(self) -> Any: ...


Scalar = bool | float | str | None
Evaluator = Callable[[EventLike], Any]
Predicate = Callable[[EventLike], bool]


class _Undefined:
    __slots__ = ()

    def __repr__(self) -> str:
        return "undefined"


UNDEFINED: Any = _Undefined()


# ---------------------------------------------------------------- tokens
@dataclass(frozen=True)
class Token:
    kind: str  # num, str, name, op, lparen, rparen, dot, end
    text: str
    column: int


_TOKEN = re.compile(
    r"""(?P<ws>\s+)
      | (?P<num>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|\.\d+)
      | (?P<str>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
      | (?P<name>[A-Za-z_][A-Za-z0-9_\-]*)
      | (?P<op>==|!=|<=|>=|<|>|\+|-|\*|/|%)
      | (?P<lparen>\()
      | (?P<rparen>\))
      | (?P<dot>\.)
    """,
    re.VERBOSE,
)


def tokenize(text: str) -> list[Token]:
    """The tokens of `text`; raises ExpressionError on any character the grammar does not know."""
    if len(text) > MAX_EXPRESSION_CHARS:
        raise ExpressionError(f"expression is {len(text)} characters, the limit is {MAX_EXPRESSION_CHARS}")
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            ch = text[pos]
            what = {"[": "indexing", "]": "indexing", ",": "calls and lists", "=": "assignment"}.get(ch)
            hint = f": {what} is not part of the language" if what else ""
            raise ExpressionError(f"unexpected character {ch!r}{hint}", pos + 1)
        kind = m.lastgroup
        assert kind is not None
        if kind != "ws":
            tokens.append(Token(kind, m.group(), pos + 1))
        pos = m.end()
    tokens.append(Token("end", "", len(text) + 1))
    return tokens


# ---------------------------------------------------------------- AST
@dataclass(frozen=True)
class Literal:
    value: Scalar


@dataclass(frozen=True)
class Name:
    name: str  # one of NAMES


@dataclass(frozen=True)
class Tag:
    name: str


@dataclass(frozen=True)
class Unary:
    op: str  # "-" or "not"
    operand: Node


@dataclass(frozen=True)
class Binary:
    op: str  # arithmetic, comparison, "and", "or"
    left: Node
    right: Node


Node = Literal | Name | Tag | Unary | Binary


# ---------------------------------------------------------------- parser
class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.pos = 0
        self.depth = 0

    @property
    def tok(self) -> Token:
        return self.tokens[self.pos]

    def take(self) -> Token:
        t = self.tokens[self.pos]
        self.pos += 1
        return t

    def enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExpressionError(f"expression nests deeper than {MAX_DEPTH} levels", self.tok.column)

    def parse(self) -> Node:
        node = self.or_()
        if self.tok.kind != "end":
            raise ExpressionError(f"unexpected {self.tok.text!r}", self.tok.column)
        return node

    def or_(self) -> Node:
        node = self.and_()
        while self.tok.kind == "name" and self.tok.text == "or":
            self.take()
            node = Binary("or", node, self.and_())
        return node

    def and_(self) -> Node:
        node = self.not_()
        while self.tok.kind == "name" and self.tok.text == "and":
            self.take()
            node = Binary("and", node, self.not_())
        return node

    def not_(self) -> Node:
        if self.tok.kind == "name" and self.tok.text == "not":
            self.take()
            self.enter()
            node = Unary("not", self.not_())
            self.depth -= 1
            return node
        return self.comparison()

    def comparison(self) -> Node:
        node = self.sum_()
        if self.tok.kind == "op" and self.tok.text in COMPARISONS:
            op = self.take().text
            node = Binary(op, node, self.sum_())
            if self.tok.kind == "op" and self.tok.text in COMPARISONS:
                raise ExpressionError(
                    "chained comparisons are not allowed: join them with 'and'", self.tok.column
                )
        return node

    def sum_(self) -> Node:
        node = self.product()
        while self.tok.kind == "op" and self.tok.text in "+-":
            op = self.take().text
            node = Binary(op, node, self.product())
        return node

    def product(self) -> Node:
        node = self.unary()
        while self.tok.kind == "op" and self.tok.text in ("*", "/", "%"):
            op = self.take().text
            node = Binary(op, node, self.unary())
        return node

    def unary(self) -> Node:
        if self.tok.kind == "op" and self.tok.text == "-":
            self.take()
            self.enter()
            node = Unary("-", self.unary())
            self.depth -= 1
            return node
        return self.atom()

    def atom(self) -> Node:
        t = self.take()
        if t.kind == "num":
            return Literal(parse_number(t.text, t.column))
        if t.kind == "str":
            return Literal(parse_string(t.text, t.column))
        if t.kind == "lparen":
            self.enter()
            node = self.or_()
            self.depth -= 1
            if self.tok.kind != "rparen":
                raise ExpressionError("missing ')'", self.tok.column)
            self.take()
            return node
        if t.kind == "name":
            return self.name(t)
        if t.kind == "end":
            raise ExpressionError("expression ends too early", t.column)
        raise ExpressionError(f"unexpected {t.text!r}", t.column)

    def name(self, t: Token) -> Node:
        if t.text in ("true", "false"):
            return Literal(t.text == "true")
        if self.tok.kind == "lparen":
            raise ExpressionError(f"calls are not allowed ('{t.text}(…)')", t.column)
        if t.text == "tags":
            if self.tok.kind != "dot":
                raise ExpressionError("'tags' must be followed by '.<name>'", self.tok.column)
            self.take()
            tag = self.take()
            if tag.kind != "name" or tag.text.startswith("__"):
                raise ExpressionError("expected a tag name after 'tags.'", tag.column)
            if self.tok.kind == "dot":
                raise ExpressionError("attributes are not allowed beyond 'tags.<name>'", self.tok.column)
            return Tag(tag.text)
        if t.text not in NAMES:
            from reflexes.errors import did_you_mean

            known = ", ".join((*NAMES, "tags.<name>"))
            raise ExpressionError(
                f"unknown name '{t.text}'{did_you_mean(t.text, NAMES)} (names are {known})", t.column
            )
        if self.tok.kind == "dot":
            raise ExpressionError(f"attributes are not allowed ('{t.text}.…')", self.tok.column)
        return Name(t.text)


def parse_number(text: str, column: int | None = None) -> float:
    """A numeric literal as a float; every number in the language is a float, so none can grow without bound."""
    if len(text) > MAX_NUMBER_CHARS:
        raise ExpressionError(f"number literal longer than {MAX_NUMBER_CHARS} characters", column)
    value = float(text)
    if not math.isfinite(value):
        raise ExpressionError(f"number literal {text} is out of range", column)
    return value


_ESCAPES = {"\\": "\\", "'": "'", '"': '"', "n": "\n", "t": "\t"}


def parse_string(text: str, column: int | None = None) -> str:
    """A quoted string literal without its quotes, with \\\\, \\', \\", \\n and \\t escapes."""
    body = text[1:-1]
    if len(body) > MAX_STRING_CHARS:
        raise ExpressionError(f"string literal longer than {MAX_STRING_CHARS} characters", column)
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\":
            nxt = body[i + 1] if i + 1 < len(body) else ""
            if nxt not in _ESCAPES:
                raise ExpressionError(f"unknown escape '\\{nxt}' in string", column)
            out.append(_ESCAPES[nxt])
            i += 2
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def parse(text: str) -> Node:
    """Parse a `where:` expression into its AST; raises ExpressionError."""
    if not isinstance(text, str):
        raise ExpressionError("an expression must be a string")
    return _Parser(text).parse()


def parse_literal(text: str) -> Scalar:
    """One literal as written in a short predicate: a number, `true`/`false` or a quoted string."""
    tokens = tokenize(text)
    if len(tokens) == 3 and tokens[0].kind == "op" and tokens[0].text == "-" and tokens[1].kind == "num":
        return -parse_number(tokens[1].text, tokens[1].column)
    if len(tokens) != 2:
        raise ExpressionError(f"expected one literal, got {text!r}")
    t = tokens[0]
    if t.kind == "num":
        return parse_number(t.text, t.column)
    if t.kind == "str":
        return parse_string(t.text, t.column)
    if t.kind == "name" and t.text in ("true", "false"):
        return t.text == "true"
    raise ExpressionError(f"expected a number, true/false or a quoted string, got {t.text!r}", t.column)


# ---------------------------------------------------------------- semantics shared by both forms
def is_number(x: object) -> bool:
    """True for ints and floats, never for bools."""
    return type(x) is float or type(x) is int


def equal(a: object, b: object) -> bool:
    """Type-aware equality: `true` is not `1`, numbers compare as numbers."""
    if is_number(a) and is_number(b):
        return a == b
    if type(a) is not type(b) or a is UNDEFINED:
        return False
    return a == b


_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def compare(op: str) -> Callable[[object, object], bool]:
    """The total comparison function for `op`: false on mismatched or undefined operands."""
    if op == "==":
        return equal
    if op == "!=":
        return lambda a, b: a is not UNDEFINED and b is not UNDEFINED and not equal(a, b)
    order = _ORDER[op]

    def ordered(a: object, b: object) -> bool:
        if is_number(a) and is_number(b):
            return bool(order(a, b))
        if type(a) is str and type(b) is str:
            return bool(order(a, b))
        return False

    return ordered


def _arith(op: str) -> Callable[[object, object], object]:
    def apply(a: Any, b: Any) -> object:
        if not (is_number(a) and is_number(b)):
            return UNDEFINED
        if op in "/%" and b == 0:
            return UNDEFINED
        r = {
            "+": operator.add,
            "-": operator.sub,
            "*": operator.mul,
            "/": operator.truediv,
            "%": operator.mod,
        }[op](float(a), float(b))
        return r if math.isfinite(r) else UNDEFINED

    return apply


# ---------------------------------------------------------------- compiler
def compile_node(node: Node) -> Evaluator:
    """Compile an AST node into a closure over an event."""
    if isinstance(node, Literal):
        const = node.value
        return lambda ev: const
    if isinstance(node, Name):
        return _NAME_READERS[node.name]
    if isinstance(node, Tag):
        tag = node.name
        return lambda ev: ev.tags.get(tag) if tag in ev.tags else None
    if isinstance(node, Unary):
        inner = compile_node(node.operand)
        if node.op == "not":
            return lambda ev: inner(ev) is not True
        return lambda ev: -v if is_number(v := inner(ev)) else UNDEFINED
    left, right = compile_node(node.left), compile_node(node.right)
    if node.op == "and":
        return lambda ev: left(ev) is True and right(ev) is True
    if node.op == "or":
        return lambda ev: left(ev) is True or right(ev) is True
    if node.op in COMPARISONS:
        cmp = compare(node.op)
        return lambda ev: cmp(left(ev), right(ev))
    arith = _arith(node.op)
    return lambda ev: arith(left(ev), right(ev))


_NAME_READERS: dict[str, Evaluator] = {
    "value": lambda ev: ev.value,
    "unit": lambda ev: ev.unit,
    "site": lambda ev: ev.site,
    "kind": lambda ev: ev.kind,
    "sensor": lambda ev: ev.sensor,
}


def compile_where(text: str) -> Predicate:
    """A `where:` expression as a predicate over events; raises ExpressionError at load, never at run."""
    evaluator = compile_node(parse(text))
    return lambda ev: evaluator(ev) is True


_SHORT = re.compile(r"^\s*(==|!=|<=|>=|<|>)\s*(.+?)\s*$", re.DOTALL)


def compile_short(text: str) -> tuple[str, Scalar, Callable[[object], bool]]:
    """A short predicate such as `"> 57"` or `"== 'open'"`: (operator, literal, test on a value)."""
    if len(text) > MAX_EXPRESSION_CHARS:
        raise ExpressionError(f"predicate is {len(text)} characters, the limit is {MAX_EXPRESSION_CHARS}")
    m = _SHORT.match(text)
    if m is None:
        raise ExpressionError(
            f"'{text}' is not a predicate: write an operator (==, !=, <, <=, >, >=) and a literal, e.g. '> 57'"
        )
    op, literal = m.group(1), parse_literal(m.group(2))
    if op in _ORDER and not (is_number(literal) or isinstance(literal, str)):
        raise ExpressionError(f"'{op}' needs a number or a string, got {literal!r}")
    cmp = compare(op)
    if op in _ORDER and is_number(literal):
        order = _ORDER[op]
        bound = literal
        return op, literal, lambda v: (type(v) is float or type(v) is int) and bool(order(v, bound))
    return op, literal, lambda v: cmp(v, literal)
