"""Resolver cost, as ratios against a baseline measured in the same run.

Baseline: reading and SHA-256-hashing the cached files directly (the least any verified cache
can do). Measured: a cold resolve (one batch request + downloads over an in-process
transport), a warm resolve of exact versions (no network, every file re-verified), and a warm
resolve of unpinned references (one batch request, no download).

Run: ``python -m tests.benchmarks.bench_resolver [N]`` (N references, default 64).
"""

from __future__ import annotations

import hashlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

from pseudoword.runtime.resolver import Resolver
from tests.unit.resolver_fakes import FakeRegistry, make_embedding


def timed(fn, repeat: int = 5) -> float:
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main(n: int = 64) -> None:
    fake = FakeRegistry()
    for i in range(n):
        fake.add(f"bench:m{i}@1", make_embedding(i, "sdxl" if i % 4 == 0 else "sd1", n=8))
    pinned = [f"bench:m{i}@1" for i in range(n)]
    unpinned = [f"bench:m{i}" for i in range(n)]

    def cold() -> None:
        with tempfile.TemporaryDirectory() as tmp, Resolver(fake.client(), cache_dir=tmp, offline=False) as r:
            r.resolve(pinned)

    with tempfile.TemporaryDirectory() as tmp:
        resolver = Resolver(fake.client(), cache_dir=tmp, offline=False)
        paths = [item.path for item in resolver.resolve(pinned)]

        def baseline() -> None:
            for path in paths:
                hashlib.sha256(Path(path).read_bytes()).hexdigest()

        base = timed(baseline)
        results = {
            "cold (1 batch request + downloads)": timed(cold),
            "warm, exact versions (no network)": timed(lambda: resolver.resolve(pinned)),
            "warm, unpinned (1 batch request)": timed(lambda: resolver.resolve(unpinned)),
        }
    print(f"{n} references; baseline read+sha256 of the cached files: {base * 1e3:.2f} ms")
    for name, seconds in results.items():
        print(f"  {name:40s} {seconds * 1e3:8.2f} ms  = {seconds / base:6.1f} x baseline")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 64)
