"""The reference jobs' C sources: the jail self-test and Floyd-Steinberg dithering."""

from __future__ import annotations

from pathlib import Path

JOBS_DIR = Path(__file__).resolve().parent
SELFTEST_SOURCE = JOBS_DIR / "selftest.c"
FSDITHER_SOURCE = JOBS_DIR / "fsdither.c"
