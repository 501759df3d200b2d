"""Extensions, created unbound and bound to the app in create_app()."""

from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_login import LoginManager
from flask_mail import Mail
from flask_principal import Principal
from flask_talisman import Talisman
from flask_wtf.csrf import CSRFProtect
from htmx_flask import Htmx

login_manager = LoginManager()
principal = Principal(use_sessions=False, skip_static=True)
mail = Mail()
csrf = CSRFProtect()
htmx = Htmx()
talisman = Talisman()
limiter = Limiter(key_func=get_remote_address, default_limits=[], headers_enabled=True)
