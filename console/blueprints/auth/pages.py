"""Console login and logout."""

from urllib.parse import urlsplit

from flask import current_app, flash, redirect, render_template, request, url_for
from flask_login import current_user, login_user, logout_user

from console.audit import record
from console.blueprints.auth import bp, twofactor
from console.blueprints.auth.forms import LoginForm
from console.extensions import limiter
from console.security import authenticate, login_only, public
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
        if admin is not None and twofactor.second_step_needed(admin):
            return twofactor.begin_second_step(admin, form.next.data)  # not signed in until the code step
        if admin is not None:
            login_user(admin)
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
    logout_user()
    flash("You are signed out.", "info")
    return redirect(url_for("auth.login"))
