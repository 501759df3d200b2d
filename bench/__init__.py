"""Benchmarks. Each bench/bench_*.py has `main() -> list[Row]`; `python -m bench` runs them all.

Figures are ratios against an anchor measured in the same run on the same machine (machines here are
shared and noisy, so absolute numbers mean little; ratios measured side by side do)."""

from __future__ import annotations

import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Row:
    figure: str  # what was measured, e.g. "batch ingestion (events/s)"
    value: float  # our number
    anchor: str  # the baseline, e.g. "raw insert_many (events/s)"
    anchor_value: float
    target: str = ""  # e.g. ">= 0.6"
    higher_is_better: bool = True

    @property
    def ratio(self) -> float:
        return self.value / self.anchor_value if self.anchor_value else float("nan")


@dataclass
class EmbeddedServers:
    mongo_uri: str
    redis_url: str
    smtp_port: int | None
    maildir: Path
    tmp: Path


@contextmanager
def embedded_servers(name: str, *, smtp: bool = False):
    """SecantusDB and Redis (and, if asked, the SMTP sink) on free ports for one benchmark, stopped after."""
    from devtools import services

    tmp = Path(tempfile.mkdtemp(prefix=f"bench-{name}-"))
    started = [services.mongo(services.free_port(), ":memory:", tmp / "mongo.log").start(timeout=120),
               services.redis(services.free_port(), log_path=tmp / "redis.log").start()]
    if smtp:
        started.append(services.smtp(services.free_port(), tmp / "mailbox", tmp / "smtp.log").start())
    try:
        yield EmbeddedServers(f"mongodb://127.0.0.1:{started[0].port}/bench", f"redis://127.0.0.1:{started[1].port}/0",
                              started[2].port if smtp else None, tmp / "mailbox", tmp)
    finally:
        for service in reversed(started):
            service.stop()
        shutil.rmtree(tmp, ignore_errors=True)
