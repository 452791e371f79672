"""The OpenAPI operations of the download routes (`market.downloads`): a volunteer's
orders, their CD and stick images, and the statistics export. Merged into the document
by `market.openapi.document`; built from `market.openapi_parts`."""

from __future__ import annotations

from typing import Any

from market.export import FILES
from market.openapi_parts import (
    ANY_OBJECT,
    BINARY,
    DISK_FULL,
    Operation,
    json_content,
    name_parameter,
)
from market.personal import TERMS

TOML = {"application/toml": {"schema": {"type": "string"}}}
ISO = {"application/x-iso9660-image": {"schema": {"type": "string", "format": "binary"}}}
XML = {"application/xml": {"schema": {"type": "string"}}}
NO_ORDER = "No such order in this account."
ORDER_GONE = "The order is revoked."
NOT_KEPT = "The operator issued this order: its secret was shown once, no download."

OPERATIONS: dict[tuple[str, str], Operation] = {
    ("/v1/orders", "POST"): Operation(
        "Create a sell order crediting this account: its `.cpu` file (keep it secret)",
        ("account",),
        {201: ("the order", TOML)},
        {507: DISK_FULL},
        body=json_content("OrderTerms"),
        body_required=False,
    ),
    ("/v1/orders/{order}/livecd.iso", "GET"): Operation(
        "This account's order built into the market's live CD: a personal ISO (the same "
        "bytes for the same order), bootable from CD or, written with dd, from USB",
        ("account",),
        {200: ("the ISO image", ISO)},
        {
            404: NO_ORDER + " Or the market serves no live CD.",
            409: NOT_KEPT,
            410: ORDER_GONE,
        },
        parameters=(name_parameter("order"),),
    ),
    ("/v1/orders/{order}/stick.img", "GET"): Operation(
        "This account's order on a small FAT image labelled CPUSHARE, for dd onto a stick "
        "that the live CD reads its orders from",
        ("account",),
        {200: ("the FAT image", BINARY)},
        {404: NO_ORDER, 409: NOT_KEPT, 410: ORDER_GONE},
        parameters=(name_parameter("order"),),
    ),
    **{
        (f"/v1/export/{name}", "GET"): Operation(
            f"Statistics export ({name}): public totals of the leaderboard's accounts and "
            "their hosts, for stats sites; made at most once a day",
            (),
            {200: ("the dump", ANY_OBJECT if kind == "application/json" else XML)},
        )
        for name, kind in FILES.items()
    },
}


def schemas() -> dict[str, Any]:
    return {
        "OrderTerms": {
            "type": "object",
            "properties": {
                name: {"type": "integer", "minimum": low, "maximum": high, "default": default}
                for name, (default, low, high) in TERMS.items()
            },
        }
    }
