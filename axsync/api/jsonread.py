"""A strict, path-tracking reader for JSON replies: decoding, typed field access, and
error messages that name the endpoint and the field (``GET /api/v1/mails: items[3].size:
expected an integer, got string``). Used by :mod:`axsync.api.wire`; raises nothing but
:class:`MalformedReply`."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import NoReturn

from axsync.errors import MalformedReply

_MAX_PREVIEW = 200
_INTEGER = re.compile(r"-?[0-9]{1,19}")


def fail(where: str, path: str, problem: str) -> NoReturn:
    """Raise MalformedReply for ``path`` (a field path such as ``items[3].size``)."""
    raise MalformedReply(f"{where}: {path}: {problem}", endpoint=where, field=path)


def kind(value: object) -> str:
    """The JSON type name of a decoded value, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _reject_constant(name: str) -> object:
    raise ValueError(f"{name} is not valid JSON")


def decode_json(body: bytes, where: str) -> object:
    """Decode a JSON reply body (UTF-8 only, as the API promises). Invalid UTF-8, invalid
    JSON (an HTML error page, a truncated body), ``NaN``/``Infinity`` or absurd nesting all
    raise :class:`MalformedReply`."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MalformedReply(f"{where}: reply is not valid UTF-8", endpoint=where) from exc
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        return json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        preview = text[:80].replace("\n", " ")
        raise MalformedReply(
            f"{where}: reply is not JSON ({exc.__class__.__name__}): {preview!r}", endpoint=where
        ) from exc


def error_text(body: bytes) -> str:
    """A short human-readable reason from an error reply body, whatever its shape
    (JSON ``{"error": {"message"}}``, ``{"message"}``, ``{"error": "..."}``, HTML, text or
    nothing). Never raises; used only for messages, never for decisions."""
    text = body[:4096].decode("utf-8", errors="replace").strip()
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        data = None
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, dict):
            for key in ("message", "description", "code"):
                if isinstance(err.get(key), str) and err[key]:
                    return str(err[key])[:_MAX_PREVIEW]
        elif isinstance(err, str) and err:
            return err[:_MAX_PREVIEW]
    if text.startswith("<"):
        return "(HTML page)"
    return text.splitlines()[0][:_MAX_PREVIEW] if text else ""


class Obj:
    """A JSON object being read, with the endpoint and path used in error messages."""

    __slots__ = ("data", "path", "where")

    def __init__(self, value: object, where: str, path: str = "reply") -> None:
        if not isinstance(value, dict):
            fail(where, path, f"expected an object, got {kind(value)}")
        self.data: dict[str, object] = value
        self.where = where
        self.path = path

    def _at(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path != "reply" else key

    def _bad(self, key: str, expected: str) -> NoReturn:
        fail(self.where, self._at(key), f"expected {expected}, got {kind(self.data[key])}")

    def has(self, key: str) -> bool:
        return self.data.get(key) is not None

    def _need(self, key: str) -> object:
        value = self.data.get(key)
        if value is None:
            fail(self.where, self._at(key), "required field is missing")
        return value

    def req_str(self, key: str, *, nonempty: bool = True) -> str:
        value = self._need(key)
        if not isinstance(value, str):
            self._bad(key, "a string")
        if nonempty and not value:
            fail(self.where, self._at(key), "must not be empty")
        return value

    def opt_str(self, key: str, default: str = "") -> str:
        return self.req_str(key, nonempty=False) if self.has(key) else default

    def _int(self, key: str, value: object, numeric_str: bool) -> int:
        if isinstance(value, bool):
            self._bad(key, "an integer")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            return int(value)
        if numeric_str and isinstance(value, str) and _INTEGER.fullmatch(value.strip()):
            return int(value.strip())
        self._bad(key, "an integer" + (" or a numeric string" if numeric_str else ""))

    def req_int(self, key: str, *, numeric_str: bool = False, minimum: int | None = 0) -> int:
        out = self._int(key, self._need(key), numeric_str)
        if minimum is not None and out < minimum:
            fail(self.where, self._at(key), f"must be >= {minimum}, got {out}")
        return out

    def opt_int(self, key: str, default: int = 0, *, numeric_str: bool = False) -> int:
        return self.req_int(key, numeric_str=numeric_str) if self.has(key) else default

    def opt_float(self, key: str, default: float = 0.0) -> float:
        if not self.has(key):
            return default
        value = self.data[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            self._bad(key, "a number")
        if not math.isfinite(value):
            self._bad(key, "a finite number")
        return float(value)

    def opt_bool(self, key: str, default: bool) -> bool:
        if not self.has(key):
            return default
        value = self.data[key]
        if not isinstance(value, bool):
            self._bad(key, "a boolean")
        return value

    def req_list(self, key: str) -> list[object]:
        value = self._need(key)
        if not isinstance(value, list):
            self._bad(key, "an array")
        return value

    def opt_list(self, key: str) -> list[object]:
        return self.req_list(key) if self.has(key) else []

    def objects(self, key: str, *, required: bool = False) -> Iterator[Obj]:
        items = self.req_list(key) if required else self.opt_list(key)
        for i, item in enumerate(items):
            yield Obj(item, self.where, f"{self._at(key)}[{i}]")

    def str_tuple(self, key: str) -> tuple[str, ...]:
        out: list[str] = []
        for i, item in enumerate(self.opt_list(key)):
            if not isinstance(item, str):
                fail(self.where, f"{self._at(key)}[{i}]", f"expected a string, got {kind(item)}")
            out.append(item)
        return tuple(out)

    def date(self, key: str) -> int:
        """A server date as Unix seconds: ``"1744407421"``, ``1744407421`` or ISO-8601."""
        value = self._need(key)
        if isinstance(value, str) and not _INTEGER.fullmatch(value.strip()):
            try:
                when = datetime.fromisoformat(value.strip())
                if when.tzinfo is None:
                    when = when.replace(tzinfo=UTC)
                return int(when.timestamp())
            except (ValueError, OverflowError):
                self._bad(key, "Unix seconds or an ISO-8601 date")
        return self._int(key, value, numeric_str=True)
