"""The analyst's reports card: retention at a glance and the latest campaigns' results, read-only.

Uses engagement only through its read entry points `retention.retention` and `campaigns.recent_campaign_reports`."""

from __future__ import annotations

from console.blueprints.engagement.campaigns import recent_campaign_reports
from console.blueprints.engagement.retention import retention


def reports_summary(campaign_limit: int = 3) -> dict:
    """Week-1 retention of the weekly cohorts (latest and mean) and the newest sent campaigns with their lift."""
    cohorts = [c for c in retention("week", cohorts=8)["cohorts"] if c["size"] and len(c["counts"]) > 1]
    week1 = [c["retention"][1] for c in cohorts]
    return {
        "cohorts": cohorts[-4:],
        "latest_week1": week1[-1] if week1 else None,
        "mean_week1": sum(week1) / len(week1) if week1 else None,
        "campaigns": recent_campaign_reports(campaign_limit),
    }
