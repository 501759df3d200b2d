"""Pages for the admin lifecycle: invite, resend, revoke, deactivate, reactivate; accept and reset by link."""

from __future__ import annotations

from flask import current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user

from console.blueprints.roles import bp, lifecycle, manage
from console.errors import ApiError
from console.extensions import limiter
from console.security import permission_required, public


def _actor():
    return current_user._get_current_object()


@bp.route("/admins/invite", methods=["POST"])
@permission_required("roles.assign")
def invite_form():
    try:
        admin = lifecycle.invite(_actor(), request.form.get("email", "")[:254], request.form.getlist("roles"),
                                 request.form.get("name", "").strip()[:200] or None)
    except ApiError as error:
        flash(f"Could not invite: {error.detail}", "error")
        return redirect(url_for("roles.admins"))
    flash(f"Invitation sent to {admin['email']}; the link works for {lifecycle.INVITE_HOURS} hours.", "success")
    return redirect(url_for("roles.admin_detail", admin_id=admin["id"]))


@bp.route("/admins/<admin_id>/lifecycle", methods=["POST"])
@permission_required("roles.assign")
def lifecycle_form(admin_id: str):
    admin = manage.get_admin(admin_id)
    action = request.form.get("action")
    try:
        if action == "deactivate":
            lifecycle.set_active(_actor(), admin, False)
            flash(f"{admin.email} is deactivated; their sessions and tokens ended.", "success")
        elif action == "activate":
            lifecycle.set_active(_actor(), admin, True)
            flash(f"{admin.email} is active again.", "success")
        elif action == "resend":
            lifecycle.resend_invite(_actor(), admin)
            flash(f"Invitation sent again to {admin.email}.", "success")
        elif action == "revoke":
            lifecycle.revoke_invite(_actor(), admin)
            flash(f"The invitation of {admin.email} is revoked.", "success")
            return redirect(url_for("roles.admins"))
        else:
            flash("Unknown action.", "error")
    except ApiError as error:
        flash(error.detail, "error")
    return redirect(url_for("roles.admin_detail", admin_id=admin_id))


def _password_page(check, apply, title: str, token: str):
    admin = check(token)
    if request.method == "POST":
        password = request.form.get("password", "")[:200]
        if password != request.form.get("confirm", "")[:200]:
            flash("The two passwords differ.", "error")
        else:
            try:
                apply(token, password)
            except ApiError as error:
                flash(error.detail, "error")
            else:
                flash("Your password is set. Sign in with it.", "success")
                return redirect(url_for("auth.login"))
    return render_template("roles/set_password.html", admin=admin, title=title), 200


def _link_limit() -> str:
    return current_app.config.get("LOGIN_RATE_LIMIT", "10 per minute")


@bp.route("/invite/<token>", methods=["GET", "POST"])
@limiter.limit(_link_limit, methods=["POST"])
@public
def accept_invite(token: str):
    return _password_page(lifecycle.check_invite, lifecycle.accept_invite, "Welcome: choose your password", token)


@bp.route("/password/reset/<token>", methods=["GET", "POST"])
@limiter.limit(_link_limit, methods=["POST"])
@public
def reset_password(token: str):
    return _password_page(lifecycle.check_reset, lifecycle.reset_password, "Choose a new password", token)


@bp.route("/password/forgot", methods=["GET", "POST"])
@limiter.limit(_link_limit, methods=["POST"])
@public
def forgot_password():
    if request.method == "POST":
        lifecycle.request_reset(request.form.get("email", ""))
        flash("If that address belongs to an active admin, a reset link is on its way.", "info")
        return redirect(url_for("auth.login"))
    return render_template("roles/forgot.html")
