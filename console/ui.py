"""The console shell: navigation and dashboard widgets that features register, shown by permission."""

from __future__ import annotations

import html
from dataclasses import dataclass

from flask import current_app, url_for

from console.security import has_permission


@dataclass(frozen=True)
class NavItem:
    label: str
    endpoint: str
    permission: str | None  # None: any signed-in admin
    section: str = "Overview"
    icon: str = "•"
    order: int = 100


@dataclass(frozen=True)
class Widget:
    """A dashboard card whose body htmx loads from `endpoint` (a fragment view)."""

    title: str
    endpoint: str
    permission: str
    order: int = 100
    width: int = 1  # grid columns; 3 takes the whole row (a role's first block)


SECTIONS = ("Overview", "Engagement", "Communication", "Content", "Administration", "System")


def add_nav(app, item: NavItem) -> None:
    app.extensions.setdefault("console_nav", []).append(item)


def add_widget(app, widget: Widget) -> None:
    app.extensions.setdefault("console_widgets", []).append(widget)


def _allowed(permission: str | None) -> bool:
    return permission is None or has_permission(permission)


def visible_nav() -> list[tuple[str, list[dict]]]:
    """Sections with the entries the current admin may open, in a stable order."""
    items = [item for item in current_app.extensions.get("console_nav", []) if _allowed(item.permission)]
    grouped = []
    for section in SECTIONS:
        entries = sorted((i for i in items if i.section == section), key=lambda i: (i.order, i.label))
        if entries:
            grouped.append((section, [{"label": i.label, "url": url_for(i.endpoint), "icon": i.icon,
                                       "endpoint": i.endpoint} for i in entries]))
    return grouped


def _visible(key: str) -> list:
    """Registered items (widgets, member panels) the current admin may see, in display order."""
    items = current_app.extensions.get(key, [])
    return sorted((item for item in items if has_permission(item.permission)), key=lambda i: (i.order, i.title))


def visible_widgets() -> list[Widget]:
    return _visible("console_widgets")


@dataclass(frozen=True)
class MemberPanel:
    """A section of the member detail page, loaded by htmx from `endpoint` (which takes `user_id`)."""

    title: str
    endpoint: str
    permission: str
    order: int = 100


def add_member_panel(app, panel: MemberPanel) -> None:
    app.extensions.setdefault("console_member_panels", []).append(panel)


def visible_member_panels() -> list[MemberPanel]:
    return _visible("console_member_panels")


def plot_text(value) -> str:
    """Member-supplied text for a Plotly label or hover: Plotly reads `<a>`, `<b>`, `<br>` in text as markup, so
    it must arrive escaped (Plotly shows the entities as the characters)."""
    return html.escape("" if value is None else str(value), quote=True)
