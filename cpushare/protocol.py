"""The wire contract between market and seller: the lease, result and recorded documents.

Each document's fields (names, types, sizes) are declared once here. The market builds
its replies with the builders, the seller checks them with the parsers (every reply is
hostile until checked: BadReply names what is wrong), and the market's OpenAPI document
takes its schemas of these documents from `schemas()`. The inputs and outputs of leases
and results may follow their documents raw instead of in them in base64 (BLOBS).
"""

from __future__ import annotations

import base64
import json
import json.encoder
import math
import re
import sys

from cpushare.jail.model import JobResult, Outcome
from cpushare.limits import BOUNDS, MAX_INPUT_BYTES, MAX_PROGRAM_BYTES, JobLimits
from cpushare.record import record
from cpushare.replies import BadReply, Refused, Unreachable

SHA256_HEX = re.compile(r"[0-9a-f]{64}")
# A str as json.dumps writes it (ensure_ascii: its C encoder).
_json_string = json.encoder.encode_basestring_ascii
MAX_ID = 2**62
MAX_LEASE_SECONDS = 86400
# A host's seats, for the market and its sellers alike: a batch holds at most one lease
# or result per seat.
MAX_SEATS = 256
VERDICTS = ("pending", "accepted", "rejected")
OUTCOMES = tuple(o.value for o in Outcome)
# The longest base64 text of an input of MAX_INPUT_BYTES.
MAX_INPUT_CHARS = (MAX_INPUT_BYTES + 2) // 3 * 4
# The media type of a document whose bytes (a lease's input, a result's output) follow it
# raw instead of inside it in base64 (see `split_blobs`): asked for by a seller's Accept
# header, and sent by it once its market answered so; JSON stays the default both ways.
BLOBS = "application/x-cpushare-blobs"


@record(frozen=True)
class Field:
    """One field of a document: its JSON type and, for numbers, its closed range."""

    name: str
    kind: str  # a JSON schema type: integer, number, string, boolean, object
    low: int | None = None
    high: int | None = None
    required: bool = True
    extra: tuple[tuple[str, Any], ...] = ()

    def schema(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"type": self.kind}
        if self.low is not None:
            doc["minimum"] = self.low
        if self.high is not None:
            doc["maximum"] = self.high
        doc.update(self.extra)
        return doc


LIMITS = tuple(
    Field(
        name, "number" if name == "wall_seconds" else "integer", BOUNDS[name].low, BOUNDS[name].high
    )
    for name in JobLimits.names()
)
# JobLimits.as_dict()'s keys, looked up once (it asks the dataclass for its fields each time).
_LIMIT_NAMES = tuple(f.name for f in LIMITS)
PROGRAM = (
    Field("sha256", "string", extra=(("pattern", "^[0-9a-f]{64}$"),)),
    Field("size", "integer", 1, MAX_PROGRAM_BYTES),
    Field("url", "string"),
)
LEASE = (
    Field("lease", "integer", 1, MAX_ID),
    Field("job", "integer", 1, MAX_ID),
    Field("program", "object"),
    Field("input", "string", extra=(("contentEncoding", "base64"), ("maxLength", MAX_INPUT_CHARS))),
    Field("limits", "object"),
    Field(
        "lease_seconds",
        "number",
        1,
        MAX_LEASE_SECONDS,
        extra=(("description", "extend the lease well within this"),),
    ),
    Field(
        "seat",
        "integer",
        0,
        MAX_SEATS - 1,
        required=False,
        extra=(("description", "the host's seat that holds this lease"),),
    ),
)
RESULT = (
    Field("outcome", "string", extra=(("enum", list(OUTCOMES)),)),
    Field("exit_status", "integer", -(2**31), 2**31 - 1, required=False),
    Field("output", "string", extra=(("contentEncoding", "base64"),)),
    Field("cpu_seconds", "number"),
    Field("wall_seconds", "number"),
    Field("detail", "string", required=False),
)
RECORDED = (
    Field("result", "integer"),
    Field("verdict", "string", extra=(("enum", list(VERDICTS)),)),
    Field(
        "coins",
        "number",
        extra=(("description", "CPUCoins credited for this result so far"),),
    ),
    Field(
        "duplicate",
        "boolean",
        extra=(("description", "true when this lease's result was already stored"),),
    ),
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing
if TYPE_CHECKING:
    from typing import Any


def _object(fields: tuple[Field, ...], **properties: dict[str, Any]) -> dict[str, Any]:
    props = {f.name: properties.get(f.name, f.schema()) for f in fields}
    return {
        "type": "object",
        "required": [f.name for f in fields if f.required],
        "properties": props,
    }


def schemas() -> dict[str, dict[str, Any]]:
    """JSON schemas of the documents, for the market's OpenAPI document."""
    result = _object(RESULT)
    # A seller whose job produced no exit status sends null.
    result["properties"]["exit_status"]["type"] = ["integer", "null"]
    lease_batch: dict[str, Any] = {
        "type": "object",
        "required": ["seats"],
        "properties": {
            "seats": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_SEATS,
                "uniqueItems": True,
                "items": {"type": "integer", "minimum": 0, "maximum": MAX_SEATS - 1},
                "description": "the host's free seats: one lease at most for each, the "
                "seat's previous active lease handed back",
            },
            "wait": {"type": "number", "minimum": 0, "default": 0},
            "max_memory_bytes": {"type": "integer", "minimum": 0},
            "max_cpu_seconds": {"type": "integer", "minimum": 0},
            "max_output_bytes": {"type": "integer", "minimum": 0},
        },
    }
    return {
        "Limits": {
            "type": "object",
            "additionalProperties": False,
            "properties": _object(LIMITS)["properties"],
        },
        "FullLimits": _object(LIMITS),
        "Lease": _object(
            LEASE,
            program=_object(PROGRAM),
            limits={"$ref": "#/components/schemas/FullLimits"},
        ),
        "Result": result,
        "Recorded": _object(RECORDED),
        "LeaseBatchRequest": lease_batch,
        "NextLeases": {
            "type": "object",
            "required": ["seats"],
            "description": "leases asked for beside a batch of results, granted once the "
            "results are written, without waiting: a seat whose result in the batch was "
            "not acknowledged keeps its lease and gets none",
            "properties": {k: v for k, v in lease_batch["properties"].items() if k != "wait"},
        },
        "Leases": {
            "type": "object",
            "required": ["leases"],
            "properties": {
                "leases": {"type": "array", "items": {"$ref": "#/components/schemas/Lease"}}
            },
        },
        "ResultBatch": {
            "type": "object",
            "required": ["results"],
            "properties": {
                "results": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": MAX_SEATS,
                    "items": _with_lease(result),
                },
                "next": {"$ref": "#/components/schemas/NextLeases"},
            },
        },
        "RecordedBatch": {
            "type": "object",
            "required": ["results"],
            "properties": {
                "results": {"type": "array", "items": _batch_answer()},
                "next": {
                    "description": "present when `next` was asked: the leases granted, or "
                    "the lease request's own error (the results' answers stand)",
                    "oneOf": [
                        {"$ref": "#/components/schemas/Leases"},
                        {
                            "type": "object",
                            "required": ["status", "error"],
                            "properties": {
                                "status": {"type": "integer", "minimum": 400, "maximum": 599},
                                "error": {"type": "string"},
                            },
                        },
                    ],
                },
            },
        },
    }


def _with_lease(schema: dict[str, Any]) -> dict[str, Any]:
    """`schema` with the lease it is about."""
    lease = {"lease": {"type": "integer", "minimum": 1, "maximum": MAX_ID}}
    return {
        "type": "object",
        "required": ["lease", *schema["required"]],
        "properties": {**lease, **schema["properties"]},
    }


def _batch_answer() -> dict[str, Any]:
    """One item of a batch of results' answer: the lease, its HTTP status as the single
    endpoint would have answered, and that endpoint's reply (or its error)."""
    answer = _with_lease(_object(RECORDED))
    answer["required"] = ["lease", "status"]
    answer["properties"]["status"] = {"type": "integer", "minimum": 200, "maximum": 599}
    answer["properties"]["error"] = {"type": "string"}
    return answer


def lease_document(
    lease: int,
    job: int,
    program_sha256: str,
    program_size: int,
    data: bytes,
    limits: JobLimits,
    lease_seconds: float,
    seat: int,
) -> dict[str, Any]:
    """The market's reply to a lease request that got a job (one item of a batch's)."""
    return {
        "lease": lease,
        "job": job,
        "program": {
            "sha256": program_sha256,
            "size": program_size,
            "url": f"/v1/programs/{program_sha256}",
        },
        "input": base64.b64encode(data).decode(),
        "limits": {name: getattr(limits, name) for name in _LIMIT_NAMES},
        "lease_seconds": lease_seconds,
        "seat": seat,
    }


@record(frozen=True)
class LeaseOffer:
    """A leased job, checked."""

    lease: int
    job: int
    program_sha256: str
    program_size: int
    input: bytes
    cpu_seconds: int
    wall_seconds: float
    memory_bytes: int
    output_bytes: int
    lease_seconds: float
    seat: int | None = None  # absent from an older market's single lease

    @property
    def limits(self) -> JobLimits:
        return JobLimits(self.cpu_seconds, self.wall_seconds, self.memory_bytes, self.output_bytes)


def _value(doc: dict[str, Any], spec: Field) -> Any:
    value: Any = doc.get(spec.name)
    # The common case first, a JSON integer or finite number in range (a lease's dozen
    # numbers, every job): the checks below would say the same.
    kind = type(value)
    plain = (kind is int and spec.kind in ("integer", "number")) or (
        kind is float and spec.kind == "number" and math.isfinite(value)
    )
    if (
        plain
        and (spec.low is None or spec.low <= value)
        and (spec.high is None or value <= spec.high)
    ):
        return float(value) if spec.kind == "number" else value
    # NaN would slip through every range check below.
    number = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if spec.kind == "integer" and (not number or not isinstance(value, int)):
        raise BadReply(f"the lease's {spec.name} is not an integer: {value!r:.40}")
    if spec.kind == "number" and not number:
        raise BadReply(f"the lease's {spec.name} is not a number: {value!r:.40}")
    if spec.kind == "object" and not isinstance(value, dict):
        raise BadReply(f"the lease's {spec.name} is not an object")
    if spec.kind == "string" and not isinstance(value, str):
        raise BadReply(f"the lease's {spec.name} is not a string")
    if (spec.low is not None and value < spec.low) or (spec.high is not None and value > spec.high):
        raise BadReply(
            f"the lease's {spec.name} is not from {spec.low} to {spec.high}: {value!r:.40}"
        )
    return float(value) if spec.kind == "number" else value


# The widest finite floats: bounds for the fast path of a number without bounds of its
# own (infinities and NaN fail every comparison with them, and go the slow way).
_FINITE = (-sys.float_info.max, sys.float_info.max)
# The exact types of a kind's common values (JSON's: no bool, no subclass).
_PLAIN_TYPES: dict[str, tuple[type, ...]] = {
    "integer": (int,),
    "number": (int, float),
    "string": (str,),
    "object": (dict,),
}
if TYPE_CHECKING:
    # A field as `_values` checks it (see `_checks`).
    _Check = tuple[str, tuple[type, ...], Any, Any, bool, Field]


def _checks(fields: tuple[Field, ...]) -> tuple[_Check, ...]:
    """`fields` as `_values` checks them: each field's name, the exact types of its common
    values, their bounds (None: unbounded), whether it is a number (returned as a float),
    and the field itself (for the slow way)."""
    checks = []
    for spec in fields:
        low: Any = spec.low
        high: Any = spec.high
        if spec.kind == "number":
            low = _FINITE[0] if low is None else low
            high = _FINITE[1] if high is None else high
        elif spec.kind == "integer" and (low is None or high is None):
            low = -(2**1024) if low is None else low
            high = 2**1024 if high is None else high
        number = spec.kind == "number"
        checks.append((spec.name, _PLAIN_TYPES.get(spec.kind, ()), low, high, number, spec))
    return tuple(checks)


def _values(doc: dict[str, Any], checks: tuple[_Check, ...]) -> dict[str, Any]:
    """The fields of `doc` that `checks` (`_checks`) name, each checked as `_value` does:
    a value of an exact JSON type within its bounds is taken at once (every lease's dozen
    fields, every job: a seller under emulation pays for each step of Python), anything
    else goes through `_value`, which accepts or refuses it."""
    found: dict[str, Any] = {}
    for name, types, low, high, number, spec in checks:
        value: Any = doc.get(name)
        if type(value) in types and (low is None or low <= value <= high):
            found[name] = float(value) if number else value
        else:
            found[name] = _value(doc, spec)
    return found


_LEASE_CHECKS = _checks(tuple(f for f in LEASE if f.required))
_BLOB_LEASE_CHECKS = _checks(tuple(f for f in LEASE if f.required and f.name != "input"))
# The seller fetches a program by its sha256 alone: the url is for other clients.
_PROGRAM_CHECKS = _checks(tuple(f for f in PROGRAM if f.name != "url"))
_LIMITS_CHECKS = _checks(LIMITS)


def split_blobs(body: bytes) -> tuple[bytes, memoryview]:
    """A BLOBS body's JSON document (one line) and the bytes after it: the raw inputs or
    outputs its items name by size (`input_size`, `output_size`), one after another in the
    document's order. Base64 costs a seller under emulation tens of microseconds a job
    each way, and JSON's scan of the text as much again; a third more bytes through TLS."""
    end = body.find(b"\n")
    if end < 0:
        raise ValueError("a blobs body has no line ending its document")
    return body[:end], memoryview(body)[end + 1 :]


def blobs_body(head: list[bytes], blobs: list[bytes]) -> list[bytes]:
    """A BLOBS body in pieces: the document `head` (its pieces, no newline in them), its
    line end, the blobs."""
    return [*head, b"\n", *blobs]


def media_type(content_type: str) -> str:
    """The media type a Content-Type header names, without its parameters, in lower case
    (to compare with BLOBS or application/json)."""
    return content_type.partition(";")[0].strip().lower()


class Blobs:
    """The bytes after a BLOBS document, taken in order by the sizes its items name, for
    the seller (a reply's lease inputs) and the market (a post's result outputs) alike.
    Sizes that do not fit raise ValueError with the message; each side raises it again as
    its own error (BadReply, the market's refusal)."""

    def __init__(self, data: memoryview) -> None:
        self.data = data
        self.at = 0

    def take(self, size: object, what: str) -> bytes:
        """The next `size` bytes; `what` names the size in the message."""
        if type(size) is not int or not 0 <= size <= len(self.data) - self.at:
            raise ValueError(f"{what} is not a size of the bytes that follow")
        start, self.at = self.at, self.at + size
        return self.data[start : self.at].tobytes()

    def check_used(self, what: str) -> None:
        """ValueError unless every byte was taken; `what` names the sizes in the message."""
        if self.at != len(self.data):
            raise ValueError(f"{what} do not add up to the bytes that follow")


def parse_lease(doc: dict[str, Any], blobs: Blobs | None = None) -> LeaseOffer:
    """A LeaseOffer from the lease reply, or BadReply naming what is wrong. With `blobs`
    (a BLOBS reply), the input is its next `input_size` bytes, not base64 in the lease."""
    if blobs is not None:
        if "input" in doc:
            raise BadReply("the lease has an input in its document and in its bytes")
        try:
            data = blobs.take(doc.get("input_size"), "the lease's input size")
        except ValueError as exc:
            raise BadReply(str(exc)) from None
        return _offer(doc, data)
    return _offer(doc, None)


def _offer(doc: dict[str, Any], data: bytes | None) -> LeaseOffer:
    top = _values(doc, _LEASE_CHECKS if data is None else _BLOB_LEASE_CHECKS)
    seat = None if doc.get("seat") is None else _value(doc, LEASE[-1])
    # The sha256 names a file in the program cache: checked first, whatever else is wrong.
    sha256 = top["program"].get("sha256")
    if not isinstance(sha256, str) or not SHA256_HEX.fullmatch(sha256):
        raise BadReply("the lease's program sha256 is not 64 hex digits")
    program = _values(top["program"], _PROGRAM_CHECKS)
    limits = _values(top["limits"], _LIMITS_CHECKS)
    if data is None:
        encoded = top["input"]
        if len(encoded) > MAX_INPUT_CHARS:
            raise BadReply("the lease's input is not a base64 string of a bounded size")
        try:
            data = base64.b64decode(encoded, validate=True)
        except ValueError:  # binascii.Error, or non-ASCII text
            raise BadReply("the lease's input is not valid base64") from None
    elif len(data) > MAX_INPUT_BYTES:
        raise BadReply(f"the lease's input is larger than {MAX_INPUT_BYTES} bytes")
    return LeaseOffer(
        lease=top["lease"],
        job=top["job"],
        program_sha256=program["sha256"],
        program_size=program["size"],
        input=data,
        lease_seconds=top["lease_seconds"],
        seat=seat,
        **limits,
    )


def parse_leases(
    doc: dict[str, Any] | None, seats: list[int], blobs: Blobs | None = None
) -> list[LeaseOffer]:
    """The LeaseOffers of a batch lease reply (None: 204, no job) for the seats asked
    for: each on one of them, none twice; BadReply otherwise. `blobs`: the bytes after a
    BLOBS reply's document, the leases' inputs in their order (every one used)."""
    if doc is None:
        return []
    items = doc.get("leases")
    if not isinstance(items, list) or len(items) > len(seats):
        raise BadReply("the batch lease reply is not a list of at most one lease per seat")
    offers = [parse_lease(item if isinstance(item, dict) else {}, blobs) for item in items]
    if blobs is not None:
        try:
            blobs.check_used("the leases' input sizes")
        except ValueError as exc:
            raise BadReply(str(exc)) from None
    held = [offer.seat for offer in offers]
    if any(seat not in seats for seat in held) or len(set(held)) != len(held):
        raise BadReply(f"the batch lease reply's seats {held} are not distinct seats of {seats}")
    return offers


def result_document(result: JobResult, *, output: bool = True) -> dict[str, Any]:
    """The seller's post of a job's result (without its output, if so)."""
    doc: dict[str, Any] = {
        "outcome": result.outcome.value,
        "exit_status": result.exit_status,
        "cpu_seconds": result.cpu_seconds,
        "wall_seconds": result.wall_seconds,
        "detail": result.detail,
    }
    if output:
        doc["output"] = base64.b64encode(result.output).decode()
    return doc


@record(frozen=True)
class Recorded:
    """The market's answer to a posted result."""

    verdict: str
    coins: float


def recorded_document(
    result: int, verdict: str, millicoins: int, duplicate: bool
) -> dict[str, Any]:
    """The market's reply to a posted result."""
    return {
        "result": result,
        "verdict": verdict,
        "coins": millicoins / 1000,
        "duplicate": duplicate,
    }


def _result_head(lease: int, result: JobResult) -> bytes:
    """`lease` and `result_document(result, output=False)` as a JSON object without its
    closing brace, as json.dumps writes them: formatted directly, every job's result (a
    seller under emulation pays for each step of Python), unless a number is not a plain
    finite one (then by json.dumps itself)."""
    cpu, wall, status = result.cpu_seconds, result.wall_seconds, result.exit_status
    if (
        type(lease) is int
        and type(cpu) is float
        and type(wall) is float
        and math.isfinite(cpu)
        and math.isfinite(wall)
        and (status is None or type(status) is int)
    ):
        return (
            f'{{"lease": {lease}, "outcome": {_json_string(result.outcome.value)}, '
            f'"exit_status": {"null" if status is None else status}, '
            f'"cpu_seconds": {cpu!r}, "wall_seconds": {wall!r}, '
            f'"detail": {_json_string(result.detail)}'
        ).encode()
    doc = {"lease": lease, **result_document(result, output=False)}
    return json.dumps(doc).encode()[:-1]


def results_body(
    results: list[tuple[int, JobResult]],
    ahead: dict[str, Any] | None = None,
    *,
    blobs: bool = False,
) -> list[bytes]:
    """The seller's post of several leases' results at once, as JSON in pieces: each
    output's base64 text is sent as it is, not copied again into one JSON string and its
    bytes (a job's output in flight costs its seller once, plus its base64 text). `ahead`:
    the lease request (seats and bounds) for the next jobs, in the same request (`next`).
    `blobs`: a BLOBS body, each output's size in the document and its bytes after it."""
    parts = [b'{"results": [']
    for i, (lease, result) in enumerate(results):
        parts += [b", " if i else b"", _result_head(lease, result)]
        if blobs:
            parts.append(b', "output_size": %d}' % len(result.output))
        else:
            parts += [b', "output": "', base64.b64encode(result.output), b'"}']
    parts.append(b"]}" if ahead is None else b'], "next": ' + json.dumps(ahead).encode() + b"}")
    if blobs:
        return blobs_body(parts, [result.output for _, result in results])
    return parts


def parse_next(
    doc: dict[str, Any] | None, seats: list[int], blobs: Blobs | None = None
) -> list[LeaseOffer] | Refused | Unreachable | None:
    """The leases a batch result reply grants for its `next` request on `seats` (those
    whose results were acknowledged, and the free ones), the market's error for that
    request alone (Refused: final; Unreachable: try again), or None: a market that does
    not lease beside results (it ignored `next`; the seats are still free). `blobs`: the
    bytes after a BLOBS reply's document, the leases' inputs."""
    answer = (doc or {}).get("next")
    if answer is None:
        return None
    if not isinstance(answer, dict):
        raise BadReply("the batch result reply's next is not an object")
    if "leases" not in answer:
        status = answer.get("status")
        message = f"next leases: {str(answer.get('error'))[:300]}"
        if isinstance(status, int) and 400 <= status < 500 and status != 429:
            return Refused(status, message)
        return Unreachable(f"HTTP {status!r:.5}: {message}")
    return parse_leases(answer, seats, blobs)


def parse_recorded_batch(
    doc: dict[str, Any] | None, leases: list[int]
) -> dict[int, Recorded | Refused | Unreachable]:
    """Each posted lease's answer in a batch reply: Recorded, or the market's error for it
    as its single post would have raised it (Refused: final; Unreachable: try again)."""
    items = (doc or {}).get("results")
    if not isinstance(items, list) or len(items) != len(leases):
        raise BadReply("the batch result reply does not answer each posted result once")
    answers: dict[int, Recorded | Refused | Unreachable] = {}
    for item in items:
        lease = item.get("lease") if isinstance(item, dict) else None
        if lease not in leases or lease in answers:
            raise BadReply(f"the batch result reply answers lease {lease!r:.20} unasked or twice")
        assert isinstance(item, dict) and isinstance(lease, int)
        status = item.get("status")
        if status == 200:
            answers[lease] = parse_recorded(item)
            continue
        message = f"lease {lease}: {str(item.get('error'))[:300]}"
        if isinstance(status, int) and 400 <= status < 500 and status != 429:
            answers[lease] = Refused(status, message)
        else:
            answers[lease] = Unreachable(f"HTTP {status!r:.5}: {message}")
    return answers


def parse_recorded(doc: dict[str, Any]) -> Recorded:
    verdict = doc.get("verdict")
    coins = doc.get("coins", 0)
    if verdict not in VERDICTS:
        raise BadReply(
            f"the result reply's verdict is not pending/accepted/rejected: {verdict!r:.40}"
        )
    if not isinstance(coins, int | float) or isinstance(coins, bool) or not 0 <= coins < 1e9:
        raise BadReply("the result reply's coins is not a sensible number")
    return Recorded(verdict, float(coins))
