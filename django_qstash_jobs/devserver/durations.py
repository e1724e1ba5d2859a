"""Durations, Retry-After values, backoff and ``Upstash-Retry-Delay`` expressions."""

from __future__ import annotations

import ast
import math
import re
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime

from .defaults import MAX_BACKOFF_SECONDS

_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}
_NUMBER = r"\d+(?:\.\d+)?"
_DURATION = re.compile(rf"(?:{_NUMBER}(?:ms|s|m|h|d))+")
_GO_DURATION = re.compile(rf"(?:{_NUMBER}(?:ns|us|µs|ms|s|m|h))+")
_PART = re.compile(rf"({_NUMBER})(ns|us|µs|ms|s|m|h|d)")
# A hundred years: beyond that a value is a typo, and floats would lose precision anyway.
_MAX_DURATION_SECONDS = 100 * 365 * 86400.0


def _sum_parts(text: str) -> float:
    return sum(float(num) * _UNIT_SECONDS[unit] for num, unit in _PART.findall(text))


def parse_duration(value: str) -> float:
    """Parse ``50s``, ``1d10h30m`` or a bare number of seconds; raise ValueError if invalid."""
    text = value.strip().lower()
    if re.fullmatch(_NUMBER, text):
        seconds = float(text)
    elif _DURATION.fullmatch(text):
        seconds = _sum_parts(text)
    else:
        raise ValueError(f"invalid duration: {value!r}")
    if seconds > _MAX_DURATION_SECONDS:
        raise ValueError(f"duration too long: {value!r}")
    return seconds


def parse_retry_after(value: str, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After``-family value, or None when unusable.

    Accepts integer seconds, an HTTP date or a Go-style duration. Values beyond the one-day
    backoff cap are ignored, as Upstash does, so that the default backoff applies.
    """
    text = value.strip()
    if not text:
        return None
    seconds: float | None
    if re.fullmatch(_NUMBER, text):
        seconds = float(text)
    elif _GO_DURATION.fullmatch(text):
        seconds = _sum_parts(text)
    else:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = max(0.0, when.timestamp() - (time.time() if now is None else now))
    if seconds > MAX_BACKOFF_SECONDS:
        return None
    return seconds


def default_backoff(retry_number: int) -> float:
    """Upstash's exponential backoff in seconds before retry ``retry_number`` (1 = first)."""
    exponent = 2.5 * max(1, retry_number)
    if exponent > math.log(MAX_BACKOFF_SECONDS):
        return MAX_BACKOFF_SECONDS
    return min(MAX_BACKOFF_SECONDS, math.exp(exponent))


def _round(x: float, ndigits: float = 0) -> float:
    return float(round(x, int(ndigits)))


_FUNCTIONS: dict[str, Callable[..., float]] = {
    "pow": math.pow,
    "sqrt": math.sqrt,
    "abs": abs,
    "exp": math.exp,
    "floor": lambda x: float(math.floor(x)),
    "ceil": lambda x: float(math.ceil(x)),
    "round": _round,
    "min": min,
    "max": max,
}
_BINARY: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
    ast.FloorDiv: lambda a, b: float(a // b),
    ast.Mod: lambda a, b: a % b,
    ast.Pow: math.pow,
}
_MAX_EXPRESSION_LENGTH = 500
_MAX_NODES = 200


class RetryDelayExpression:
    """A parsed ``Upstash-Retry-Delay`` expression: arithmetic over ``retried``, in ms.

    Only numbers, ``retried``, + - * / % ** and the documented functions are accepted; the
    expression is walked from its syntax tree, never handed to ``eval``.
    """

    def __init__(self, source: str) -> None:
        self.source = source
        if len(source) > _MAX_EXPRESSION_LENGTH:
            raise ValueError("retry delay expression is too long")
        try:
            tree = ast.parse(source.strip(), mode="eval")
        except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
            raise ValueError(f"invalid retry delay expression: {source!r}") from exc
        nodes = list(ast.walk(tree))
        if len(nodes) > _MAX_NODES:
            raise ValueError("retry delay expression is too complex")
        for node in nodes:
            self._check(node)
        self._tree = tree.body

    @staticmethod
    def _check(node: ast.AST) -> None:
        allowed = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Call, ast.Load)
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
                raise ValueError("only numbers are allowed in a retry delay expression")
        elif isinstance(node, ast.Name):
            if node.id != "retried" and node.id not in _FUNCTIONS:
                raise ValueError(f"unknown name in retry delay expression: {node.id}")
        elif isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS:
                raise ValueError("unknown function in retry delay expression")
            if node.keywords or not node.args:
                raise ValueError("invalid function call in retry delay expression")
        elif isinstance(node, ast.BinOp):
            if type(node.op) not in _BINARY:
                raise ValueError("unsupported operator in retry delay expression")
        elif isinstance(node, ast.UnaryOp):
            if not isinstance(node.op, (ast.UAdd, ast.USub)):
                raise ValueError("unsupported operator in retry delay expression")
        elif not isinstance(node, allowed) and not isinstance(node, (ast.operator, ast.unaryop)):
            raise ValueError("unsupported syntax in retry delay expression")

    def evaluate(self, retried: int) -> float:
        """Return the delay in milliseconds; raise ValueError when it cannot be computed."""
        try:
            value = self._eval(self._tree, float(retried))
        except (ArithmeticError, ValueError, TypeError, RecursionError) as exc:
            raise ValueError(f"cannot evaluate retry delay expression: {exc}") from exc
        if math.isnan(value):
            raise ValueError("retry delay expression is not a number")
        return min(max(value, 0.0), MAX_BACKOFF_SECONDS * 1000)

    def _eval(self, node: ast.expr, retried: float) -> float:
        if isinstance(node, ast.Constant):
            if not isinstance(node.value, (int, float)):
                raise ValueError("only numbers are allowed in a retry delay expression")
            return float(node.value)
        if isinstance(node, ast.Name):
            if node.id == "retried":
                return retried
            raise ValueError(f"{node.id} is a function")
        if isinstance(node, ast.UnaryOp):
            operand = self._eval(node.operand, retried)
            return -operand if isinstance(node.op, ast.USub) else operand
        if isinstance(node, ast.BinOp):
            left = self._eval(node.left, retried)
            right = self._eval(node.right, retried)
            return float(_BINARY[type(node.op)](left, right))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            args = [self._eval(arg, retried) for arg in node.args]
            return float(_FUNCTIONS[node.func.id](*args))
        raise ValueError("unsupported syntax in retry delay expression")
