"""The market's OpenAPI 3.1 document, built from its routes and the wire contract.

Each route of the app (`market.app.ROUTES`) has its operation here; the lease, result and
limits schemas come from `cpushare.protocol`, so the document cannot drift from what the
market sends and the seller checks. A route without an operation is an error at start-up.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from cpushare import protocol
from cpushare.limits import MAX_PROGRAM_BYTES
from market import openapi_downloads
from market.jobs import MAX_BATCH_JOBS, MAX_REPLICAS
from market.openapi_parts import (
    ANY_OBJECT,
    BINARY,
    DISK_FULL,
    Operation,
    id_parameter,
    json_content,
    name_parameter,
    ref,
)

DESCRIPTION = (
    "A seller's machine enrolls once with its sell order (POST /v1/hosts) and gets a host "
    "identity; its seats then lease jobs (long-poll), extend leases while a job runs, and "
    "post results, as that host. Buyers hold coins, upload programs, submit job batches "
    "(validated by agreeing hosts) and collect accepted results. Every request except "
    "/v1/health and /v1/openapi.json is authenticated: accounts with "
    "`Authorization: Bearer API_KEY`, enrollment with HTTP Basic ORDER_ID:SECRET, sellers "
    'with HTTP Basic HOST_ID:HOST_SECRET. Errors are JSON objects {"error": "..."}, with '
    '"code": "revoked" when the host, its order or its account was revoked or disabled.'
)
NO_LEASE = "No such lease."
LEASE_DONE = "The lease already has its result."
LEASE_GONE = "The lease expired (or its job ended); its job was requeued."
REVOKED = (
    'Revoked or disabled ("code": "revoked"), or order credentials where a host\'s are needed.'
)


OPERATIONS: dict[tuple[str, str], Operation] = {
    ("/v1/health", "GET"): Operation("Liveness", (), {200: ("up", ANY_OBJECT)}),
    ("/v1/openapi.json", "GET"): Operation("This document", (), {200: ("OpenAPI 3.1", ANY_OBJECT)}),
    ("/v1/status", "GET"): Operation(
        "The caller's own account: its queue, leases, results, machines seen and coins",
        ("account",),
        {200: ("the account's status", json_content("Status"))},
    ),
    ("/v1/stats", "GET"): Operation(
        "Public figures: market-wide totals and the opt-in leaderboard",
        (),
        {200: ("market totals", json_content("Stats"))},
    ),
    ("/v1/programs", "PUT"): Operation(
        "Upload a job program (static x86-64 ELF), validated by the jail",
        ("account",),
        {
            200: ("already stored", json_content("Program")),
            201: ("stored", json_content("Program")),
        },
        {413: f"Larger than {MAX_PROGRAM_BYTES >> 20} MiB.", 507: DISK_FULL},
        body=BINARY,
    ),
    ("/v1/programs/{sha256}", "GET"): Operation(
        "Download a program by sha256: its owner, or a host leasing a job that runs it",
        ("account", "host"),
        {200: ("the program", BINARY)},
        {404: "No such program that these credentials may read."},
        parameters=(
            {"name": "sha256", "in": "path", "required": True, "schema": {"type": "string"}},
        ),
    ),
    ("/v1/jobs", "POST"): Operation(
        "Submit a batch of jobs (one per input), all or none",
        ("account",),
        {201: ("queued", json_content("Submitted"))},
        {
            402: "The account's balance does not cover the batch's reservation.",
            404: "No such program.",
            413: "Body too large.",
            507: DISK_FULL,
        },
        body=json_content("Submit"),
    ),
    ("/v1/jobs/{job}/cancel", "POST"): Operation(
        "Cancel an open job: its leases end and its reservation comes back whole",
        ("account",),
        {200: ("cancelled", json_content("Cancelled"))},
        {404: "No such job in this account.", 409: "The job is no longer open."},
        parameters=(id_parameter("job"),),
    ),
    ("/v1/orders/{order}/revoke", "POST"): Operation(
        "Revoke one of this account's sell orders and every host enrolled with it, at once",
        ("account",),
        {200: ("revoked", json_content("Revoked"))},
        {404: "No such order in this account."},
        parameters=(name_parameter("order"),),
    ),
    ("/v1/hosts", "POST"): Operation(
        "Enroll a machine with a sell order: its host id and secret (shown once)",
        ("order",),
        {201: ("enrolled", json_content("Enrolled"))},
        {403: REVOKED, 429: "Too many enrollments from this network: see Retry-After."},
        body=json_content("Enroll"),
        body_required=False,
    ),
    ("/v1/hosts/{host}/revoke", "POST"): Operation(
        "Revoke a host enrolled with one of this account's orders, at once",
        ("account",),
        {200: ("revoked", json_content("Revoked"))},
        {404: "No such host in this account."},
        parameters=(name_parameter("host"),),
    ),
    ("/v1/jobs", "GET"): Operation(
        "List this account's jobs, oldest first",
        ("account",),
        {200: ("jobs", json_content("JobList"))},
        parameters=(
            {
                "name": "state",
                "in": "query",
                "schema": {"type": "string", "enum": ["open", "done", "failed"]},
            },
            {
                "name": "after",
                "in": "query",
                "schema": {"type": "integer", "minimum": 0},
                "description": "only ids greater than this",
            },
            {
                "name": "limit",
                "in": "query",
                "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100},
            },
        ),
    ),
    ("/v1/jobs/{job}", "GET"): Operation(
        "One job's status",
        ("account",),
        {200: ("the job", json_content("Job"))},
        {404: "No such job in this account."},
        parameters=(id_parameter("job"),),
    ),
    ("/v1/jobs/{job}/output", "GET"): Operation(
        "A finished job's accepted output",
        ("account",),
        {200: ("the output bytes", BINARY)},
        {404: "No such job in this account.", 409: "The job has no accepted result (yet)."},
        parameters=(id_parameter("job"),),
    ),
    ("/v1/lease", "POST"): Operation(
        "Lease a job (long-poll up to `wait` seconds)",
        ("host",),
        {200: ("a lease", json_content("Lease")), 204: ("no job within `wait`", {})},
        {413: "Body too large."},
        body=json_content("LeaseRequest"),
        body_required=False,
    ),
    ("/v1/leases", "POST"): Operation(
        "Lease a job for each of several seats at once (long-poll up to `wait` seconds for "
        "the first); each lease says its seat. A client whose Accept header names "
        f"`{protocol.BLOBS}` gets the leases' inputs raw after the document "
        "(one line), each lease naming its `input_size` instead of `input`",
        ("host",),
        {
            200: ("one lease per seat at most", json_content("Leases")),
            204: ("no job within `wait`", {}),
        },
        {413: "Body too large."},
        body=json_content("LeaseBatchRequest"),
    ),
    ("/v1/results", "POST"): Operation(
        "Post several leases' results at once: each is recorded and answered (with the status "
        "its single post would have had) on its own; with `next`, lease the next jobs in the "
        f"same request, once the results are written. As `{protocol.BLOBS}`, the "
        "document (one line) is followed by the outputs raw, each result naming its "
        "`output_size` instead of `output`; the leases of `next` come so if Accept asks",
        ("host",),
        {200: ("an answer per result", json_content("RecordedBatch"))},
        {413: "Body too large.", 507: DISK_FULL},
        body=json_content("ResultBatch"),
    ),
    ("/v1/leases/{lease}/extend", "POST"): Operation(
        "Push a running lease's deadline",
        ("host",),
        {200: ("extended", json_content("Extended"))},
        {
            404: NO_LEASE,
            409: LEASE_DONE + " Or its job's wall-clock limit is reached.",
            410: LEASE_GONE,
        },
        parameters=(id_parameter("lease"),),
    ),
    ("/v1/leases/{lease}/release", "POST"): Operation(
        "Hand a lease back: its job goes back to the queue at once",
        ("host",),
        {200: ("released", json_content("Released"))},
        {404: NO_LEASE, 409: LEASE_DONE, 410: LEASE_GONE},
        parameters=(id_parameter("lease"),),
    ),
    ("/v1/leases/{lease}/result", "POST"): Operation(
        "Post a lease's result; acknowledged only once stored on disk",
        ("host",),
        {200: ("stored (or already stored)", json_content("Recorded"))},
        {404: NO_LEASE, 410: LEASE_GONE, 413: "Output or body too large.", 507: DISK_FULL},
        body=json_content("Result"),
        parameters=(id_parameter("lease"),),
    ),
}


def _object(required: list[str], properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": properties}


def _market_schemas(lease_defaults: tuple[int, int], max_wait: float) -> dict[str, Any]:
    """Schemas of the buyer's documents and the market's small replies."""
    memory, cpu = lease_defaults
    job_fields: dict[str, Any] = {
        "id": {"type": "integer"},
        "state": {"type": "string", "enum": ["open", "done", "failed"]},
        "replicas": {"type": "integer"},
        "outcome": {"type": ["string", "null"]},
        "exit_status": {"type": ["integer", "null"]},
        "output_sha256": {"type": ["string", "null"]},
        "created": {"type": "number"},
        "finished": {"type": ["number", "null"]},
        "results": {"type": "integer"},
        "leased": {"type": "integer"},
        "cpu_seconds": {"type": ["number", "null"]},
    }
    counts = ("leases_active", "results_last_minute", "results_last_hour")
    status_fields: dict[str, Any] = {
        "account": {"type": "string"},
        "jobs": {"type": "object", "additionalProperties": {"type": "integer"}},
        **{name: {"type": "integer"} for name in counts},
        "coins": {"type": "object", "additionalProperties": {"type": "number"}},
        "seats_seen": {"type": "integer"},
        "machines_seen": {"type": "integer"},
        "orders_seen": {"type": "integer"},
    }
    leader = _object(
        ["account", "coins"], {"account": {"type": "string"}, "coins": {"type": "number"}}
    )
    stats_fields: dict[str, Any] = {
        "jobs": status_fields["jobs"],
        **{name: {"type": "integer"} for name in counts},
        "coins_credited": {"type": "number"},
        "leaderboard": {"type": "array", "items": leader},
    }
    return {
        "Error": _object(["error"], {"error": {"type": "string"}}),
        "Program": _object(
            ["sha256", "size", "new"],
            {
                "sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                "size": {"type": "integer"},
                "new": {"type": "boolean"},
            },
        ),
        "Submit": _object(
            ["program", "inputs"],
            {
                "program": {"type": "string", "description": "sha256 of an uploaded program"},
                "inputs": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": MAX_BATCH_JOBS,
                    "items": {"type": "string", "contentEncoding": "base64"},
                },
                "replicas": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": MAX_REPLICAS,
                    "description": "agreeing hosts on distinct networks needed to accept a job, "
                    "always (1: trust every seller); absent: adaptive replication (two until "
                    "hosts earn trust per program)",
                },
                "limits": ref("Limits"),
            },
        ),
        "Submitted": _object(["jobs"], {"jobs": {"type": "array", "items": {"type": "integer"}}}),
        "Job": _object(list(job_fields), job_fields),
        "JobList": _object(["jobs"], {"jobs": {"type": "array", "items": ref("Job")}}),
        "Status": _object(list(status_fields), status_fields),
        "Stats": _object(list(stats_fields), stats_fields),
        "LeaseRequest": {
            "type": "object",
            "properties": {
                "wait": {
                    "type": "number",
                    "minimum": 0,
                    "maximum": max_wait,
                    "default": 0,
                    "description": "seconds to wait for a job (long-poll)",
                },
                "seat": {
                    "type": "integer",
                    "minimum": 0,
                    "maximum": 255,
                    "default": 0,
                    "description": "which of the host's seats asks: one active lease per seat, "
                    "asking again hands the seat's previous lease back",
                },
                "max_memory_bytes": {
                    "type": "integer",
                    "minimum": 0,
                    "maximum": 1 << 42,
                    "default": memory,
                },
                "max_cpu_seconds": {
                    "type": "integer",
                    "minimum": 0,
                    "maximum": 1 << 30,
                    "default": cpu,
                },
                "max_output_bytes": {
                    "type": "integer",
                    "minimum": 0,
                    "description": "only jobs whose output limit is within this (the "
                    "seller's memory plan); absent: any",
                },
            },
        },
        "Extended": _object(
            ["lease", "lease_seconds"],
            {"lease": {"type": "integer"}, "lease_seconds": {"type": "number"}},
        ),
        "Enroll": {
            "type": "object",
            "properties": {
                "seats": {"type": "integer", "minimum": 1, "maximum": 256, "default": 1}
            },
        },
        "Enrolled": _object(
            ["host", "secret", "seats", "order"],
            {
                "host": {"type": "string", "pattern": "^host-"},
                "secret": {"type": "string"},
                "seats": {"type": "integer"},
                "order": {"type": "string"},
            },
        ),
        "Revoked": {"type": "object", "properties": {"revoked": {"const": True}}},
        "Cancelled": _object(
            ["job", "cancelled"],
            {"job": {"type": "integer"}, "cancelled": {"type": "boolean", "const": True}},
        ),
        "Released": _object(
            ["lease", "released"],
            {"lease": {"type": "integer"}, "released": {"type": "boolean", "const": True}},
        ),
    }


class UndocumentedRoute(RuntimeError):
    """A route of the app has no operation in this document."""


def document(
    routes: Iterable[tuple[str, str]], lease_defaults: tuple[int, int], max_wait: float
) -> dict[str, Any]:
    """The OpenAPI document of the app whose routes are (path, method) pairs."""
    operations = {**OPERATIONS, **openapi_downloads.OPERATIONS}
    paths: dict[str, dict[str, Any]] = {}
    for path, method in routes:
        operation = operations.get((path, method))
        if operation is None:
            raise UndocumentedRoute(f"{method} {path} has no operation in market/openapi.py")
        paths.setdefault(path, {})[method.lower()] = operation.document()
    return {
        "openapi": "3.1.0",
        "info": {"title": "CPUShare market", "version": "1", "description": DESCRIPTION},
        "servers": [{"url": "/"}],
        "components": {
            "securitySchemes": {
                "account": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "An account's API key.",
                },
                "order": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "A sell order's id and secret: only to enroll a host.",
                },
                "host": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "A host's id and secret, from enrolling.",
                },
            },
            "schemas": {
                **_market_schemas(lease_defaults, max_wait),
                **openapi_downloads.schemas(),
                **protocol.schemas(),
            },
        },
        "paths": paths,
    }
