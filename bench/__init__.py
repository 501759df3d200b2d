"""Benchmarks. Each bench/bench_*.py has `main() -> list[Row]`; `python -m bench` runs them all.

Figures are ratios against an anchor measured in the same run on the same machine (machines here are
shared and noisy, so absolute numbers mean little; ratios measured side by side do)."""

from __future__ import annotations

from dataclasses import dataclass


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
