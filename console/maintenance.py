"""Maintenance tasks and caches that features register; the hardening feature's optimize job runs them.

A feature calls `add_task` / `add_cache` / `add_health_probe` in its `init_app`, as it registers nav entries and
widgets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from flask import current_app


@dataclass(frozen=True)
class Task:
    name: str
    title: str
    destructive: bool
    run: Callable[[dict], dict]  # options → result summary; raises on failure
    order: int = 100


@dataclass(frozen=True)
class Cache:
    """Derived data that may be dropped at any time: `clear()` → documents deleted."""

    name: str
    clear: Callable[[], int]


def add_health_probe(app, name: str, probe: Callable[[], dict]) -> None:
    """A check of the comprehensive health answer: `probe()` → {"status": "UP" | "DEGRADED" | "DOWN", ...}."""
    app.extensions.setdefault("health_probes", {})[name] = probe


def health_probes() -> dict[str, Callable[[], dict]]:
    return dict(current_app.extensions.get("health_probes", {}))


def add_task(app, task: Task) -> None:
    app.extensions.setdefault("maintenance_tasks", {})[task.name] = task


def add_cache(app, cache: Cache) -> None:
    app.extensions.setdefault("maintenance_caches", {})[cache.name] = cache


def tasks() -> dict[str, Task]:
    """Registered tasks by name, in display order."""
    registered = current_app.extensions.get("maintenance_tasks", {})
    return {task.name: task for task in sorted(registered.values(), key=lambda t: (t.order, t.name))}


def caches() -> list[Cache]:
    return sorted(current_app.extensions.get("maintenance_caches", {}).values(), key=lambda c: c.name)
