"""Old path of `console.blueprints.communication.jobs` (jobs queued by the previous release)."""

from console.blueprints.communication.jobs import deliver, reconcile

__all__ = ["deliver", "reconcile"]
