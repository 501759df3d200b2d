"""One exception type for every error the console answers (problem+json, RFC 9457)."""

from __future__ import annotations

from community_console_client.models import FieldError


class ConsoleError(Exception):
    """The console refused or failed a request.

    `status` is the HTTP status, `title` and `detail` the problem's text, `errors` the field errors
    (`FieldError(field, message)`), `retry_after` the seconds the console asked to wait (429/503), if any.
    """

    def __init__(self, status: int | None, title: str, detail: str = "", errors: list[FieldError] | None = None,
                 *, type: str = "about:blank", retry_after: float | None = None, body: object = None):
        self.status = status
        self.title = title
        self.detail = detail
        self.errors = errors or []
        self.type = type
        self.retry_after = retry_after
        self.body = body
        super().__init__(self._message())

    def _message(self) -> str:
        text = f"{self.status} {self.title}" if self.status else self.title
        if self.detail and self.detail != self.title:
            text += f": {self.detail}"
        if self.errors:
            text += " (" + "; ".join(f"{e.field}: {e.message}" for e in self.errors) + ")"
        return text

    @property
    def field_errors(self) -> dict[str, str]:
        """Field → message, for showing next to a form."""
        return {error.field: error.message for error in self.errors}


class ConsoleUnavailable(ConsoleError):
    """No answer at all (connection refused, reset or timed out) after the retries allowed."""
