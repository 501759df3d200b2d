"""The features, one package each. Each exposes `init_app(app)`, which registers what the feature adds:
blueprints, navigation entries, dashboard widgets, member panels, seeders, migrations, optimize tasks, caches.

Imports run downward: a feature imports the kernel (`console.*`), never the other way round, and another
feature only through the functions that feature's docstring names. `tests/test_layout.py` enforces it.
"""

import importlib

FEATURES = ("auth", "communication", "core", "engagement", "hardening", "integration", "platform", "roles")


def register_all(app) -> None:
    for name in FEATURES:
        importlib.import_module(f"{__name__}.{name}").init_app(app)
