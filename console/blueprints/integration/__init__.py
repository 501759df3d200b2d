"""Connecting the platform: the "Install tracking" page for /static/track.js (CORS lives in console.cors).

Enters at pages.py; snippet.py builds the snippet a site pastes in. Stores nothing. Uses no other feature.
"""

from flask import Blueprint

from console.ui import NavItem, add_nav

bp = Blueprint("integration", __name__)


def init_app(app) -> None:
    from console.blueprints.integration import pages  # noqa: F401  (routes)

    app.register_blueprint(bp)
    add_nav(app, NavItem("Install tracking", "integration.install", "engagement.track", "System", "⌁", order=20))
