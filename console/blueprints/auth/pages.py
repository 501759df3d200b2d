"""Console login and logout."""

from urllib.parse import unquote, urlsplit

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user, login_user, logout_user

from console.audit import record
from console.blueprints.auth import bp
from console.blueprints.auth.forms import LoginForm
from console.blueprints.auth.limits import failed_auth_limits
from console.security import authenticate, login_only, public
from console.timeutil import utcnow


def _safe_next(target: str | None) -> str:
    """Only a same-origin path: never an open redirect."""
    return target if target and same_origin_path(target) else url_for("core.dashboard")


def same_origin_path(target: str) -> bool:
    """A path on this site however a browser reads it: backslashes count as slashes, tabs and newlines are
    dropped, percent-escapes are decoded; anything that could name another host (`//`, `/\\`, a scheme) fails."""
    if len(target) > 2048 or any(ord(ch) < 0x21 or ord(ch) == 0x7F or ch == "\\" for ch in target):
        return False
    decoded = target
    for _ in range(3):
        decoded = unquote(decoded)
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in decoded):
        return False
    decoded = decoded.replace("\\", "/")
    if not decoded.startswith("/") or decoded.startswith("//"):
        return False
    parts = urlsplit(decoded)
    return not parts.scheme and not parts.netloc


@bp.route("/login", methods=["GET", "POST"])
@failed_auth_limits("LOGIN_RATE_LIMIT")
@public
def login():
    if current_user.is_authenticated and request.method == "GET":
        return redirect(_safe_next(request.args.get("next")))
    form = LoginForm(next=request.args.get("next", ""))
    if request.method == "POST" and form.validate_on_submit():
        admin = authenticate(form.email.data, form.password.data)
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
