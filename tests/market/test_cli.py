"""`livecd market ...` against a real market: operator and buyer commands, --json, errors."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from cpushare.order import load_order
from livecd.cli import main
from livecd.market_process import MarketProcess
from market.admin import revoke_host
from market.app import openapi_document
from market.dialect import Location
from market.stats import LEADERBOARD_SETTING
from market.store import connect


def test_operator_and_buyer_commands(
    market: MarketProcess, fsdither: bytes, tmp_path: Path
) -> None:
    runner = CliRunner()
    db = ["--db", str(market.db)]
    made = runner.invoke(main, ["market", "account", "new", "lab", *db, "--json"])
    assert made.exit_code == 0, made.output
    api_key = json.loads(made.output)["api_key"]
    order = runner.invoke(
        main, ["market", "order", "new", *db, "--account", "lab", "-o", str(tmp_path / "lab.cpu")]
    )
    assert order.exit_code == 0, order.output
    assert load_order(tmp_path / "lab.cpu").market_url == market.url

    env = {"CPUSHARE_MARKET": market.url, "CPUSHARE_API_KEY": api_key}
    (tmp_path / "job").write_bytes(fsdither)
    (tmp_path / "in.pgm").write_bytes(b"P5\n1 1\n255\n\x80")
    submit = ["market", "submit", str(tmp_path / "job"), "--input", str(tmp_path / "in.pgm")]
    broke = runner.invoke(main, submit, env=env)
    assert broke.exit_code == 2 and "HTTP 402" in broke.output and "grant" in broke.output
    granted = runner.invoke(main, ["market", "account", "grant", "lab", "5000", *db])
    assert granted.exit_code == 0 and "lab: 5000.000 coins" in granted.output, granted.output
    submitted = runner.invoke(main, [*submit, "--json"], env=env)
    assert submitted.exit_code == 0, submitted.output
    assert [j["job"] for j in json.loads(submitted.output)["jobs"]] == [1]
    status = runner.invoke(main, ["market", "status", "--json"], env=env)
    assert json.loads(status.output)["jobs"]["open"] == 1
    pending = runner.invoke(main, ["market", "results", "1", "--out", str(tmp_path / "r")], env=env)
    assert pending.exit_code == 2 and "job 1 is open: it has no accepted result" in pending.output


def test_errors_are_one_line(market: MarketProcess, tmp_path: Path) -> None:
    runner = CliRunner()
    db = ["--db", str(market.db)]
    unknown = runner.invoke(
        main, ["market", "order", "new", *db, "--account", "ghost", "-o", str(tmp_path / "g.cpu")]
    )
    assert unknown.exit_code == 2
    assert unknown.output == (
        "livecd: error: no account 'ghost': create it with `livecd market account new`\n"
    )
    assert not (tmp_path / "g.cpu").exists()
    runner.invoke(main, ["market", "account", "new", "lab", *db])
    twice = runner.invoke(main, ["market", "account", "new", "lab", *db])
    assert twice.output == "livecd: error: account 'lab' already exists\n"
    (tmp_path / "script").write_bytes(b"#!/bin/sh\necho hi\n")
    (tmp_path / "in").write_bytes(b"")
    env = {"CPUSHARE_MARKET": market.url, "CPUSHARE_API_KEY": "wrong"}
    bad = runner.invoke(
        main,
        ["market", "submit", str(tmp_path / "script"), "--input", str(tmp_path / "in")],
        env=env,
    )
    assert bad.exit_code == 2
    assert bad.output.startswith("livecd: error: the market refused PUT /v1/programs: HTTP 401")
    plain = runner.invoke(main, ["market", "serve", *db, "--listen", "0.0.0.0:8999"])
    assert plain.exit_code == 2 and "plain HTTP is allowed on loopback only" in plain.output


def test_openapi_prints_the_served_document() -> None:
    printed = CliRunner().invoke(main, ["market", "openapi"])
    assert printed.exit_code == 0, printed.output
    assert json.loads(printed.output) == openapi_document()


def test_migrate_creates_the_schema_on_either_engine(
    market_location: Location, market_backend: str
) -> None:
    if market_backend == "postgres":
        # The test's database is a copy of a migrated one: empty it first.
        conn = connect(market_location)
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
        conn.close()
    runner = CliRunner()
    db = ["--db", str(market_location)]
    migrated = runner.invoke(main, ["market", "migrate", *db])
    assert migrated.exit_code == 0, migrated.output
    assert "schema is up to date" in migrated.output
    conn = connect(market_location)
    assert conn.execute("SELECT count(*) FROM accounts").fetchone()[0] == 0
    conn.close()
    assert runner.invoke(main, ["market", "account", "new", "lab", *db]).exit_code == 0


def test_the_account_switches_set_what_they_say_and_off_unsets_it(
    market_location: Location,
) -> None:
    runner = CliRunner()
    db = ["--db", str(market_location)]
    assert runner.invoke(main, ["market", "migrate", *db]).exit_code == 0
    assert runner.invoke(main, ["market", "account", "new", "ada", *db]).exit_code == 0

    def state() -> dict[str, bool]:
        conn = connect(market_location)
        try:
            operator, disabled = conn.execute(
                "SELECT operator, disabled FROM accounts WHERE name = 'ada'"
            ).fetchone()
            (listed,) = conn.execute(
                "SELECT count(*) FROM settings WHERE key = ? AND value = 'on'",
                (LEADERBOARD_SETTING + "ada",),
            ).fetchone()
        finally:
            conn.close()
        return {"leaderboard": listed == 1, "operator": bool(operator), "disabled": bool(disabled)}

    steps = [
        (["leaderboard"], "on the public leaderboard", "leaderboard", True),
        (["leaderboard", "--off"], "off the public leaderboard", "leaderboard", False),
        (["operator"], "now an operator on the web portal", "operator", True),
        (["operator", "--off"], "no longer an operator on the web portal", "operator", False),
        (["disable"], "disabled; its hosts' leases went back to the queue", "disabled", True),
        (["enable"], "enabled", "disabled", False),
    ]
    for (verb, *flags), said, what, now in steps:
        done = runner.invoke(main, ["market", "account", verb, "ada", *flags, *db])
        assert done.exit_code == 0 and done.output == f"account ada: {said}\n", done.output
        assert state()[what] is now, (verb, flags)
    unknown = runner.invoke(main, ["market", "account", "enable", "ghost", *db])
    assert unknown.exit_code == 2 and unknown.output.startswith("livecd: error: no account")


def test_the_lists_print_a_line_a_row_or_the_rows_as_json(market: MarketProcess) -> None:
    market.account("ada", coins=2.5)
    order = market.order("ada")
    kept = market.enroll(order, seats=2)
    gone = market.enroll(order, source="127.0.0.2")
    revoke_host(market.db, gone.id)
    runner = CliRunner()
    db = ["--db", str(market.db)]
    accounts = runner.invoke(main, ["market", "account", "list", *db])
    assert accounts.output == f"{'ada':20} orders=1     coins=2.500\n", accounts.output
    (row,) = json.loads(runner.invoke(main, ["market", "account", "list", *db, "--json"]).output)
    assert row == {"name": "ada", "orders": 1, "coins": 2.5, "disabled": False}
    hosts = runner.invoke(main, ["market", "host", "list", *db]).output.splitlines()
    assert [line.split(" order=")[0] for line in hosts] == [kept.id, gone.id]
    assert hosts[0].endswith(" seats=2 leases=0") and hosts[1].endswith(" seats=1 revoked")
    assert f"order={order.order_id} account=ada network=" in hosts[0]
    rows = json.loads(runner.invoke(main, ["market", "host", "list", *db, "--json"]).output)
    assert [(r["host"], r["seats"], r["revoked"] is None) for r in rows] == [
        (kept.id, 2, True),
        (gone.id, 1, False),
    ]


def test_an_unreachable_postgres_database_is_one_line() -> None:
    url = "postgresql:///market?host=/nonexistent"
    refused = CliRunner().invoke(main, ["market", "account", "list", "--db", url])
    assert refused.exit_code != 0
    assert refused.output.count("\n") == 1 and "cannot connect" in refused.output


def test_the_served_database_is_logged_without_its_password() -> None:
    from livecd.cli.market import _redacted

    assert _redacted("postgresql://m:pw@db/market") == "postgresql://m:***@db/market"
    assert _redacted("postgresql:///market?host=/run") == "postgresql:///market?host=/run"
