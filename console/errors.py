"""Errors: problem+json (RFC 9457) under /api, friendly pages elsewhere. Never a stack trace."""

from __future__ import annotations

import logging

import redis.exceptions
from flask import Response, json, render_template, request
from flask_limiter.errors import RateLimitExceeded
from flask_wtf.csrf import CSRFError
from pymongo.errors import AutoReconnect, ConnectionFailure, ServerSelectionTimeoutError
from werkzeug.exceptions import HTTPException, InternalServerError

log = logging.getLogger(__name__)

TITLES = {
    400: "Bad request", 401: "Authentication required", 403: "Permission denied", 404: "Not found",
    405: "Method not allowed", 409: "Conflict", 413: "Request body too large", 415: "Unsupported media type",
    422: "Validation failed", 429: "Too many requests", 500: "Internal server error",
    503: "Service unavailable",
}
PROBLEM_MIMETYPE = "application/problem+json"


class ApiError(Exception):
    """Raise anywhere in a request to answer with a problem document."""

    def __init__(self, status: int, detail: str = "", errors: list[dict] | None = None, title: str | None = None,
                 headers: dict | None = None):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors or []
        self.title = title or TITLES.get(status, "Error")
        self.headers = headers or {}


def validation_error(field: str, message: str, status: int = 422) -> ApiError:
    return ApiError(status, message, [{"field": field, "message": message}])


def problem(status: int, detail: str = "", errors: list | None = None, title: str | None = None,
            headers: dict | None = None) -> Response:
    body = {
        "type": "about:blank" if status != 422 else "/problems/validation",
        "title": title or TITLES.get(status, "Error"),
        "status": status,
        "detail": detail or title or TITLES.get(status, ""),
        "errors": errors or [],
    }
    response = Response(json.dumps(body), status=status, mimetype=PROBLEM_MIMETYPE)
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="api"'
    response.headers.update(headers or {})
    return response


def _is_api() -> bool:
    return request.path.startswith("/api/")


def _page(status: int, message: str, title: str | None = None) -> tuple[str, int]:
    return render_template("errors/page.html", status=status, title=title or TITLES.get(status, "Error"),
                           message=message), status


def _respond(status: int, detail: str, title: str | None = None, headers: dict | None = None, errors=None):
    if _is_api():
        return problem(status, detail, errors, title, headers)
    body, code = _page(status, detail, title)
    return Response(body, status=code, headers=headers, mimetype="text/html")


DETAILS = {
    401: "Sign in, or send a valid bearer token.",
    403: "Your role does not allow this. Ask a super admin if you need it.",
    404: "There is nothing here. The address may be wrong, or the item was removed.",
    405: "This method is not allowed here.",
    413: "The request body is larger than this endpoint accepts.",
    415: "Send the body as application/json.",
}


def init_app(app) -> None:
    @app.errorhandler(ApiError)
    def _api_error(error: ApiError):
        return _respond(error.status, error.detail, error.title, error.headers, error.errors)

    @app.errorhandler(CSRFError)
    def _csrf_error(error: CSRFError):
        return _respond(400, f"{error.description} Reload the page and try again.", "CSRF check failed")

    @app.errorhandler(RateLimitExceeded)
    def _rate_limited(error: RateLimitExceeded):
        headers = {"Retry-After": "60"}
        return _respond(429, f"Too many attempts ({error.description}). Wait a minute and try again.",
                        headers=headers)

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException):
        status = error.code or 500
        detail = DETAILS.get(status) if error.description == type(error).description else error.description
        headers = {k: v for k, v in error.get_headers() if k.lower() in {"allow", "retry-after"}}
        return _respond(status, detail or TITLES.get(status, ""), headers=headers)

    @app.errorhandler(ServerSelectionTimeoutError)
    @app.errorhandler(AutoReconnect)
    @app.errorhandler(ConnectionFailure)
    @app.errorhandler(redis.exceptions.ConnectionError)
    @app.errorhandler(redis.exceptions.TimeoutError)
    def _dependency_down(error):
        log.warning("dependency unavailable: %s", type(error).__name__)
        return _respond(503, "A backing service is unavailable right now. Retry in a few seconds.",
                        headers={"Retry-After": "5"})

    @app.errorhandler(InternalServerError)
    def _internal(error: InternalServerError):
        original = getattr(error, "original_exception", None)
        if original is not None:
            log.error("unhandled %s on %s %s", type(original).__name__, request.method, request.path,
                      exc_info=original)
        return _respond(500, "Something went wrong on our side. It has been recorded.")
