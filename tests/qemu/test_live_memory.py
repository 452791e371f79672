"""The live system's memory, read from the guest's process listing."""

from __future__ import annotations

from livecd.qemu.matrix import parse_processes


def test_the_memory_listing_leaves_jobs_and_its_own_helpers_out() -> None:
    listing = "\n".join(
        [
            "1 1468 218 init",
            "204 22224 11422 python3.11",
            "289 22060 10909 python3.11",
            "300 5000 4000 jail-loader",
            "301 1300 200 sed",
            "302 garbage",
        ]
    )
    use = parse_processes(listing)
    assert (use.processes, use.rss_kib, use.pss_kib) == (3, 45752, 22549)
    assert use.by_name == {"init": 218, "python3.11": 22331}
