"""Console login and logout."""

from urllib.parse import urlsplit

from flask import current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user

from console.audit import record
from console.blueprints.auth import bp
from console.blueprints.auth.forms import LoginForm
from console.extensions import limiter
from console.security import authenticate, end_session, login_only, public, start_session
from console.timeutil import utcnow


def _safe_next(target: str | None) -> str:
    """Only same-site relative paths: never an open redirect."""
    if target and target.startswith("/") and not target.startswith("//") and not urlsplit(target).netloc:
        return target
    return url_for("core.dashboard")


def _login_limit() -> str:
    return current_app.config["LOGIN_RATE_LIMIT"]


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(_login_limit, methods=["POST"], deduct_when=lambda response: response.status_code == 401)
@public
def login():
    if current_user.is_authenticated and request.method == "GET":
        return redirect(_safe_next(request.args.get("next")))
    form = LoginForm(next=request.args.get("next", ""))
    if request.method == "POST" and form.validate_on_submit():
        admin = authenticate(form.email.data, form.password.data)
        if admin is not None:
            start_session(admin)
            admin.update(set__last_login_at=utcnow())
            record("auth.login", admin.email, actor=admin.email)
            return redirect(_safe_next(form.next.data))
        flash("That email and password do not match an active admin.", "error")
        return render_template("auth/login.html", form=form), 401
    if request.method == "POST":
        flash("Enter your email and password.", "error")
        return render_template("auth/login.html", form=form), 400
    return render_template("auth/login.html", form=form)


@bp.route("/logout", methods=["POST"])
@login_only
def logout():
    """Ends every session and bearer token of this admin, so a copied cookie stops working too."""
    admin = current_user._get_current_object()
    end_session(admin)
    record("auth.logout", admin.email, actor=admin.email)
    flash("You are signed out.", "info")
    return redirect(url_for("auth.login"))
