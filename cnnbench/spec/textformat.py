"""A small reader of protobuf's text format (what Caffe's .prototxt files are written in).

Data only: the text is tokenised and parsed into :class:`Message` objects, never evaluated, and no
protobuf schema or library is needed. Errors are :class:`~cnnbench.spec.layers.SpecError` one-liners that
name the source and the line.
"""

from __future__ import annotations

import re
from typing import Any

from cnnbench.spec.layers import SpecError

__all__ = ["Ident", "Message", "parse_prototxt"]


class Ident(str):
    """An unquoted word in the text format: an enum value (MAX, CONVOLUTION), true, false, inf."""


class Message:
    """One message: its fields in file order, as (name, value, line); a value is a scalar or a Message."""

    def __init__(self, line: int):
        self.line = line
        self.fields: list[tuple[str, Any, int]] = []

    def all(self, key: str) -> list[Any]:
        return [value for name, value, _ in self.fields if name == key]

    def get(self, key: str, default: Any = None) -> Any:
        values = self.all(key)
        return values[-1] if values else default  # protobuf: the last value of a singular field wins

    def line_of(self, key: str) -> int:
        return next((line for name, _, line in reversed(self.fields) if name == key), self.line)


_TOKEN_RE = re.compile(r"""
    (?P<space>[ \t\r\f\v]+) | (?P<newline>\n) | (?P<comment>\#[^\n]*)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<number>[-+]?(?:0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?[fF]?)(?![A-Za-z0-9_.]))
  | (?P<ident>-?[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>[{}<>:\[\],;])
""", re.VERBOSE)
_ESCAPE_RE = re.compile(r"\\(x[0-9a-fA-F]{1,2}|[0-7]{1,3}|.)")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "f": "\f", "v": "\v", "?": "?"}


def _unescape(body: str) -> str:
    def one(match: re.Match) -> str:
        code = match.group(1)
        if code[0] == "x":
            return chr(int(code[1:], 16))
        if code[0] in "01234567":
            return chr(int(code, 8))
        return _ESCAPES.get(code, code)
    return _ESCAPE_RE.sub(one, body)


def _tokens(text: str, source: str) -> list[tuple[str, Any, int]]:
    tokens, line, pos = [], 1, 0
    while pos < len(text):
        match = _TOKEN_RE.match(text, pos)
        if not match:
            what = "an unterminated string" if text[pos] in "\"'" else f"unexpected character {text[pos]!r}"
            raise SpecError(f"{source}: line {line}: invalid prototxt: {what}")
        kind, value = match.lastgroup, match.group()
        if kind == "newline":
            line += 1
        elif kind == "string":
            tokens.append(("string", _unescape(value[1:-1]), line))
        elif kind == "number":
            digits = value.rstrip("fF") if not value.lower().lstrip("+-").startswith("0x") else value
            if re.match(r"^[-+]?0[xX]", digits):
                number: Any = int(digits, 16)
            elif re.search(r"[.eE]", digits):
                number = float(digits)
            else:
                number = int(digits)
            tokens.append(("number", number, line))
        elif kind in ("ident", "punct"):
            tokens.append((kind, value, line))
        pos = match.end()
    tokens.append(("end", "end of file", line))
    return tokens


#: Caffe's definitions nest three deep (layer, *_param, filler); far deeper is no network.
MAX_DEPTH = 64


class _Parser:
    def __init__(self, text: str, source: str):
        self.source, self.tokens, self.pos = source, _tokens(text, source), 0
        self.depth = 0

    def fail(self, expected: str) -> SpecError:
        kind, value, line = self.tokens[self.pos]
        found = {"end": "the end of the file", "string": f"the string {value!r}"}.get(kind, repr(value))
        return SpecError(f"{self.source}: line {line}: invalid prototxt: expected {expected}, found {found}")

    def peek(self, value: str) -> bool:
        kind, token, _ = self.tokens[self.pos]
        return kind == "punct" and token == value

    def take(self, value: str) -> bool:
        if self.peek(value):
            self.pos += 1
            return True
        return False

    def message(self, close: str | None, line: int) -> Message:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise SpecError(f"{self.source}: line {line}: invalid prototxt: messages nested deeper than {MAX_DEPTH}")
        try:
            return self._fields(close, line)
        finally:
            self.depth -= 1

    def _fields(self, close: str | None, line: int) -> Message:
        message = Message(line)
        while True:
            kind, name, line = self.tokens[self.pos]
            if close is None and kind == "end":
                return message
            if close is not None and self.take(close):
                return message
            if kind != "ident" or name.startswith("-"):
                expected = "a field name" + (f" or '{close}'" if close else "")
                raise self.fail(expected)
            self.pos += 1
            if self.take(":"):
                if self.peek("["):
                    self.pos += 1
                    while not self.take("]"):
                        message.fields.append((name, self.value(), line))
                        if not self.take(","):
                            if not self.peek("]"):
                                raise self.fail("',' or ']'")
                else:
                    message.fields.append((name, self.value(), line))
            elif self.peek("{") or self.peek("<"):
                message.fields.append((name, self.value(), line))
            else:
                raise self.fail(f"':' or '{{' after '{name}'")
            self.take(",") or self.take(";")

    def value(self) -> Any:
        kind, value, line = self.tokens[self.pos]
        if self.take("{"):
            return self.message("}", line)
        if self.take("<"):
            return self.message(">", line)
        if kind == "string":
            parts = []
            while self.tokens[self.pos][0] == "string":  # adjacent strings are concatenated
                parts.append(self.tokens[self.pos][1])
                self.pos += 1
            return "".join(parts)
        if kind == "number":
            self.pos += 1
            return value
        if kind == "ident":
            self.pos += 1
            special = {"inf": float("inf"), "-inf": float("-inf"), "nan": float("nan"), "-nan": float("nan")}
            return special.get(value.lower(), Ident(value))
        raise self.fail("a value")


def parse_prototxt(text: str, source: str = "<string>") -> Message:
    """The top-level message of a protobuf text-format file; errors name the source and the line."""
    return _Parser(text, source).message(None, 1)
