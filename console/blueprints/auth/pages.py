"""Console login and logout, and the two-factor pages (the second step, enrolment, the account page, a reset
by a super admin that returns to the roles feature's `roles.admin_detail` page); their logic is in twofactor.py."""


from flask import flash, g, redirect, render_template, request, url_for
from flask_login import current_user

from console.blueprints.auth import bp, twofactor
from console.blueprints.auth.forms import LoginForm
from console.blueprints.auth.limits import failed_auth_limits
from console.blueprints.auth.signin import sign_in, sign_out
from console.errors import ApiError
from console.security import (
    authenticate,
    current_permissions,
    has_permission,
    login_only,
    permission_required,
    public,
)
from console.web import same_origin_path


def _safe_next(target: str | None) -> str:
    """Only a same-origin path: never an open redirect."""
    return target if target and same_origin_path(target) else url_for("core.dashboard")


@bp.route("/login", methods=["GET", "POST"])
@failed_auth_limits("LOGIN_RATE_LIMIT")
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
            sign_in(admin)
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
    sign_out(admin)
    flash("You are signed out.", "info")
    return redirect(url_for("auth.login"))


# --- two-factor sign-in (logic in twofactor.py) ----------------------------------------------------------

def _throttled_page(template: str, throttled: twofactor.Throttled, **context):
    minutes = max(1, round(throttled.retry_after / 60))
    flash(f"Too many wrong codes. Try again in about {minutes} minute{'s' if minutes != 1 else ''}.", "error")
    return render_template(template, **context), 429, {"Retry-After": str(throttled.retry_after)}


@bp.route("/login/2fa", methods=["GET", "POST"])
@public
def second_factor():
    """The second step: a code from the authenticator app or a recovery code."""
    admin, next_url = twofactor.pending()
    if admin is None:
        flash("Sign in with your email and password first (the code step expires after a few minutes).", "info")
        return redirect(url_for("auth.login"))
    if not twofactor.is_enrolled(admin):
        return redirect(url_for("auth.second_factor_enrol"))
    if request.method == "GET":
        return render_template("auth/second_factor.html", admin=admin)
    try:
        method = twofactor.check_code(admin, request.form.get("code"), via="console", ip=request.remote_addr)
    except twofactor.Throttled as throttled:
        return _throttled_page("auth/second_factor.html", throttled, admin=admin)
    if method is None:
        flash("That code is not valid (or was already used). Enter the current code.", "error")
        return render_template("auth/second_factor.html", admin=admin), 401
    twofactor.complete_sign_in(admin, method)
    if method == "recovery":
        flash(f"Recovery code used: {len(admin.recovery_codes) - 1} left. Set up again from your account page "
              "if your phone is gone.", "info")
    return redirect(_safe_next(next_url))


@bp.route("/login/2fa/enrol", methods=["GET", "POST"])
@public
def second_factor_enrol():
    """An admin whose role requires 2FA and who has none sets it up before the session is signed in."""
    admin, next_url = twofactor.pending()
    if admin is None:
        flash("Sign in with your email and password first (the code step expires after a few minutes).", "info")
        return redirect(url_for("auth.login"))
    if twofactor.is_enrolled(admin):
        return redirect(url_for("auth.second_factor"))
    twofactor.start_enrolment(admin)
    context = {"admin": admin, "setup": twofactor.provisioning(admin)}
    if request.method == "GET":
        return render_template("auth/enrol_login.html", **context)
    try:
        codes = twofactor.confirm_enrolment(admin, request.form.get("code", ""), via="console", ip=request.remote_addr)
    except twofactor.Throttled as throttled:
        return _throttled_page("auth/enrol_login.html", throttled, **context)
    if codes is None:
        flash("That code does not match. Check the time on your phone and enter the current code.", "error")
        return render_template("auth/enrol_login.html", **context), 401
    twofactor.complete_sign_in(admin, "totp")
    return render_template("auth/recovery_codes.html", codes=codes, next_url=_safe_next(next_url))


# --- the signed-in admin's own account ---------------------------------------------------------------------

@bp.route("/account/2fa")
@login_only
def account_2fa():
    admin = current_user._get_current_object()
    status = twofactor.status(admin)
    setup = twofactor.provisioning(admin) if status["pending"] else None
    return render_template("auth/account_2fa.html", status=status, setup=setup)


@bp.route("/account/2fa/enrol", methods=["POST"])
@login_only
def account_2fa_enrol():
    admin = current_user._get_current_object()
    if twofactor.is_enrolled(admin):
        flash("Two-factor sign-in is already on. To change phones, choose “Set up again” with a current code.",
              "info")
    else:
        twofactor.start_enrolment(admin)
    return redirect(url_for("auth.account_2fa"))


@bp.route("/account/2fa/confirm", methods=["POST"])
@login_only
def account_2fa_confirm():
    admin = current_user._get_current_object()
    if not admin.totp_secret or twofactor.is_enrolled(admin):
        return redirect(url_for("auth.account_2fa"))
    try:
        codes = twofactor.confirm_enrolment(admin, request.form.get("code", ""), via="console", ip=request.remote_addr)
    except twofactor.Throttled as throttled:
        flash(f"Too many wrong codes. Try again in {throttled.retry_after} seconds.", "error")
        return redirect(url_for("auth.account_2fa"))
    if codes is None:
        flash("That code does not match. Check the time on your phone and enter the current code.", "error")
        return redirect(url_for("auth.account_2fa"))
    return render_template("auth/recovery_codes.html", codes=codes, next_url=url_for("auth.account_2fa"))


@bp.route("/account/2fa/disable", methods=["POST"])
@login_only
def account_2fa_disable():
    """Turn 2FA off, or start over with a new secret ("reenrol"), after re-entering a current code."""
    admin = current_user._get_current_object()
    again = request.form.get("action") == "reenrol"
    if not twofactor.is_enrolled(admin):
        return redirect(url_for("auth.account_2fa"))
    if not again and twofactor.is_required(admin):
        flash("Your role requires two-factor sign-in: choose “Set up again” to move it to a new phone.", "error")
        return redirect(url_for("auth.account_2fa"))
    try:
        method = twofactor.check_code(admin, request.form.get("code"), via="console", ip=request.remote_addr)
    except twofactor.Throttled as throttled:
        flash(f"Too many wrong codes. Try again in {throttled.retry_after} seconds.", "error")
        return redirect(url_for("auth.account_2fa"))
    if method is None:
        flash("That code is not valid (or was already used). Nothing changed.", "error")
        return redirect(url_for("auth.account_2fa"))
    twofactor.disable(admin, actor=admin.email)
    if again:
        twofactor.start_enrolment(admin)
        flash("Scan the new QR code and enter a code to finish. The old codes no longer work.", "info")
    else:
        flash("Two-factor sign-in is off. Your recovery codes no longer work.", "success")
    return redirect(url_for("auth.account_2fa"))


# --- another admin ---------------------------------------------------------------------------------------

@bp.route("/admins/<admin_id>/2fa/reset", methods=["POST"])
@permission_required("roles.assign")
def reset_2fa(admin_id: str):
    try:
        target = twofactor.reset_for(admin_id, current_user._get_current_object(), current_permissions())
    except ApiError as error:
        if error.status == 404:
            raise
        flash(error.detail, "error")
    else:
        flash(f"Two-factor sign-in reset for {target.email}: they set it up again at their next sign-in.", "success")
    return redirect(url_for("roles.admin_detail", admin_id=admin_id))


def enforce_enrolment():
    """before_request: a session whose admin must use 2FA but has none reaches only the enrolment pages."""
    if g.get("auth_method") != "session" or not current_user.is_authenticated:
        return None
    if not twofactor.must_enrol_first(current_user, request.endpoint):
        return None
    if request.path.startswith("/api/"):
        raise ApiError(403, "Your role requires two-factor sign-in: set it up on your account page first.")
    flash("Your role requires two-factor sign-in. Set it up to continue.", "info")
    return redirect(url_for("auth.account_2fa"))


@bp.app_context_processor
def _twofactor_context():
    return {"twofactor_status": twofactor.status, "can_reset_2fa": has_permission("roles.assign")}
