"""Query models of the platform API (the moderation queue, blog posts and events); the pages read theirs too."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import Field

from console.pagination import PageQuery


class QueueQuery(PageQuery):
    status: str | None = Field(None, max_length=40, pattern=r"^[a-z_]+$")
    q: str | None = Field(None, max_length=200)
    type: str | None = Field(None, max_length=60)
    from_: datetime | None = Field(None, alias="from")
    to: datetime | None = None
    event_id: str | None = Field(None, max_length=200)


class ContentQuery(PageQuery):
    status: Literal["draft", "scheduled", "published", "archived"] | None = None
    q: str | None = Field(None, max_length=200)
