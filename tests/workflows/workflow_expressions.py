"""A small evaluator of GitHub Actions `if:` expressions, enough for the conditions our workflows
write: context paths, string/number/boolean/null literals, `==`, `!=`, `!`, `&&`, `||` and
parentheses, with GitHub's rules for them (string comparison ignores case; values of different
types are compared as numbers, so an unset `vars.X` equals ''; `&&`/`||` return an operand).
A call (`always()`, `hashFiles(...)`) is refused rather than guessed.

It lets a test ask "does this job run for a pull request from a fork?" of the YAML itself.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

_TOKEN = re.compile(
    r"\s*(?:(?P<op>&&|\|\||==|!=|!|\(|\))|(?P<string>'(?:[^']|'')*')"
    r"|(?P<number>-?\d+(?:\.\d+)?)|(?P<name>[A-Za-z_][A-Za-z0-9_.-]*))"
)


class ExpressionError(ValueError):
    """The expression uses something this evaluator does not implement."""


def evaluate(expression: str, context: Mapping[str, Any]) -> Any:
    """The value of `expression` (with or without `${{ }}`) given the contexts in `context`."""
    text = expression.strip()
    if text.startswith("${{") and text.endswith("}}"):
        text = text[3:-2]
    tokens = _tokenize(text)
    parser = _Parser(tokens, context)
    value = parser.either()
    if parser.position != len(tokens):
        raise ExpressionError(f"unexpected {tokens[parser.position]!r} in {expression!r}")
    return value


def truthy(value: Any) -> bool:
    """GitHub's truthiness: null, false, 0, NaN and '' are false."""
    if value is None or value is False or value == "":
        return False
    return not (isinstance(value, int | float) and (value == 0 or math.isnan(value)))


def runs(condition: str | None, context: Mapping[str, Any]) -> bool:
    """Whether a job or step with this `if:` runs (no `if:` means it runs)."""
    return True if condition is None else truthy(evaluate(condition, context))


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    while position < len(text.rstrip()):
        match = _TOKEN.match(text, position)
        if not match or match.end() == position:
            raise ExpressionError(f"cannot read {text[position:]!r}")
        kind = match.lastgroup
        assert kind is not None
        tokens.append((kind, match.group(kind)))
        position = match.end()
    return tokens


def _number(value: Any) -> float:
    if value is None:
        return 0.0
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        if not value.strip():
            return 0.0
        try:
            return float(value)
        except ValueError:
            return math.nan
    return math.nan


def _equal(left: Any, right: Any) -> bool:
    if isinstance(left, str) and isinstance(right, str):
        return left.casefold() == right.casefold()
    if type(left) is type(right) and not isinstance(left, str):
        return left == right
    return _number(left) == _number(right)


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]], context: Mapping[str, Any]) -> None:
        self.tokens = tokens
        self.context = context
        self.position = 0

    def _peek(self) -> tuple[str, str] | None:
        return self.tokens[self.position] if self.position < len(self.tokens) else None

    def _take(self, op: str) -> bool:
        if self._peek() == ("op", op):
            self.position += 1
            return True
        return False

    def either(self) -> Any:
        value = self.both()
        while self._take("||"):
            right = self.both()
            value = value if truthy(value) else right
        return value

    def both(self) -> Any:
        value = self.comparison()
        while self._take("&&"):
            right = self.comparison()
            value = right if truthy(value) else value
        return value

    def comparison(self) -> Any:
        value = self.unary()
        while True:
            if self._take("=="):
                value = _equal(value, self.unary())
            elif self._take("!="):
                value = not _equal(value, self.unary())
            else:
                return value

    def unary(self) -> Any:
        if self._take("!"):
            return not truthy(self.unary())
        return self.primary()

    def primary(self) -> Any:
        token = self._peek()
        if token is None:
            raise ExpressionError("the expression ends too early")
        self.position += 1
        kind, text = token
        if (kind, text) == ("op", "("):
            value = self.either()
            if not self._take(")"):
                raise ExpressionError("a parenthesis is not closed")
            return value
        if kind == "string":
            return text[1:-1].replace("''", "'")
        if kind == "number":
            return float(text)
        if kind == "name":
            if self._peek() == ("op", "("):
                raise ExpressionError(f"function {text}() is not implemented here")
            literals = {"true": True, "false": False, "null": None}
            if text in literals:
                return literals[text]
            return self._lookup(text)
        raise ExpressionError(f"unexpected {text!r}")

    def _lookup(self, path: str) -> Any:
        value: Any = self.context
        for part in path.split("."):
            if not isinstance(value, Mapping):
                return None
            value = value.get(part)
        return value
