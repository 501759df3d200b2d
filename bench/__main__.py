"""Run every benchmark module under bench/ and print one table; append it to bench/RESULTS.md."""

from __future__ import annotations

import importlib
import os
import pkgutil
import platform
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    return f"{platform.node()} · {os.cpu_count()} cores · {cpu} · Python {platform.python_version()}"


def _table(rows) -> str:
    lines = ["| figure | value | anchor | anchor value | ratio | target |", "| --- | ---: | --- | ---: | ---: | --- |"]
    for row in rows:
        lines.append(f"| {row.figure} | {row.value:,.2f} | {row.anchor} | {row.anchor_value:,.2f} | "
                     f"{row.ratio:.2f} | {row.target} |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    only = set(argv)
    rows = []
    for module in sorted(m.name for m in pkgutil.iter_modules([str(HERE)]) if m.name.startswith("bench_")):
        if only and module not in only and module.removeprefix("bench_") not in only:
            continue
        print(f"== {module}", flush=True)
        started = time.perf_counter()
        rows.extend(importlib.import_module(f"bench.{module}").main())
        print(f"   done in {time.perf_counter() - started:.0f}s", flush=True)
    table = _table(rows)
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    report = f"\n## {stamp}\n\n{_machine()}\n\n{table}\n"
    print(report)
    results = HERE / "RESULTS.md"
    if not results.exists():
        results.write_text("# Benchmark results\n\nEach run appends a table: figures and anchors measured in "
                           "the same run, so the ratio is what to compare across runs.\n")
    with results.open("a") as out:
        out.write(report)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
