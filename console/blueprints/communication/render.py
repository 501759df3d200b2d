"""Sandboxed template rendering: HTML with autoescape, subject and text without; plain data only."""

from __future__ import annotations

import functools
import html
import inspect
import re
import time
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache

from jinja2 import ChainableUndefined, TemplateError, TemplateSyntaxError, meta, nodes, pass_context
from jinja2.compiler import CodeGenerator
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from console.errors import ApiError

FIELDS = ("subject", "html_body", "text_body")
# Names a template must never reach: Jinja's own helpers that expose objects beyond plain data.
FORBIDDEN_NAMES = {"self", "lipsum", "cycler", "joiner", "namespace", "range", "dict", "config", "request",
                   "session", "g", "url_for", "get_flashed_messages", "loop_controls"}
FORBIDDEN_FILTERS = {"attr", "format", "xmlattr", "tojson", "pprint"}
FORBIDDEN_ATTRS = {"format", "format_map", "mro", "func_globals", "gi_frame", "f_globals", "im_func"}
MAX_OUTPUT = 512 * 1024
# Every render is bounded: no value (string, list) longer than MAX_VALUE, no integer wider than MAX_INT_BITS,
# at most MAX_STEPS loop iterations, MAX_DEPTH nested calls, MAX_BUFFERED characters captured by macros and
# blocks, and RENDER_SECONDS of wall time. Checks run before the work, so nothing big is ever built.
MAX_VALUE = MAX_OUTPUT
MAX_INT_BITS = 10_000  # about 3,000 decimal digits; below Python's int-to-str limit
MAX_STEPS = 100_000
MAX_DEPTH = 32
MAX_BUFFERED = 4 * MAX_OUTPUT
MAX_COUNT_ARG = 10_000  # batch/slice counts
RENDER_SECONDS = 2.0
SAFE_METHODS = {
    str: {"capitalize", "casefold", "center", "count", "endswith", "find", "index", "isalnum", "isalpha",
          "isascii", "isdecimal", "isdigit", "islower", "isnumeric", "isspace", "istitle", "isupper", "join",
          "ljust", "lower", "lstrip", "partition", "removeprefix", "removesuffix", "replace", "rfind", "rindex",
          "rjust", "rpartition", "rsplit", "rstrip", "split", "splitlines", "startswith", "strip", "swapcase",
          "title", "upper", "zfill", "striptags", "unescape"},
    dict: {"get", "keys", "values", "items"},
    list: {"count", "index"},
    tuple: {"count", "index"},
    int: {"bit_length", "is_integer"},
    float: {"is_integer"},
}


class TemplateLimitError(SecurityError):
    """The template asked for more time, memory or output than an email may take."""


@dataclass
class _Budget:
    deadline: float
    steps: int = 0
    depth: int = 0
    buffered: int = 0


_BUDGET: ContextVar[_Budget | None] = ContextVar("template_budget", default=None)


def _tick() -> None:
    budget = _BUDGET.get()
    if budget is not None and time.monotonic() > budget.deadline:
        raise TemplateLimitError(f"the template took longer than {RENDER_SECONDS:g} s to render")


def _sized(value) -> bool:
    return isinstance(value, (str, list, tuple))


def _limit_length(length: int, what: str = "string") -> None:
    if length > MAX_VALUE:
        unit = "characters" if what == "string" else "items"
        raise TemplateLimitError(f"this would build a {what} of {length:,} {unit}; the limit is {MAX_VALUE:,}")


def _checked(value):
    """Refuse a result too big to be email content."""
    if _sized(value):
        _limit_length(len(value), "string" if isinstance(value, str) else "list")
    elif isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > MAX_INT_BITS:
        raise TemplateLimitError(f"a number wider than {MAX_INT_BITS:,} bits is not allowed")
    return value


def _count_arg(value, name: str) -> None:
    if isinstance(value, int) and not isinstance(value, bool) and value > MAX_COUNT_ARG:
        raise TemplateLimitError(f"{name} {value:,} is over the limit of {MAX_COUNT_ARG:,}")


def _width(value) -> int:
    if isinstance(value, str):
        return len(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _replace_size(text, old, new, count) -> None:
    if not (isinstance(text, str) and isinstance(old, str) and isinstance(new, str)):
        return
    hits = text.count(old) if old else len(text) + 1
    if isinstance(count, int) and 0 <= count < hits:
        hits = count
    _limit_length(len(text) + hits * (len(new) - len(old)), "string")


def _join_size(separator, items) -> list:
    items = list(items)
    _limit_length(len(items), "list")
    size = len(separator) * max(len(items) - 1, 0) if isinstance(separator, str) else 0
    _limit_length(size + sum(len(item) if isinstance(item, str) else 24 for item in items), "string")
    return items


def _check_pow(left, right) -> None:
    if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1 \
            and abs(left).bit_length() * right > MAX_INT_BITS:
        raise TemplateLimitError(f"a power this large (over {MAX_INT_BITS:,} bits) is not allowed")


def _check_mul(left, right) -> None:
    for seq, times in ((left, right), (right, left)):
        if _sized(seq) and isinstance(times, int):
            _limit_length(len(seq) * max(times, 0), "string" if isinstance(seq, str) else "list")
    if isinstance(left, int) and isinstance(right, int) and left.bit_length() + right.bit_length() > MAX_INT_BITS:
        raise TemplateLimitError(f"a number wider than {MAX_INT_BITS:,} bits is not allowed")


def _check_method(obj, args: tuple, kwargs: dict) -> tuple:
    """Only plain, bounded methods of data; returns the (possibly materialised) arguments."""
    owner = getattr(obj, "__self__", None)
    kind = next((base for base in SAFE_METHODS if isinstance(owner, base) and not isinstance(owner, bool)), None)
    if kind is None:
        return args
    name = getattr(obj, "__name__", "")
    if name not in SAFE_METHODS[kind]:
        raise SecurityError(f"the method {name!r} is not available in email templates")
    if name in {"center", "ljust", "rjust", "zfill"} and args:
        _limit_length(_width(args[0]), "string")
    elif name == "replace" and len(args) >= 2:
        _replace_size(owner, args[0], args[1], args[2] if len(args) > 2 else kwargs.get("count"))
    elif name == "join" and args:
        args = (_join_size(owner, args[0]), *args[1:])
    return args


def _check_filter(name: str, arguments: dict) -> None:
    """Size checks for the filters that can grow their input; run before the filter."""
    if name == "replace":
        _replace_size(arguments.get("s"), arguments.get("old"), arguments.get("new"), arguments.get("count"))
    elif name == "center":
        _limit_length(_width(arguments.get("width", 0)), "string")
    elif name == "indent":
        text = arguments.get("s") if isinstance(arguments.get("s"), str) else ""
        _limit_length(len(text) + _width(arguments.get("width", 4)) * (text.count("\n") + 1), "string")
    elif name == "wordwrap":
        text = arguments.get("s") if isinstance(arguments.get("s"), str) else ""
        width, wrap = arguments.get("width", 79), arguments.get("wrapstring") or "\n"
        if isinstance(width, int) and width > 0 and isinstance(wrap, str):
            _limit_length(len(text) + (len(text) // width + 1) * len(wrap), "string")
    elif name == "truncate":
        _limit_length(_width(arguments.get("end", "")), "string")
    elif name in {"batch", "slice"}:
        _count_arg(arguments.get("linecount", arguments.get("slices")), f"the {name} count")
    elif name == "join":
        arguments["value"] = _join_size(arguments.get("d", ""), arguments.get("value") or ())
    elif name == "sum" and not isinstance(arguments.get("start", 0), (int, float)):
        raise SecurityError("sum only adds numbers in email templates")


def _guard_filter(name: str, func):
    signature = inspect.signature(func)

    @functools.wraps(func)
    def guarded(*args, **kwargs):
        _tick()
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError:
            return func(*args, **kwargs)  # let the filter report its own usage error
        bound.apply_defaults()
        _check_filter(name, bound.arguments)
        return _checked(func(*bound.args, **bound.kwargs))

    return guarded


@pass_context
def _guard_iter(context, iterable):
    """Every loop counts against the render's step budget and wall time."""
    budget = _BUDGET.get() or _Budget(deadline=time.monotonic() + RENDER_SECONDS)
    for item in iterable:
        budget.steps += 1
        if budget.steps > MAX_STEPS:
            raise TemplateLimitError(f"the loops run more than {MAX_STEPS:,} times")
        if not budget.steps & 63:
            _tick()
        yield item


class _Buffer(list):
    """The output a macro, `{% set %}` block or `{% filter %}` block captures, counted as it grows."""

    def append(self, item):
        _account(item)
        super().append(item)

    def extend(self, items):
        items = tuple(items)
        for item in items:
            _account(item)
        super().extend(items)


def _account(item) -> None:
    budget = _BUDGET.get()
    if budget is None or not isinstance(item, str):
        return
    budget.buffered += len(item)
    if budget.buffered > MAX_BUFFERED:
        raise TemplateLimitError(f"the template builds more than {MAX_BUFFERED:,} characters of text")
    _tick()


class _BoundedCodeGenerator(CodeGenerator):
    """Buffers that count what they hold, and `~` joins checked for size."""

    def buffer(self, frame) -> None:
        frame.buffer = self.temporary_identifier()
        self.writeline(f"{frame.buffer} = environment.bounded_buffer()")

    def visit_Concat(self, node, frame) -> None:
        self.write("environment.bounded_value(")
        super().visit_Concat(node, frame)
        self.write(")")


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """The email sandbox: arithmetic, calls, filters, loops and captured output all bounded."""

    code_generator_class = _BoundedCodeGenerator
    intercepted_binops = frozenset({"*", "**", "+", "%", "//", "/"})

    def __init__(self, **options):
        super().__init__(optimized=False, **options)  # no constant folding: nothing runs at compile time
        self.globals.clear()
        for name in FORBIDDEN_FILTERS:
            self.filters.pop(name, None)
        self.filters = {name: _guard_filter(name, func) for name, func in self.filters.items()}
        self.filters["_guard_iter"] = _guard_iter

    def _parse(self, source, name, filename):
        tree = super()._parse(source, name, filename)
        for loop in list(tree.find_all(nodes.For)):
            loop.iter = nodes.Filter(loop.iter, "_guard_iter", [], [], None, None, lineno=loop.lineno)
        return tree

    def bounded_buffer(self) -> _Buffer:
        return _Buffer()

    def bounded_value(self, value):
        return _checked(value)

    def call_binop(self, context, operator, left, right):
        _tick()
        if operator == "**":
            _check_pow(left, right)
        elif operator == "*":
            _check_mul(left, right)
        elif operator == "%" and isinstance(left, str):
            raise SecurityError("the % operator on text is not available in email templates")
        elif operator == "+" and _sized(left) and _sized(right):
            _limit_length(len(left) + len(right), "string" if isinstance(left, str) else "list")
        return _checked(super().call_binop(context, operator, left, right))

    def call(self, context, obj, /, *args, **kwargs):
        _tick()
        args = _check_method(obj, args, kwargs)
        budget = _BUDGET.get()
        if budget is not None:
            budget.depth += 1
            if budget.depth > MAX_DEPTH:
                budget.depth -= 1
                raise TemplateLimitError(f"macros call each other more than {MAX_DEPTH} levels deep")
        try:
            result = super().call(context, obj, *args, **kwargs)
        finally:
            if budget is not None:
                budget.depth -= 1
        return _checked(result)


class RenderError(Exception):
    """A template failed to render; `errors` are API error items."""

    def __init__(self, errors: list[dict]):
        super().__init__("; ".join(item["message"] for item in errors))
        self.errors = errors


def _env(autoescape: bool) -> BoundedSandbox:
    return BoundedSandbox(autoescape=autoescape, undefined=ChainableUndefined, trim_blocks=True, lstrip_blocks=True)


HTML_ENV = _env(autoescape=True)
TEXT_ENV = _env(autoescape=False)


def _env_for(field: str) -> BoundedSandbox:
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


def _error(field: str, line: int | None, message: str) -> dict:
    if not line:
        return {"field": field, "message": message}
    return {"field": field, "line": line, "message": f"line {line}: {message}"}


def _template_line(error: BaseException) -> int | None:
    """The template line an error was raised on (Jinja rewrites tracebacks to point at template lines)."""
    line = getattr(error, "lineno", None)
    trace = error.__traceback__
    while trace is not None:
        if trace.tb_frame.f_code.co_filename in {"<template>", "<unknown>"}:
            line = trace.tb_lineno
        trace = trace.tb_next
    return line


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
            unsafe = _unsafe_nodes(tree)
            for line, message in unsafe:
                errors.append(_error(field, line, message))
            if not unsafe:
                variables |= meta.find_undeclared_variables(tree)  # compiles: unknown filters and tests fail here
        except TemplateSyntaxError as error:
            errors.append(_error(field, error.lineno, error.message))
        except (RecursionError, MemoryError, SyntaxError, ValueError, OverflowError) as error:
            errors.append(_error(field, getattr(error, "lineno", None),
                                 f"the template is nested too deeply or too large to check ({type(error).__name__})"))
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


def _render(template, context: dict) -> str:
    """Stream the output, refusing it (at the line that crossed the limit) once it grows past MAX_OUTPUT."""
    budget = _Budget(deadline=time.monotonic() + RENDER_SECONDS)
    token = _BUDGET.set(budget)
    try:
        stream = template.generate(context)
        parts, size = [], 0
        for chunk in stream:
            size += len(chunk)
            if size > MAX_OUTPUT:
                stream.throw(TemplateLimitError(f"the rendered output is larger than {MAX_OUTPUT // 1024} KB"))
            if time.monotonic() > budget.deadline:
                stream.throw(TemplateLimitError(f"the template took longer than {RENDER_SECONDS:g} s to render"))
            parts.append(chunk)
        return "".join(parts)
    finally:
        _BUDGET.reset(token)


def render_fields(sources: dict[str, str | None], data: dict) -> dict[str, str]:
    """Render subject, html_body and text_body (when present) with plain data; RenderError on failure.

    Every failure, limits included, is an error item naming the field and, when known, the line."""
    context = plain_data(data or {})
    out, errors = {}, []
    for field in FIELDS:
        source = sources.get(field)
        if not source:
            out[field] = ""
            continue
        try:
            out[field] = _render(_compiled(field, source), context)
        except TemplateLimitError as error:
            errors.append(_error(field, _template_line(error), f"refused: {error}"))
        except SecurityError as error:
            errors.append(_error(field, _template_line(error), f"blocked by the sandbox: {error}"))
        except TemplateError as error:
            errors.append(_error(field, _template_line(error), str(error)))
        except (RecursionError, MemoryError) as error:
            errors.append(_error(field, _template_line(error), f"the template is too complex ({type(error).__name__})"))
        except (ArithmeticError, TypeError, ValueError, LookupError, AttributeError) as error:
            errors.append(_error(field, _template_line(error), f"render failed: {type(error).__name__}: {error}"))
    if errors:
        raise RenderError(errors)
    out["subject"] = " ".join(out["subject"].split())[:500]
    return out


BLOCKS = {"p", "div", "br", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "li", "table", "section", "header", "footer",
          "blockquote", "hr"}
HIDDEN = {"script", "style", "head", "title"}


def html_to_text(markup: str) -> str:
    """A readable plain-text version of an HTML body (one linear pass over the markup)."""
    from console.blueprints.communication.htmltokens import tokens

    parts: list[str] = []
    skip, href = 0, None
    for token in tokens(markup or ""):
        if token.kind == "text":
            if not skip:
                parts.append(re.sub(r"\s+", " ", html.unescape(token.text)))
        elif token.kind == "start":
            if token.name in HIDDEN:
                skip += 1
            elif token.name in BLOCKS:
                parts.append("\n")
            if token.name == "li":
                parts.append("- ")
            if token.name == "a":
                attr = token.attr("href")
                href = html.unescape(attr.value) if attr is not None and attr.value else None
        else:
            if token.name in HIDDEN:
                skip = max(0, skip - 1)
            elif token.name in BLOCKS:
                parts.append("\n")
            if token.name == "a" and href:
                if href.startswith(("http://", "https://")):
                    parts.append(f" ({href})")
                href = None
    lines = [line.strip() for line in "".join(parts).splitlines()]
    text = "\n".join(lines)
    return html.unescape(re.sub(r"\n{3,}", "\n\n", text)).strip()
