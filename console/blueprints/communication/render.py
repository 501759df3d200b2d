"""Sandboxed template rendering: HTML with autoescape, subject and text without; plain data only."""

from __future__ import annotations

import html
import re
from functools import lru_cache
from html.parser import HTMLParser

from jinja2 import ChainableUndefined, TemplateError, TemplateSyntaxError, meta, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from console.errors import ApiError

FIELDS = ("subject", "html_body", "text_body")
# Names a template must never reach: Jinja's own helpers that expose objects beyond plain data.
FORBIDDEN_NAMES = {"self", "lipsum", "cycler", "joiner", "namespace", "range", "dict", "config", "request",
                   "session", "g", "url_for", "get_flashed_messages", "loop_controls"}
FORBIDDEN_FILTERS = {"attr", "format", "xmlattr", "tojson", "pprint"}
FORBIDDEN_ATTRS = {"format", "format_map", "mro", "func_globals", "gi_frame", "f_globals", "im_func"}
MAX_OUTPUT = 512 * 1024


class RenderError(Exception):
    """A template failed to render; `errors` are API error items."""

    def __init__(self, errors: list[dict]):
        super().__init__("; ".join(item["message"] for item in errors))
        self.errors = errors


def _env(autoescape: bool) -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(autoescape=autoescape, undefined=ChainableUndefined, trim_blocks=True,
                                        lstrip_blocks=True)
    env.globals.clear()
    for name in FORBIDDEN_FILTERS:
        env.filters.pop(name, None)
    return env


HTML_ENV = _env(autoescape=True)
TEXT_ENV = _env(autoescape=False)


def _env_for(field: str) -> ImmutableSandboxedEnvironment:
    return HTML_ENV if field == "html_body" else TEXT_ENV


def _unsafe_nodes(tree: nodes.Template) -> list[tuple[int, str]]:
    """Constructs that reach for Python internals; rejected at save time, before anything runs."""
    found = []
    for node in tree.find_all((nodes.Getattr, nodes.Getitem, nodes.Filter, nodes.Name, nodes.Test)):
        if isinstance(node, nodes.Getattr) and (node.attr.startswith("_") or node.attr in FORBIDDEN_ATTRS):
            found.append((node.lineno, f"access to attribute {node.attr!r} is not allowed"))
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str) \
                and (node.arg.value.startswith("_") or node.arg.value in FORBIDDEN_ATTRS):
            found.append((node.lineno, f"access to item {node.arg.value!r} is not allowed"))
        elif isinstance(node, nodes.Filter) and node.name in FORBIDDEN_FILTERS:
            found.append((node.lineno, f"the filter {node.name!r} is not allowed in email templates"))
        elif isinstance(node, nodes.Name) and node.name in FORBIDDEN_NAMES:
            found.append((node.lineno, f"the name {node.name!r} is not available in email templates"))
    for node in tree.find_all((nodes.Extends, nodes.Include, nodes.Import, nodes.FromImport)):
        found.append((node.lineno, "templates cannot include, import or extend other templates"))
    return found


def check_sources(sources: dict[str, str | None]) -> list[str]:
    """Parse every field; raise ApiError(422) with the line on bad syntax or unsafe constructs.

    Returns the variables the template uses."""
    errors, variables = [], set()
    for field in FIELDS:
        source = sources.get(field)
        if not source:
            continue
        env = _env_for(field)
        try:
            tree = env.parse(source)
        except TemplateSyntaxError as error:
            errors.append({"field": field, "line": error.lineno,
                           "message": f"line {error.lineno}: {error.message}"})
            continue
        unsafe = _unsafe_nodes(tree)
        for line, message in unsafe:
            errors.append({"field": field, "line": line, "message": f"line {line}: {message}"})
        if unsafe:
            continue
        try:
            variables |= meta.find_undeclared_variables(tree)  # compiles: unknown filters and tests fail here
        except TemplateSyntaxError as error:
            errors.append({"field": field, "line": error.lineno, "message": f"line {error.lineno}: {error.message}"})
    if errors:
        raise ApiError(422, "The template has errors.", errors)
    return sorted(variables)


MEMBER_VARIABLES = ("email", "name", "first_name", "user_id")  # every send fills these from the recipient
DEFAULT_FILTERS = {"default", "d"}


def _root_name(node) -> str | None:
    """`event` for `event`, `event.title` and `event["title"]`."""
    while isinstance(node, (nodes.Getattr, nodes.Getitem)):
        node = node.node
    return node.name if isinstance(node, nodes.Name) else None


def _guarded(tree: nodes.Template) -> set[str]:
    """Variables the template gives a fallback: `x|default(..)`, `x or ..`, `{% if x %}`, `x is defined`."""
    names: set[str] = set()
    for node in tree.find_all((nodes.Filter, nodes.Or, nodes.If, nodes.CondExpr, nodes.Test)):
        if isinstance(node, nodes.Filter) and node.name in DEFAULT_FILTERS:
            names.add(_root_name(node.node))
        elif isinstance(node, nodes.Or):
            names.add(_root_name(node.left))
        elif isinstance(node, (nodes.If, nodes.CondExpr)):
            names |= {name.name for name in node.test.find_all(nodes.Name)}
            names.add(_root_name(node.test))
        elif isinstance(node, nodes.Test) and node.name in {"defined", "undefined", "none"}:
            names.add(_root_name(node.node))
    names.discard(None)
    return names


@lru_cache(maxsize=512)
def _inferred_required(sources: tuple[tuple[str, str], ...]) -> tuple[str, ...]:
    used: set[str] = set()
    guarded: set[str] = set()
    for field, source in sources:
        try:
            tree = _env_for(field).parse(source)
            used |= meta.find_undeclared_variables(tree)
        except TemplateSyntaxError:
            continue
        guarded |= _guarded(tree)
    return tuple(sorted(used - guarded - set(MEMBER_VARIABLES)))


def required_variables(sources: dict, declared: list[dict] | None = None) -> list[str]:
    """What a send must give: the variables declared required, and those the template uses without a fallback."""
    inferred = _inferred_required(tuple((field, sources[field]) for field in FIELDS if sources.get(field)))
    marked = {spec["name"] for spec in declared or () if spec.get("required")}
    return sorted((set(inferred) | marked) - set(MEMBER_VARIABLES))


def missing_variables(required: list[str], data: dict) -> list[str]:
    return [name for name in required if data.get(name) is None]


def plain_data(value, depth: int = 0):
    """Only JSON-like data reaches a template: dicts, lists, strings, numbers, booleans, None."""
    if depth > 8:
        return None
    if isinstance(value, dict):
        return {str(k): plain_data(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain_data(v, depth + 1) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


_COMPILED: dict[tuple[str, str], object] = {}


def _compiled(field: str, source: str):
    key = (field, source)
    template = _COMPILED.get(key)
    if template is None:
        if len(_COMPILED) > 256:
            _COMPILED.clear()
        template = _COMPILED[key] = _env_for(field).from_string(source)
    return template


def render_fields(sources: dict[str, str | None], data: dict) -> dict[str, str]:
    """Render subject, html_body and text_body (when present) with plain data; RenderError on failure."""
    context = plain_data(data or {})
    out, errors = {}, []
    for field in FIELDS:
        source = sources.get(field)
        if not source:
            out[field] = ""
            continue
        try:
            text = _compiled(field, source).render(context)
        except SecurityError as error:
            errors.append({"field": field, "message": f"blocked by the sandbox: {error}"})
            continue
        except TemplateError as error:
            line = getattr(error, "lineno", None)
            prefix = f"line {line}: " if line else ""
            errors.append({"field": field, "message": f"{prefix}{error}"})
            continue
        except (ArithmeticError, TypeError, ValueError, OverflowError) as error:
            errors.append({"field": field, "message": f"render failed: {type(error).__name__}: {error}"})
            continue
        if len(text) > MAX_OUTPUT:
            errors.append({"field": field, "message": "the rendered output is too large"})
            continue
        out[field] = text
    if errors:
        raise RenderError(errors)
    out["subject"] = " ".join(out["subject"].split())[:500]
    return out


class _TextExtractor(HTMLParser):
    BLOCKS = {"p", "div", "br", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "li", "table", "section", "header",
              "footer", "blockquote", "hr"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip = 0
        self.href: str | None = None

    def handle_starttag(self, tag, attrs):
        if tag in {"script", "style", "head", "title"}:
            self.skip += 1
        elif tag in self.BLOCKS:
            self.parts.append("\n")
        if tag == "li":
            self.parts.append("- ")
        if tag == "a":
            self.href = dict(attrs).get("href")

    def handle_endtag(self, tag):
        if tag in {"script", "style", "head", "title"}:
            self.skip = max(0, self.skip - 1)
        elif tag in self.BLOCKS:
            self.parts.append("\n")
        if tag == "a" and self.href:
            if self.href.startswith(("http://", "https://")):
                self.parts.append(f" ({self.href})")
            self.href = None

    def handle_data(self, data):
        if not self.skip:
            self.parts.append(re.sub(r"\s+", " ", data))


def html_to_text(markup: str) -> str:
    """A readable plain-text version of an HTML body."""
    parser = _TextExtractor()
    parser.feed(markup or "")
    parser.close()
    text = "".join(parser.parts)
    lines = [line.strip() for line in text.splitlines()]
    text = "\n".join(lines)
    return html.unescape(re.sub(r"\n{3,}", "\n\n", text)).strip()
