"""Plotly figure dicts for the engagement pages (console.js renders them)."""

from __future__ import annotations

from console.ui import plot_text


def _x(rows: list[dict], interval: str) -> list[str]:
    """Dates for days (a time axis); ISO week or month labels otherwise, so ticks match the periods."""
    return [row["period"] if interval == "day" else row["label"] for row in rows]


def _opacity(rows: list[dict]) -> list[float]:
    """Periods cut by from/to (partial) are drawn lighter, so a half week does not read as a bad week."""
    return [0.4 if row.get("partial") else 1.0 for row in rows]


def _hover(rows: list[dict]) -> list[str]:
    return [" (partial period)" if row.get("partial") else "" for row in rows]


STAGE_COLORS = {"new": "#4f46e5", "returning": "#10b981", "resurrecting": "#f59e0b", "dormant": "#ef4444"}


def activity_figure(metrics: dict) -> dict:
    series = metrics["series"]
    x = _x(series, metrics["interval"])
    return {
        "data": [
            {"type": "scatter", "mode": "lines+markers", "name": "Active members", "x": x,
             "y": [row["active_users"] for row in series], "marker": {"opacity": _opacity(series)},
             "text": _hover(series), "hovertemplate": "%{y}%{text}"},
            {"type": "scatter", "mode": "lines+markers", "name": "New members", "x": x,
             "y": [row["new_users"] for row in series], "marker": {"opacity": _opacity(series)},
             "text": _hover(series), "hovertemplate": "%{y}%{text}"},
        ],
        "layout": {"yaxis": {"title": {"text": "members"}, "rangemode": "tozero"}, "hovermode": "x unified"},
    }


def sessions_figure(metrics: dict) -> dict:
    series = metrics["series"]
    x = _x(series, metrics["interval"])
    return {
        "data": [{"type": "bar", "name": "Sessions", "x": x,
                  "y": [row["sessions"] for row in series],
                  "marker": {"color": "#0ea5e9", "opacity": _opacity(series)},
                  "text": _hover(series), "textposition": "none", "hovertemplate": "%{y}%{text}"},
                 {"type": "scatter", "mode": "lines", "name": "Events", "yaxis": "y2",
                  "x": x, "y": [row["events"] for row in series],
                  "line": {"color": "#8b5cf6"}}],
        "layout": {"margin": {"l": 48, "r": 56, "t": 24, "b": 40},
                   "yaxis": {"title": {"text": "sessions"}, "rangemode": "tozero"},
                   # its own round ticks (plotly otherwise lines them up with the sessions axis: 199, 299...)
                   "yaxis2": {"title": {"text": "events"}, "overlaying": "y", "side": "right", "rangemode": "tozero",
                              "tickmode": "auto", "showgrid": False},
                   "hovermode": "x unified"},
    }


def feature_figure(metrics: dict) -> dict:
    rows = list(reversed(metrics["feature_usage"][:12]))
    return {
        "data": [{"type": "bar", "orientation": "h", "name": "Members",
                  "y": [plot_text(row["feature"]) for row in rows],
                  "x": [row["users"] for row in rows],
                  "text": [f"{row['adoption'] * 100:.0f}% adoption · {row['events']:,} events" for row in rows],
                  "hovertemplate": "%{y}: %{x} members<br>%{text}<extra></extra>", "textposition": "none",
                  "marker": {"color": "#10b981"}}],
        "layout": {"margin": {"l": 120, "r": 16, "t": 16, "b": 40}, "xaxis": {"title": {"text": "members"}}},
    }


def stickiness_figure(metrics: dict, window: str = "30") -> dict:
    """Members by number of days active in the last 7 or 30 days (PostHog's stickiness)."""
    counts = metrics["stickiness_distribution"][window]
    return {
        "data": [{"type": "bar", "name": "Members", "x": list(range(1, len(counts) + 1)), "y": counts,
                  "hovertemplate": "%{y} members active on %{x} days<extra></extra>", "marker": {"color": "#6366f1"}}],
        "layout": {"margin": {"l": 48, "r": 16, "t": 16, "b": 40},
                   "xaxis": {"title": {"text": f"days active of the last {window}"},
                             "dtick": 1 if window == "7" else 5},
                   "yaxis": {"title": {"text": "members"}, "rangemode": "tozero"}},
    }


def adoption_figure(metrics: dict, top: int = 6) -> dict:
    """Feature adoption over time: members per feature per period, for the most used features."""
    series = metrics["series"]
    x = _x(series, metrics["interval"])
    names = [row["feature"] for row in metrics["feature_usage"][:top]]
    return {
        "data": [{"type": "scatter", "mode": "lines+markers", "name": name, "x": x,
                  "y": [row.get("feature_users", {}).get(name, 0) for row in series],
                  "marker": {"opacity": _opacity(series)}} for name in names],
        "layout": {"yaxis": {"title": {"text": "members"}, "rangemode": "tozero"}, "hovermode": "x unified"},
    }


def lifecycle_figure(chart: dict) -> dict:
    series = chart["series"]
    x = _x(series, chart["interval"])
    return {
        "data": [{"type": "bar", "name": stage.title(), "x": x, "y": [row[stage] for row in series],
                  "customdata": [row["period"] for row in series],  # the period start, for the drill-down
                  "marker": {"color": color, "opacity": _opacity(series)}} for stage, color in STAGE_COLORS.items()],
        # "closest": a click names the segment under the pointer (a unified hover would report every stage)
        "layout": {"barmode": "relative", "yaxis": {"title": {"text": "members"}, "zeroline": True},
                   "hovermode": "closest"},
    }


def timeline_figure(lifecycle: dict) -> dict:
    rows = lifecycle["timeline"]
    return {
        "data": [{"type": "bar", "name": "Events", "x": _x(rows, lifecycle["interval"]),
                  "y": [row["events"] if row["stage"] != "dormant" else -1 for row in rows],
                  "text": [row["stage"] for row in rows], "textposition": "none",
                  "hovertemplate": "%{x}: %{text}<extra></extra>",
                  "marker": {"color": [STAGE_COLORS.get(row["stage"], "#64748b") for row in rows]}}],
        "layout": {"yaxis": {"title": {"text": "events"}}, "showlegend": False},
    }
