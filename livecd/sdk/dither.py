"""Floyd-Steinberg in pure Python: the reference that the fsdither job must match bit for bit.

`dither(pgm)` returns exactly the bytes livecd/sdk/jobs/fsdither.c writes for the same
input, a PBM (see that file for the format and the quality figure); results from sellers
are checked against it. `read_pbm` turns such a result back into grey levels, to view or
convert it; `sample_image` makes reproducible test pictures.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

MAX_SIDE = 65535
MAX_PIXELS = 1 << 28
_SPACE = b" \t\n\v\f\r"
_DIGITS = b"0123456789"


@dataclass(frozen=True)
class Image:
    """A grey image, one byte per pixel, levels scaled to 0..255."""

    width: int
    height: int
    pixels: bytes


def _skip_separator(data: bytes, pos: int) -> int:
    start = pos
    while pos < len(data):
        if data[pos] in _SPACE:
            pos += 1
        elif data[pos] == ord("#"):
            while pos < len(data) and data[pos] not in b"\n\r":
                pos += 1
        else:
            break
    if pos == start:
        raise ValueError("bad PGM header (width, height 1..65535, maxval 1..255)")
    return pos


def _read_field(data: bytes, pos: int, maximum: int) -> tuple[int, int]:
    pos = _skip_separator(data, pos)
    if pos >= len(data) or data[pos] not in _DIGITS:
        raise ValueError("bad PGM header (width, height 1..65535, maxval 1..255)")
    value = 0
    while pos < len(data) and data[pos] in _DIGITS:
        value = value * 10 + data[pos] - ord("0")
        pos += 1
        if value > maximum:
            raise ValueError("bad PGM header (width, height 1..65535, maxval 1..255)")
    return value, pos


def read_pgm(data: bytes) -> Image:
    """The image in a binary PGM (P5); ValueError with the job's wording if it is bad."""
    if data[:2] != b"P5":
        raise ValueError("input is not a binary PGM (P5)")
    width, pos = _read_field(data, 2, MAX_SIDE)
    height, pos = _read_field(data, pos, MAX_SIDE)
    maxval, pos = _read_field(data, pos, 255)
    if not (width and height and maxval):
        raise ValueError("bad PGM header (width, height 1..65535, maxval 1..255)")
    if width * height > MAX_PIXELS:
        raise ValueError("image too large (at most 2^28 pixels)")
    if pos >= len(data) or data[pos] not in _SPACE:
        raise ValueError("bad PGM header (no whitespace after maxval)")
    raster = data[pos + 1 : pos + 1 + width * height]
    if len(raster) < width * height:
        raise ValueError("PGM raster is shorter than width * height")
    if maxval != 255:
        raster = bytes((min(v, maxval) * 255 + maxval // 2) // maxval for v in raster)
    return Image(width, height, raster)


def floyd_steinberg(image: Image) -> bytes:
    """The halftone (0 or 255 per pixel); errors in sixteenths of a level, shares floored."""
    w = image.width
    out = bytearray(w * image.height)
    cur = [0] * (w + 2)
    for y in range(image.height):
        row = image.pixels[y * w : (y + 1) * w]
        nxt = [0] * (w + 2)
        for x in range(w):
            v = (row[x] << 4) + cur[x + 1]
            level = 255 if v >= 128 << 4 else 0
            e = v - (level << 4)
            out[y * w + x] = level
            cur[x + 2] += (e * 7) >> 4
            nxt[x] += (e * 3) >> 4
            nxt[x + 1] += (e * 5) >> 4
            nxt[x + 2] += e >> 4
        cur = nxt
    return bytes(out)


def blurred_error(image: Image, halftone: bytes) -> int:
    """Sum over pixels of (16 * blurred halftone - 16 * original)^2, edges clamped."""
    w, h = image.width, image.height
    total = 0
    for y in range(h):
        rows = (max(y - 1, 0), y, min(y + 1, h - 1))
        up, mid, down = (halftone[r * w : (r + 1) * w] for r in rows)
        orig = image.pixels[y * w : (y + 1) * w]
        for x in range(w):
            left, right = max(x - 1, 0), min(x + 1, w - 1)
            blurred = (
                up[left] + 2 * up[x] + up[right]
                + 2 * mid[left] + 4 * mid[x] + 2 * mid[right]
                + down[left] + 2 * down[x] + down[right]
            )  # fmt: skip
            total += (blurred - 16 * orig[x]) ** 2
    return total


def format_mse(error_sum: int, pixels: int) -> str:
    """The mean squared error in grey levels, truncated to four decimals, as the job prints it."""
    ten_thousandths = error_sum * 10_000 // (256 * pixels)
    return f"{ten_thousandths // 10_000}.{ten_thousandths % 10_000:04d}"


def pack_pbm(halftone: bytes, width: int) -> bytes:
    """The halftone's rows as a PBM raster: eight pixels a byte, the leftmost in the most
    significant bit, 1 for black (level 0); each row padded with 0 bits to a whole byte."""
    stride = (width + 7) // 8
    pad = 8 * stride - width
    out = bytearray()
    for start in range(0, len(halftone), width):
        row = halftone[start : start + width]
        bits = int("".join("1" if level == 0 else "0" for level in row) + "0" * pad, 2)
        out += bits.to_bytes(stride, "big")
    return bytes(out)


def dither(pgm: bytes) -> bytes:
    """Exactly the fsdither job's output for the input `pgm`."""
    image = read_pgm(pgm)
    halftone = floyd_steinberg(image)
    mse = format_mse(blurred_error(image, halftone), image.width * image.height)
    header = f"P4\n# mse={mse}\n{image.width} {image.height}\n".encode()
    return header + pack_pbm(halftone, image.width)


def read_pbm(output: bytes) -> Image:
    """The halftone in a fsdither output (a binary PBM) as grey levels, 0 or 255 a pixel,
    so it can be shown or written out as a PGM; ValueError if it is not one."""
    if output[:2] != b"P4":
        raise ValueError("not a binary PBM (P4)")
    try:
        width, pos = _read_field(output, 2, MAX_SIDE)
        height, pos = _read_field(output, pos, MAX_SIDE)
    except ValueError:
        raise ValueError("bad PBM header (width, height 1..65535)") from None
    stride = (width + 7) // 8
    if not (width and height) or pos >= len(output) or output[pos] not in _SPACE:
        raise ValueError("bad PBM header (width, height 1..65535)")
    raster = output[pos + 1 : pos + 1 + stride * height]
    if len(raster) < stride * height:
        raise ValueError("PBM raster is shorter than height * ceil(width / 8)")
    pixels = bytearray(width * height)
    for y in range(height):
        bits = int.from_bytes(raster[y * stride : (y + 1) * stride], "big") >> (8 * stride - width)
        row = f"{bits:0{width}b}"
        pixels[y * width : (y + 1) * width] = bytes(0 if bit == "1" else 255 for bit in row)
    return Image(width, height, bytes(pixels))


def quality(output: bytes) -> float:
    """The mean squared error a fsdither output carries in its comment line."""
    line = output.split(b"\n", 2)[1]
    if not line.startswith(b"# mse="):
        raise ValueError("not a fsdither output (no '# mse=' line)")
    return float(line[len(b"# mse=") :])


def sample_image(width: int, height: int, seed: int = 0) -> bytes:
    """A reproducible PGM: diagonal gradient, a bright disc and noise, so every level occurs."""
    rng = random.Random(seed)
    cx, cy, radius = width / 3, height / 2, min(width, height) / 3
    pixels = bytearray(width * height)
    for y in range(height):
        for x in range(width):
            level = 255 * (x + y) // max(width + height - 2, 1)
            if (x - cx) ** 2 + (y - cy) ** 2 < radius**2:
                level = 255 - level // 2
            pixels[y * width + x] = max(0, min(255, level + rng.randint(-24, 24)))
    return f"P5\n{width} {height}\n255\n".encode() + bytes(pixels)
