"""A research group uploads a batch from the page, a real seller runs it, the group
follows its progress and downloads the results as one archive; a batch is cancelled."""

from __future__ import annotations

import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from journey import Journey
from playwright.sync_api import expect
from seller_processes import SellerProcess

from livecd.sdk.dither import dither, sample_image


@pytest.fixture
def sellers() -> Iterator[list[SellerProcess]]:
    started: list[SellerProcess] = []
    yield started
    for seller in started:
        seller.stop(kill=True)


def upload(journey: Journey, tmp_path: Path, program: bytes, inputs: dict[str, bytes]) -> None:
    page = journey.page
    (tmp_path / "fsdither.job").write_bytes(program)
    for name, data in inputs.items():
        (tmp_path / name).write_bytes(data)
    page.get_by_role("link", name="Batches").click()
    page.get_by_label("Name of the batch").fill("dither run")
    page.get_by_label("Program").set_input_files(tmp_path / "fsdither.job")
    page.get_by_label("Inputs").set_input_files([tmp_path / name for name in inputs])
    page.get_by_label("Agreeing hosts per job").select_option("1")
    journey.shot("upload")
    page.get_by_role("button", name="Upload the batch").click()
    expect(page.get_by_role("heading", name="Batch dither run")).to_be_visible()


@pytest.mark.parametrize("market_backend", ["sqlite", "postgres"])
def test_a_scientist_uploads_a_batch_and_downloads_its_results(
    journey: Journey, tmp_path: Path, fsdither: bytes, sellers: list[SellerProcess]
) -> None:
    page, market = journey.page, journey.market
    journey.sign_up("lab")
    market.grant("lab", 10_000)
    images = {"a.pgm": sample_image(16, 12, 1), "b.pgm": sample_image(9, 7, 2)}
    upload(journey, tmp_path, fsdither, {**images, "junk.pgm": b"not an image"})
    expect(page.locator("#summary")).to_contain_text("0 done, 0 failed, 3 open of 3")
    journey.shot("queued")

    market.account("ada")
    market.order("ada", tmp_path / "ada.cpu")
    sellers.append(SellerProcess(tmp_path / "ada.cpu", tmp_path))
    give_up = time.monotonic() + 90
    while "0 open" not in page.locator("#summary").inner_text():
        assert time.monotonic() < give_up, page.locator("#summary").inner_text()
        time.sleep(0.5)
        page.reload()
    # The bad input ran and exited 2 (fsdither's answer to a bad image): a failure shown
    # with its outcome.
    expect(page.locator("#summary")).to_contain_text("2 done, 1 failed, 0 open of 3")
    expect(page.locator("#progress")).to_have_attribute("value", "3")
    expect(page.locator("#jobs tr", has_text="junk.pgm")).to_contain_text("exit status 2")
    journey.shot("finished")

    with page.expect_download() as info:
        page.get_by_role("link", name="Download the results").click()
    with tarfile.open(info.value.path()) as tar:
        # batch-N/JOB-INPUT.out for each job that ran, and batch-N/FAILURES.txt.
        outputs = {
            member.name.split("/")[1].split("-", 1)[-1]: tar.extractfile(member).read()  # type: ignore[union-attr]
            for member in tar.getmembers()
        }
    assert sorted(outputs) == ["FAILURES.txt", "a.pgm.out", "b.pgm.out", "junk.pgm.out"]
    assert outputs["a.pgm.out"] == dither(images["a.pgm"])
    assert outputs["b.pgm.out"] == dither(images["b.pgm"])
    failures = outputs["FAILURES.txt"].decode()
    assert "junk.pgm" in failures and "exit status 2" in failures and "a.pgm" not in failures

    # What the jobs cost shows on the account page.
    page.get_by_role("link", name="Account").click()
    assert float(page.locator("#balance").inner_text().replace(",", "")) < 10_000
    # The home page's figures count the three results, under their program.
    journey.go("/")
    expect(page.locator("#jobs-per-minute")).to_have_text("3")
    expect(page.locator("#queued")).to_have_text("0")
    expect(page.locator("#machines")).to_have_text("1")
    row = page.locator("#by-program tbody tr")
    expect(row).to_have_count(1)
    expect(row.locator("td").nth(3)).to_have_text("3")
    assert float(page.locator("#coins-day").inner_text()) > 0
    journey.shot("home-figures")


def test_cancelling_a_batch_gives_its_coins_back(
    journey: Journey, tmp_path: Path, fsdither: bytes
) -> None:
    page, market = journey.page, journey.market
    journey.sign_up("lab")
    market.grant("lab", 10_000)
    upload(journey, tmp_path, fsdither, {"a.pgm": sample_image(8, 8)})
    page.get_by_role("link", name="Batches").click()
    held = page.locator("#balance").inner_text()
    assert float(held.replace(",", "")) < 10_000
    page.get_by_role("link", name="dither run").click()
    page.get_by_role("button", name="Cancel the open jobs").click()
    expect(page.locator("#jobs tbody tr").first).to_contain_text("cancelled")
    expect(page.locator("#summary")).to_contain_text("0 done, 1 failed, 0 open of 1")
    page.get_by_role("link", name="Batches").click()
    expect(page.locator("#balance")).to_have_text("10,000.000")
    journey.shot("cancelled")


def test_a_batch_that_is_not_a_program_is_refused_with_a_reason(
    journey: Journey, tmp_path: Path
) -> None:
    page, market = journey.page, journey.market
    journey.sign_up("lab")
    market.grant("lab", 10_000)
    (tmp_path / "input").write_bytes(b"x")
    (tmp_path / "prog").write_bytes(b"#!/bin/sh\necho hi\n")
    page.get_by_role("link", name="Batches").click()
    page.get_by_label("Name of the batch").fill("bad")
    page.get_by_label("Program").set_input_files(tmp_path / "prog")
    page.get_by_label("Inputs").set_input_files(tmp_path / "input")
    # The refusal is a 400 page: the browser logs the status, which is what this test wants.
    page.get_by_role("button", name="Upload the batch").click()
    expect(page.get_by_role("alert")).to_contain_text("not a valid job program")
    journey.errors.clear()
    journey.shot("refused")
