"""Reading requests: capped bodies, typed JSON fields, credentials. Every refusal is a
MarketError whose message names the problem."""

from __future__ import annotations

import base64
import binascii
import functools
import json
import math
from dataclasses import dataclass
from typing import Any, TypeVar

from starlette.requests import ClientDisconnect, Request

from cpushare import protocol
from cpushare.limits import JobLimits, default_wall_seconds
from market.agreement import ResultIn
from market.errors import MarketError, TooLarge, Unauthorized
from market.hosts import HOST_PREFIX

T = TypeVar("T")


@dataclass(frozen=True)
class Credentials:
    """What the Authorization header carries: an account key, an order's id and secret (to
    enroll), or a host's id and secret (every seller request after enrolling)."""

    api_key: str | None = None
    order_id: str | None = None
    host_id: str | None = None
    secret: str | None = None


# Authorization headers parsed, remembered (a seller sends the same one with every request).
PARSED_HEADERS = 4096
# Longer headers are parsed every time: the memory they would hold is not worth it.
PARSED_HEADER_CHARS = 512


def credentials(request: Request) -> Credentials:
    header = request.headers.get("authorization", "")
    if len(header) > PARSED_HEADER_CHARS:
        return _parse_credentials(header)
    return _remembered_credentials(header)


def _parse_credentials(header: str) -> Credentials:
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value:
        return Credentials(api_key=value.strip())
    if scheme.lower() == "basic" and value:
        try:
            pair = base64.b64decode(value, validate=True).decode()
        except ValueError:  # binascii.Error, non-ASCII, or not UTF-8
            raise Unauthorized("the Basic credentials are not base64 of ORDER:SECRET") from None
        user, colon, secret = pair.partition(":")
        if colon and user.startswith(HOST_PREFIX):
            return Credentials(host_id=user, secret=secret)
        if colon:
            return Credentials(order_id=user, secret=secret)
    raise Unauthorized(
        "missing credentials: send `Authorization: Bearer API_KEY` (accounts), "
        "HTTP Basic ORDER_ID:SECRET (enrolling) or HOST_ID:HOST_SECRET (sellers)"
    )


# A refusal is raised again each time, not remembered.
_remembered_credentials = functools.lru_cache(maxsize=PARSED_HEADERS)(_parse_credentials)


async def read_body(request: Request, cap: int) -> bytes:
    """The request body, refused with 413 as soon as it passes `cap` bytes (read from
    `receive` itself: Starlette's stream() is an async generator, and most bodies come
    in one message)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > cap:
        raise TooLarge(f"the request body is larger than {cap} bytes")
    receive = request.receive
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise ClientDisconnect()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > cap:
            raise TooLarge(f"the request body is larger than {cap} bytes")
        if chunk:
            chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def read_json(request: Request, cap: int) -> dict[str, Any]:
    """The request body as a JSON object."""
    body = await read_body(request, cap)
    if not body:
        return {}
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        raise MarketError("the request body is not valid JSON") from None
    if not isinstance(doc, dict):
        raise MarketError("the request body must be a JSON object")
    return doc


async def read_document(request: Request, cap: int) -> tuple[dict[str, Any], memoryview | None]:
    """The request body as a JSON object and, when it is a protocol.BLOBS body, the bytes
    after its document (None for JSON)."""
    if protocol.media_type(request.headers.get("content-type", "")) != protocol.BLOBS:
        return await read_json(request, cap), None
    try:
        head, tail = protocol.split_blobs(await read_body(request, cap))
        doc = json.loads(head)
    except (ValueError, RecursionError):
        raise MarketError("the request body is not a JSON document and its bytes") from None
    if not isinstance(doc, dict):
        raise MarketError("the request body must be a JSON object")
    return doc, tail


def blob_outputs(items: list[Any], tail: memoryview) -> list[bytes | None]:
    """Each result's output in the bytes after a protocol.BLOBS document, by its
    `output_size`, in order (None for an item that is not an object: refused later);
    MarketError unless the sizes take exactly those bytes."""
    blobs = protocol.Blobs(tail)
    try:
        outputs = [
            blobs.take(item.get("output_size"), "field 'output_size'")
            if type(item) is dict
            else None
            for item in items
        ]
        blobs.check_used("the results' output sizes")
    except ValueError as exc:
        raise MarketError(str(exc)) from None
    return outputs


def field(doc: dict[str, Any], name: str, kind: type[T], default: T | None = None) -> T:
    """doc[name] checked to be of `kind` (an int is accepted where a float is wanted)."""
    value = doc.get(name, default)
    # Nearly always: exactly the type asked for (a bool is not an int here, nor an int a bool).
    if type(value) is kind and (kind is not float or math.isfinite(value)):  # type: ignore[arg-type]
        return value
    if value is None:
        raise MarketError(f"field {name!r} is missing")
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise MarketError(f"field {name!r} must be {_kind_name(kind)}")
    if isinstance(value, float) and not math.isfinite(value):
        raise MarketError(f"field {name!r} must be a finite number")
    return value


def bounded_int(doc: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = field(doc, name, int, default)
    if not low <= value <= high:
        raise MarketError(f"field {name!r} must be between {low} and {high}")
    return value


def optional_int(doc: dict[str, Any], name: str) -> int | None:
    value = doc.get(name)
    if value is not None and (
        not isinstance(value, int)
        or isinstance(value, bool)
        or not _INT32_MIN <= value <= _INT32_MAX
    ):
        raise MarketError(f"field {name!r} must be a 32-bit integer or null")
    return value


def base64_field(value: object, name: str) -> bytes:
    if not isinstance(value, str):
        raise MarketError(f"field {name!r} must be a base64 string")
    try:
        # As base64.b64decode(value, validate=True), without its Python.
        return binascii.a2b_base64(value, strict_mode=True)
    except ValueError:  # binascii.Error, or non-ASCII text
        raise MarketError(f"field {name!r} is not valid base64") from None


def path_int(request: Request, name: str) -> int:
    raw = request.path_params[name]
    if not raw.isdigit() or len(raw) > 18:
        raise MarketError(f"{name} {raw!r} must be a positive integer")
    return int(raw)


def query_int(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise MarketError(f"query parameter {name} must be an integer from {low} to {high}")
    return int(raw)


def parse_limits(doc: dict[str, Any]) -> JobLimits:
    """A job batch's limits; those not given take their defaults."""
    unknown = set(doc) - set(JobLimits.names())
    if unknown:
        raise MarketError(f"unknown limits: {', '.join(sorted(unknown))}")
    default = JobLimits()
    cpu_seconds = field(doc, "cpu_seconds", int, default.cpu_seconds)
    return JobLimits(
        cpu_seconds=cpu_seconds,
        wall_seconds=field(doc, "wall_seconds", float, default_wall_seconds(cpu_seconds)),
        memory_bytes=field(doc, "memory_bytes", int, default.memory_bytes),
        output_bytes=field(doc, "output_bytes", int, default.output_bytes),
    )


def parse_result(doc: dict[str, Any], raw: bytes | None = None) -> ResultIn:
    """A seller's result document; `raw`: its output, when it came after a
    protocol.BLOBS document (the document then has no `output`)."""
    # Nearly always: every field there, of exactly its type (one test each, not a call of
    # field() each: a result is the market's most frequent document, several a request).
    outcome = doc.get("outcome")
    exit_status = doc.get("exit_status")
    output = doc.get("output")
    if raw is not None:
        if output is not None:
            raise MarketError("a result's output is in its document and after it")
        output = ""  # the fast path's type test; `raw` is the output
    cpu_seconds = doc.get("cpu_seconds")
    wall_seconds = doc.get("wall_seconds")
    detail = doc.get("detail", "")
    if (
        type(outcome) is str
        and outcome in _OUTCOMES
        and (
            exit_status is None
            or (type(exit_status) is int and _INT32_MIN <= exit_status <= _INT32_MAX)
        )
        and type(output) is str
        and type(cpu_seconds) is float
        and type(wall_seconds) is float
        and type(detail) is str
        and math.isfinite(cpu_seconds + wall_seconds)
    ):
        data = base64_field(output, "output") if raw is None else raw
        return ResultIn(outcome, exit_status, data, cpu_seconds, wall_seconds, detail)
    outcome = field(doc, "outcome", str)
    if outcome not in protocol.OUTCOMES:
        raise MarketError(f"field 'outcome' must be one of {', '.join(sorted(protocol.OUTCOMES))}")
    return ResultIn(
        outcome=outcome,
        exit_status=optional_int(doc, "exit_status"),
        output=base64_field(doc.get("output"), "output") if raw is None else raw,
        cpu_seconds=field(doc, "cpu_seconds", float),
        wall_seconds=field(doc, "wall_seconds", float),
        detail=field(doc, "detail", str, ""),
    )


_OUTCOMES = frozenset(protocol.OUTCOMES)
_INT32_MIN, _INT32_MAX = -(2**31), 2**31 - 1


def _kind_name(kind: type) -> str:
    return {int: "an integer", float: "a number", str: "a string", list: "a list"}.get(
        kind, kind.__name__
    )
