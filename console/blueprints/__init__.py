"""Feature blueprints. Each package exposes `init_app(app)`, which registers its blueprint(s),
navigation entries and dashboard widgets; they are discovered, so features never edit a shared list."""

import importlib
import pkgutil


def register_all(app) -> None:
    for module in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if module.ispkg:
            importlib.import_module(f"{__name__}.{module.name}").init_app(app)
