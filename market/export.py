"""The statistics export for third-party stats sites: per-account and per-host totals as
JSON (`accounts.json`, `hosts.json`) and in BOINC's dump format (`user.xml`, `host.xml`).

Only what is public already (`market.stats`): the accounts on the leaderboard, and their
hosts. A host is named by a digest of its id (the id is half of its credentials), with no
network address; no secret, key or order id is in any document. The dump is made at most
once a day, however often it is asked for.
"""

from __future__ import annotations

import hashlib
import json
import threading
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from market.dialect import Connection
from market.stats import LEADERBOARD_SETTING

EXPORT_SECONDS = 24 * 3600
FILES = {
    "accounts.json": "application/json",
    "hosts.json": "application/json",
    "user.xml": "application/xml",
    "host.xml": "application/xml",
}


def public_host_id(host_id: str) -> str:
    return hashlib.sha256(f"cpushare-host:{host_id}".encode()).hexdigest()[:16]


def account_totals(conn: Connection) -> list[dict[str, object]]:
    """Each leaderboard account: coins earned selling, accepted results, hosts."""
    rows = conn.execute(
        "SELECT a.id, a.name, a.created, "
        "(SELECT coalesce(sum(t.millicoins), 0) FROM transfers t "
        " WHERE t.kind = 'pay' AND t.target = 'a:' || a.id), "
        "(SELECT count(*) FROM results r JOIN orders o ON o.id = r.order_id "
        " WHERE o.account_id = a.id AND r.verdict = 'accepted'), "
        "(SELECT count(*) FROM hosts h JOIN orders o ON o.id = h.order_id "
        " WHERE o.account_id = a.id) "
        "FROM accounts a JOIN settings s ON s.key = ? || a.name AND s.value = 'on' "
        "ORDER BY a.id",
        (LEADERBOARD_SETTING,),
    ).fetchall()
    return [
        {
            "id": int(i),
            "name": name,
            "created": int(created),
            "coins": int(m) / 1000,
            "results": int(results),
            "hosts": int(hosts),
        }
        for i, name, created, m, results, hosts in rows
    ]


def host_totals(conn: Connection) -> list[dict[str, object]]:
    """Each host of a leaderboard account: its seats, coins earned, accepted results."""
    rows = conn.execute(
        "SELECT h.id, a.id, a.name, h.seats, h.created, h.revoked IS NOT NULL, "
        "(SELECT coalesce(sum(t.millicoins), 0) FROM transfers t "
        " JOIN results r ON r.id = t.result_id WHERE t.kind = 'pay' AND r.host_id = h.id), "
        "(SELECT count(*) FROM results r WHERE r.host_id = h.id AND r.verdict = 'accepted') "
        "FROM hosts h JOIN orders o ON o.id = h.order_id JOIN accounts a ON a.id = o.account_id "
        "JOIN settings s ON s.key = ? || a.name AND s.value = 'on'",
        (LEADERBOARD_SETTING,),
    ).fetchall()
    hosts = [
        {
            "id": public_host_id(str(host)),
            "account_id": int(account_id),
            "account": name,
            "seats": int(seats),
            "created": int(created),
            "revoked": bool(revoked),
            "coins": int(m) / 1000,
            "results": int(results),
        }
        for host, account_id, name, seats, created, revoked, m, results in rows
    ]
    return sorted(hosts, key=lambda h: str(h["id"]))


def _xml(root: str, item: str, rows: list[dict[str, object]], fields: dict[str, str]) -> bytes:
    """BOINC's dump layout: <root><item><field>value</field>...</item>...</root>."""
    top = ET.Element(root)
    for row in rows:
        element = ET.SubElement(top, item)
        for tag, key in fields.items():
            ET.SubElement(element, tag).text = str(row[key])
    ET.indent(top)
    data: bytes = ET.tostring(top, encoding="utf-8", xml_declaration=True)
    return data + b"\n"


def dump(conn: Connection, now: float) -> dict[str, bytes]:
    """Every file of the export, {name: bytes}, as of `now`."""
    users, hosts = account_totals(conn), host_totals(conn)
    stamp = int(now)
    return {
        "accounts.json": _json({"generated": stamp, "accounts": users}),
        "hosts.json": _json({"generated": stamp, "hosts": hosts}),
        "user.xml": _xml(
            "users",
            "user",
            users,
            {"id": "id", "name": "name", "total_credit": "coins", "create_time": "created"},
        ),
        "host.xml": _xml(
            "hosts",
            "host",
            hosts,
            {
                "id": "id",
                "userid": "account_id",
                "total_credit": "coins",
                "create_time": "created",
            },
        ),
    }


def _json(doc: object) -> bytes:
    return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()


@dataclass
class _Made:
    at: float
    files: dict[str, bytes]


class Export:
    """dump(), made again only once EXPORT_SECONDS have passed."""

    def __init__(self) -> None:
        self._made: _Made | None = None
        self._lock = threading.Lock()

    def get(self, conn: Connection, name: str, now: float) -> bytes:
        with self._lock:
            if self._made is None or not 0 <= now - self._made.at < EXPORT_SECONDS:
                self._made = _Made(now, dump(conn, now))
            return self._made.files[name]
