"""Sign-in for people (session) and for programs (bearer tokens)."""

from flask import Blueprint

bp = Blueprint("auth", __name__, template_folder="../../templates")


def init_app(app) -> None:
    from console.blueprints.auth import api, pages  # noqa: F401  (routes)

    app.register_blueprint(bp)
    app.before_request(pages.enforce_enrolment)
