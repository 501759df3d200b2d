"""Sign-in for people (session) and for programs (bearer tokens).

Enters at pages.py (/login, /logout, the two-factor pages) and api.py (/api/auth/token, /api/auth/me). The rules:
signin.py (sign in and out, issue a token: each audited), twofactor.py (TOTP, recovery codes, enrolment), limits.py
(failed-attempt limits and lockouts); password checks and sessions are the kernel's (console.security).
Stored on the kernel's `admins` and `api_tokens`. Uses no other feature.
"""

from flask import Blueprint

bp = Blueprint("auth", __name__, template_folder="../../templates")


def init_app(app) -> None:
    from console.blueprints.auth import api, pages  # noqa: F401  (routes)

    app.register_blueprint(bp)
    app.before_request(pages.enforce_enrolment)
