"""Public, token-signed routes reached from emails: open pixel, click redirect, unsubscribe, preference center."""

import base64

from flask import Blueprint, Response, abort, redirect, render_template, request

from console.blueprints.communication import preference_center, tracking
from console.errors import ApiError
from console.security import csrf_exempt, public

bp = Blueprint("tracking", __name__)
PIXEL = base64.b64decode("R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7")
NO_STORE = {"Cache-Control": "no-store, no-cache, must-revalidate, max-age=0", "Pragma": "no-cache",
            "X-Robots-Tag": "noindex, nofollow"}


def _visitor() -> tracking.Visitor:
    return tracking.Visitor(request.headers.get("User-Agent", ""), request.remote_addr or "")


@bp.route("/t/o/<token>")
@public
def open_pixel(token: str):
    """A 1x1 GIF; counts an (approximate) open when the token is genuine."""
    found = tracking.read_token("open", token)
    if found is None or not tracking.record_open(found[0], _visitor()):
        abort(404)
    return Response(PIXEL, mimetype="image/gif", headers=NO_STORE)


@bp.route("/t/c/<token>")
@public
def click(token: str):
    """Redirect only to the URL recorded for this email's link; anything else is 404 (no open redirect)."""
    found = tracking.read_token("click", token)
    if found is None or found[1] is None:
        abort(404)
    target = tracking.click_target(found[0], found[1], _visitor())
    if target is None:
        abort(404)
    response = redirect(target, code=302)
    response.headers.update(NO_STORE)
    return response


@bp.route("/u/<token>", methods=["GET", "POST"])
@csrf_exempt
@public
def unsubscribe(token: str):
    """GET shows a confirmation (link scanners must not unsubscribe anyone); POST unsubscribes (RFC 8058)."""
    found = tracking.read_token("unsubscribe", token)
    email = tracking.email_for_unsubscribe(found[0]) if found else None
    if email is None:
        abort(404)
    if request.method == "POST":
        result = tracking.unsubscribe(email)
        return render_template("communication/unsubscribe.html", email=email, done=True, result=result,
                               token=token), 200, NO_STORE
    return render_template("communication/unsubscribe.html", email=email, done=False, token=token), 200, NO_STORE


@bp.route("/p/<token>", methods=["GET", "POST"])
@public
def preference_center_page(token: str):
    """The member's preference center (no login: the signed link from any email is the key). CSRF-protected."""
    who = preference_center.read_token(token)
    if who is None:
        abort(404)
    message, errors, status = None, [], 200
    if request.method == "POST":
        try:
            message = preference_center.apply(who, request.form)
        except ApiError as error:
            errors, status = error.errors or [{"field": "", "message": error.detail}], 422
    return render_template("communication/preference_center.html", token=token, view=preference_center.view(who),
                           message=message, errors=errors), status, NO_STORE
