"""Python client for the Community Console API (standard library only)."""

from community_console_client.client import Console
from community_console_client.errors import ConsoleError, ConsoleUnavailable
from community_console_client.models import (
    BatchResult,
    BatchStatus,
    EmailResult,
    Event,
    FieldError,
    NotifyResult,
    Recipient,
    Rejected,
    TrackResult,
)

__version__ = "0.1.0"
__all__ = ["BatchResult", "BatchStatus", "Console", "ConsoleError", "ConsoleUnavailable", "EmailResult", "Event",
           "FieldError", "NotifyResult", "Recipient", "Rejected", "TrackResult", "__version__"]
