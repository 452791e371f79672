"""The parts of the market's OpenAPI document that its operations are built from: an
operation (`Operation`), its content types, parameters and common error texts. Used by
`market.openapi` and `market.openapi_downloads`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Every authenticated operation can answer these.
AUTH_ERRORS = {
    400: "Bad input: the error names the problem.",
    401: "Missing or wrong credentials.",
    403: "These credentials may not do this.",
}
DISK_FULL = "The market's disk is full; nothing was kept."

BINARY = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
ANY_OBJECT = {"application/json": {"schema": {"type": "object"}}}


def ref(name: str) -> dict[str, Any]:
    """A reference to the schema `name` of the document's components."""
    return {"$ref": f"#/components/schemas/{name}"}


def json_content(name: str) -> dict[str, Any]:
    """A JSON body (request or reply) of the schema `name`."""
    return {"application/json": {"schema": ref(name)}}


def id_parameter(name: str) -> dict[str, Any]:
    """A path parameter holding a non-negative integer id."""
    return {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "integer", "minimum": 0},
    }


def name_parameter(name: str) -> dict[str, Any]:
    """A path parameter holding a string (an order's or a host's id)."""
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


@dataclass(frozen=True)
class Operation:
    """One method on one path: who may call it, what it takes and what it answers."""

    summary: str
    security: tuple[str, ...]
    replies: dict[int, tuple[str, dict[str, Any]]]
    errors: dict[int, str] = field(default_factory=dict)
    body: dict[str, Any] | None = None
    body_required: bool = True
    parameters: tuple[dict[str, Any], ...] = ()

    def document(self) -> dict[str, Any]:
        responses: dict[str, Any] = {
            str(code): {"description": text, **({"content": content} if content else {})}
            for code, (text, content) in self.replies.items()
        }
        errors = {**(AUTH_ERRORS if self.security else {}), **self.errors}
        for code, text in sorted(errors.items()):
            responses[str(code)] = {"description": text, "content": json_content("Error")}
        doc: dict[str, Any] = {
            "summary": self.summary,
            "security": [{name: []} for name in self.security],
        }
        if self.parameters:
            doc["parameters"] = list(self.parameters)
        if self.body is not None:
            doc["requestBody"] = {"required": self.body_required, "content": self.body}
        doc["responses"] = responses
        return doc
