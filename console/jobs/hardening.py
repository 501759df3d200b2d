"""Old path of `console.blueprints.hardening.jobs` (jobs queued by the previous release)."""

from console.blueprints.hardening.jobs import optimize

__all__ = ["optimize"]
