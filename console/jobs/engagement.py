"""Old path of `console.blueprints.engagement.jobs` (jobs queued by the previous release)."""

from console.blueprints.engagement.jobs import rebuild_rollups, warm_caches

__all__ = ["rebuild_rollups", "warm_caches"]
