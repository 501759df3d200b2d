"""The Install tracking page."""

from flask import render_template

from console.blueprints.integration import bp, snippet
from console.security import permission_required


@bp.route("/integration/tracking")
@permission_required("engagement.track")
def install():
    key = snippet.tracking_key()
    return render_template("integration/install.html", key=key, lines=snippet.install_lines(key) if key else [],
                           console_origin=snippet.console_origin(), origins=snippet.allowed_origins(),
                           script_url=snippet.console_origin() + snippet.TRACK_PATH)
