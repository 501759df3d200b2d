"""The layout's import rules (README, "Layout"): imports run downward, features meet only where they say.

- The kernel (`console/*.py`, `console/telemetry/`) never imports a feature (`console.blueprints.<feature>`).
  `console/jobs/` (old job paths, re-exports) and `console/blueprints/__init__.py` (the feature list) are
  the only modules above the features.
- A feature imports another feature only through the functions the other feature offers, imported by name
  (ALLOWED below, also named in both features' package docstrings).
- No route module (`api.py`, `pages.py`, `*_pages.py`) writes an audit entry: the operation it calls does.
- Topic modules (the logic) never import the HTTP layer (`console.http`, `flask.request`): only routes
  (`api.py`, `pages.py`, `public.py`, `hooks.py`), forms and schemas do.
- A page (`pages.py`, `*_pages.py`) reads its query string through a model (`console.web.query_args` with the
  API's query model, or a subclass of it in the page module), never `request.args` by hand.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONSOLE = ROOT / "console"
ABOVE_FEATURES = {"console.blueprints", "console.jobs"}
# feature → modules of other features it may import (keep short; each is a named entry point)
COMMUNICATION = "console.blueprints.communication"
# feature → {module of another feature: the functions it may import from it} (each named in both package docstrings)
ALLOWED = {
    "engagement": {f"{COMMUNICATION}.sending": {"create_batch", "batch_status", "deliverability"},
                   f"{COMMUNICATION}.email_templates": {"find_template", "sendable_templates"},
                   f"{COMMUNICATION}.member_data": {"export_member", "erase_member"}},
    "platform": {COMMUNICATION: {"notify"}, f"{COMMUNICATION}.sending": {"create_batch"}},
    "core": {"console.blueprints.engagement.retention": {"retention"},
             "console.blueprints.engagement.campaigns": {"recent_campaign_reports"}},
    "hardening": {f"{COMMUNICATION}.sending": {"send_email"}, f"{COMMUNICATION}.email_templates": {"ensure_template"}},
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
        targets = [t for t in _targets(imported, names) if _feature(t) not in (None, source_feature)]
        if not targets:
            continue
        if source_feature is None:
            if not any(module == m or module.startswith(m + ".") for m in ABOVE_FEATURES):
                wrong.append(f"line {line}: the kernel imports the feature module {targets[-1]}")
            continue
        offered = ALLOWED.get(source_feature, {}).get(imported)
        if offered is None or not names or not set(names) <= offered:
            wrong.append(f"line {line}: {source_feature} imports {', '.join(names) or imported} from {imported}, "
                         f"not a function it may use (ALLOWED)")
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


def test_a_feature_importing_more_than_the_named_functions_is_caught(tmp_path):
    """A module of another feature, or a function it does not offer, is reported; the offered ones pass."""
    probe = CONSOLE / "blueprints" / "engagement" / "_layout_probe.py"
    probe.write_text("from console.blueprints.communication.sending import create_batch\n")
    try:
        test_imports_run_downward(probe)
        for source in ("from console.blueprints.communication import models\n",
                       "from console.blueprints.communication.sending import create_batch, retry_email\n",
                       "import console.blueprints.communication.sending\n"):
            probe.write_text(source)
            with pytest.raises(AssertionError, match="not a function it may use"):
                test_imports_run_downward(probe)
    finally:
        probe.unlink()


ROUTE_MODULES = [p for p in SOURCES if _feature(_module_name(p)) and (p.stem in {"api", "pages"}
                                                                      or p.stem.endswith("_pages"))]


def _audit_calls(path: Path) -> list[str]:
    """Calls of `record(...)` imported from console.audit, or of `audit.record(...)`."""
    tree = ast.parse(path.read_text())
    recorders = {alias.asname or alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                 and node.module == "console.audit" for alias in node.names if alias.name == "record"}
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if (isinstance(func, ast.Name) and func.id in recorders) or (
                isinstance(func, ast.Attribute) and func.attr == "record" and isinstance(func.value, ast.Name)
                and func.value.id == "audit"):
            found.append(f"line {node.lineno}: {ast.unparse(func)}(...)")
    return found


def test_route_modules_are_seen():
    names = {str(p.relative_to(ROOT)) for p in ROUTE_MODULES}
    assert {"console/blueprints/communication/api.py", "console/blueprints/auth/pages.py",
            "console/blueprints/platform/moderation_pages.py"} <= names


@pytest.mark.parametrize("path", ROUTE_MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_views_do_not_write_audit_entries(path):
    """The operation a view calls writes the audit entry (README, "Layout"), so every caller gets it once."""
    found = _audit_calls(path)
    assert not found, "views call audit.record; move it into the operation:\n" + "\n".join(found)


def test_an_audit_call_in_a_view_is_caught(tmp_path):
    probe = tmp_path / "pages.py"
    for source in ("from console.audit import record\nrecord('x', 'y')\n",
                   "from console import audit\naudit.record('x', 'y')\n",
                   "from console.audit import record as write\nwrite('x', 'y')\n"):
        probe.write_text(source)
        assert _audit_calls(probe), source
    probe.write_text("from console import audit\naudit.entries()\nrecords = []\nrecords.append(1)\n")
    assert not _audit_calls(probe)


PAGE_MODULES = [p for p in ROUTE_MODULES if p.stem != "api"]
# (module, query argument) a page may read by hand, and why
HAND_READ_ARGS = {("console/blueprints/auth/pages.py", "next")}  # the login redirect target, checked by _safe_next


def _hand_read_args(path: Path) -> list[str]:
    """Uses of `request.args` outside a `model_validate(...)` call, other than HAND_READ_ARGS."""
    tree = ast.parse(path.read_text())
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    in_model = {id(inner) for node in ast.walk(tree) if isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute) and node.func.attr == "model_validate"
                for inner in ast.walk(node)}
    name = str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and node.attr == "args" and isinstance(node.value, ast.Name)
                and node.value.id == "request") or id(node) in in_model:
            continue
        use, call = parents.get(node), None
        if isinstance(use, ast.Attribute) and use.attr == "get" and isinstance(parents.get(use), ast.Call):
            call = parents[use]
        key = call.args[0].value if call and call.args and isinstance(call.args[0], ast.Constant) else None
        if (name, key) not in HAND_READ_ARGS or any(k.arg == "type" for k in call.keywords):
            found.append(f"line {node.lineno}: {ast.unparse(call or use or node)}")
    return found


def test_page_modules_are_seen():
    names = {str(p.relative_to(ROOT)) for p in PAGE_MODULES}
    assert {"console/blueprints/engagement/pages.py", "console/blueprints/hardening/pages.py",
            "console/blueprints/platform/content_pages.py", "console/blueprints/roles/pages.py"} <= names


@pytest.mark.parametrize("path", PAGE_MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_pages_read_query_strings_through_a_model(path):
    """A page reads `?hours=` with the API's model (console.web.query_args): what the API refuses the page shows
    at its default, instead of clamping, 500ing or drifting from the API's rules."""
    found = _hand_read_args(path)
    assert not found, "pages read request.args by hand; use console.web.query_args(Model):\n" + "\n".join(found)


def test_a_query_string_read_by_hand_is_caught(tmp_path):
    probe = tmp_path / "pages.py"
    for source in ("from flask import request\nhours = int(request.args.get('hours', 24))\n",
                   "from flask import request\ncursor = request.args.get('cursor') or None\n",
                   "from flask import request\nnew = request.args.get('new', type=int)\n",
                   "from flask import request\nday = date.fromisoformat(request.args['from'])\n",
                   "from flask import request\nwanted = 'q' in request.args\n",
                   "from htmx_flask import request\nnext_ = request.args.get('next', type=str)\n"):
        probe.write_text(source)
        assert _hand_read_args(probe), source
    probe.write_text("from flask import request\nquery = query_args(HoursQuery)\n"
                     "drill = DrillQuery.model_validate({k: v for k, v in request.args.items() if v})\n")
    assert not _hand_read_args(probe)
