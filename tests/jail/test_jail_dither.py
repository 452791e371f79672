"""The Floyd-Steinberg job against its Python reference, bit for bit."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from cpushare.jail import Limits, Outcome, run_job
from livecd.sdk.dither import (
    blurred_error,
    dither,
    floyd_steinberg,
    quality,
    read_pbm,
    read_pgm,
    sample_image,
)
from livecd.toolchain import FSDITHER_SOURCE, build_hosted

LIMITS = Limits(cpu_seconds=10, wall_seconds=60.0, memory_bytes=64 << 20)


@pytest.mark.parametrize(
    ("width", "height", "seed"),
    [(1, 1, 0), (1, 37, 1), (53, 1, 2), (64, 48, 3), (127, 93, 4), (200, 3, 5)],
)
def test_job_matches_the_reference(
    jobs: dict[str, bytes], loader: Path, width: int, height: int, seed: int
) -> None:
    picture = sample_image(width, height, seed)
    result = run_job(jobs["fsdither"], picture, LIMITS, loader=loader)
    assert result.outcome is Outcome.OK, result.output[:200]
    assert result.output == dither(picture)


def test_other_maxval_comments_and_odd_whitespace(jobs: dict[str, bytes], loader: Path) -> None:
    pixels = bytes((x * 7 + y * 3) % 120 for y in range(20) for x in range(30))
    picture = b"P5# made by hand\r\n30\t# width\n 20\n# maxval next\n100\r" + pixels + b"trailer"
    result = run_job(jobs["fsdither"], picture, LIMITS, loader=loader)
    assert result.outcome is Outcome.OK, result.output[:200]
    assert result.output == dither(picture)
    assert read_pgm(picture).pixels[:3] == bytes([0, 18, 36])  # 7 and 14 of 100, scaled


BAD_PICTURES = [
    b"",
    b"P6\n1 1\n255\n\x00",
    b"P5\n0 1\n255\n",
    b"P5\n1 1\n0\n\x00",
    b"P5\n1 1\n256\n\x00",
    b"P5\n70000 1\n255\n",
    b"P51 1\n255\n\x00",
    b"P5\n1 1\n255",
    b"P5\n1 1\n255x\x00",
    b"P5\n2 2\n255\n\x00\x00\x00",
    b"P5\n# only a comment",
    b"P5\n-1 1\n255\n\x00",
]


@pytest.mark.parametrize("picture", BAD_PICTURES)
def test_bad_pictures_are_refused_alike(
    jobs: dict[str, bytes], loader: Path, picture: bytes
) -> None:
    with pytest.raises(ValueError) as refused:
        dither(picture)
    result = run_job(jobs["fsdither"], picture, LIMITS, loader=loader)
    assert (result.outcome, result.exit_status) == (Outcome.EXIT, 2)
    assert result.output == f"fsdither: {refused.value}\n".encode()


def test_the_hosted_build_gives_the_same_bytes(tmp_path: Path) -> None:
    native = build_hosted([FSDITHER_SOURCE], tmp_path / "fsdither")
    picture = sample_image(90, 70, 9)
    proc = subprocess.run([native], input=picture, capture_output=True, check=True)
    assert proc.stdout == dither(picture)


def test_error_diffusion_beats_plain_thresholding() -> None:
    image = read_pgm(sample_image(80, 60, 7))
    thresholded = bytes(255 if p >= 128 else 0 for p in image.pixels)
    diffused = floyd_steinberg(image)
    assert blurred_error(image, diffused) < blurred_error(image, thresholded) / 2


def test_quality_is_read_back_from_the_output() -> None:
    output = dither(sample_image(40, 30, 1))
    image = read_pgm(sample_image(40, 30, 1))
    mse = blurred_error(image, floyd_steinberg(image)) / (256 * 40 * 30)
    assert quality(output) == pytest.approx(mse, abs=1e-4)
    assert read_pbm(output).pixels == floyd_steinberg(image)


@pytest.mark.parametrize(("level", "row"), [(0, b"\xff\xc0"), (255, b"\x00\x00")])
def test_the_output_is_a_pbm_with_black_as_1(
    jobs: dict[str, bytes], loader: Path, level: int, row: bytes
) -> None:
    """PBM's polarity and row padding, spelled out: a flat black or white 10x2 picture
    halftones to itself, ten bits a row (1 for black) padded with zeros to two bytes."""
    picture = b"P5\n10 2\n255\n" + bytes([level]) * 20
    result = run_job(jobs["fsdither"], picture, LIMITS, loader=loader)
    assert result.output == b"P4\n# mse=0.0000\n10 2\n" + row * 2
    assert result.output == dither(picture)


def test_a_pbm_reads_back_and_bad_ones_are_refused() -> None:
    output = dither(sample_image(13, 5, 3))
    halftone = read_pbm(output)
    assert (halftone.width, halftone.height) == (13, 5)
    assert halftone.pixels == floyd_steinberg(read_pgm(sample_image(13, 5, 3)))
    with pytest.raises(ValueError, match="not a binary PBM"):
        read_pbm(sample_image(13, 5, 3))
    with pytest.raises(ValueError, match="shorter"):
        read_pbm(output[:-1])
    with pytest.raises(ValueError, match="bad PBM header"):
        read_pbm(b"P4\n0 5\n")
