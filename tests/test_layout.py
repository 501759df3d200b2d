"""The layout's import rules (README, "Layout"): imports run downward, features meet only where they say.

- The kernel (`console/*.py`, `console/telemetry/`) never imports a feature (`console.blueprints.<feature>`).
  `console/jobs/` (old job paths, re-exports) and `console/blueprints/__init__.py` (the feature list) are
  the only modules above the features.
- A feature imports another feature only through the modules the other feature offers (ALLOWED below,
  also named in that feature's package docstring).
- Topic modules (the logic) never import the HTTP layer (`console.http`, `flask.request`): only routes
  (`api.py`, `pages.py`, `public.py`, `hooks.py`), forms and schemas do.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONSOLE = ROOT / "console"
ABOVE_FEATURES = {"console.blueprints", "console.jobs"}
# feature → modules of other features it may import (keep short; each is a named entry point)
ALLOWED = {
    "engagement": {"console.blueprints.communication.sending", "console.blueprints.communication.models",
                   "console.blueprints.communication.member_data"},
    "platform": {"console.blueprints.communication.sending", "console.blueprints.communication.models"},
    "core": {"console.blueprints.engagement.retention", "console.blueprints.engagement.campaigns"},
    "hardening": {"console.blueprints.communication.sending", "console.blueprints.communication.email_templates",
                  "console.blueprints.communication.models"},
}
# routes and what only routes use (forms, schemas, charts, rate-limit keys in limits.py)
HTTP_MODULES = {"api", "pages", "public", "hooks", "forms", "schemas", "charts", "limits", "__init__"}


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def _imports(path: Path):
    """(line, imported module, imported names) for every absolute import in the file."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module, [alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name, []


def _feature(module: str) -> str | None:
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[:2] == ["console", "blueprints"] else None


def _targets(module: str, names: list[str]) -> list[str]:
    """The modules an import statement reaches: `from a.b import c` may import the module a.b.c."""
    return [module] + [f"{module}.{name}" for name in names if (ROOT / Path(*module.split("."), name)).exists()
                       or (ROOT / Path(*module.split("."), f"{name}.py")).exists()]


SOURCES = sorted(CONSOLE.rglob("*.py"))


def test_the_rules_see_every_layer():
    modules = {_module_name(path) for path in SOURCES}
    assert {"console.security", "console.http", "console.blueprints.engagement.ingest",
            "console.blueprints.communication.sending", "console.jobs.mail"} <= modules


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_run_downward(path):
    module = _module_name(path)
    source_feature = _feature(module)
    wrong = []
    for line, imported, names in _imports(path):
        for target in _targets(imported, names):
            target_feature = _feature(target)
            if target_feature is None or target_feature == source_feature:
                continue
            if source_feature is None and not any(module == m or module.startswith(m + ".")
                                                  for m in ABOVE_FEATURES):
                wrong.append(f"line {line}: the kernel imports the feature module {target}")
            elif (source_feature is not None
                  and target != f"console.blueprints.{target_feature}"  # the package itself: its modules are checked
                  and not any(target == allowed or target.startswith(allowed + ".")
                              for allowed in ALLOWED.get(source_feature, ()))):
                wrong.append(f"line {line}: {source_feature} imports {target}, not an entry point it may use")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("path", [p for p in SOURCES if _feature(_module_name(p)) and p.stem not in HTTP_MODULES
                          and not p.stem.endswith("_pages")],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_logic_does_not_import_the_http_layer(path):
    wrong = [f"line {line}: imports {imported}" for line, imported, names in _imports(path)
             if imported == "console.http" or (imported == "flask" and "request" in names)]
    assert not wrong, "\n".join(wrong)


def test_a_kernel_import_of_a_feature_is_caught():
    """The rule itself can fail: a kernel module importing a feature is reported."""
    fake = CONSOLE / "_layout_probe.py"
    fake.write_text("from console.blueprints.engagement import ingest\n")
    try:
        with pytest.raises(AssertionError, match="kernel imports the feature module"):
            test_imports_run_downward(fake)
    finally:
        fake.unlink()
