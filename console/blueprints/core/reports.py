"""The analyst's reports card: retention at a glance and the latest campaigns' results, read-only.

Uses engagement only through its read entry points `retention.retention` and `campaigns.campaign_report`."""

from __future__ import annotations

from console.blueprints.engagement import campaigns, retention


def reports_summary(campaign_limit: int = 3) -> dict:
    """Week-1 retention of the weekly cohorts (latest and mean) and the newest sent campaigns with their lift."""
    cohorts = [c for c in retention.retention("week", cohorts=8)["cohorts"] if c["size"] and len(c["counts"]) > 1]
    week1 = [c["retention"][1] for c in cohorts]
    sent = campaigns.Campaign.objects(dry_run__ne=True, sent_at__ne=None).order_by("-sent_at").limit(campaign_limit)
    return {
        "cohorts": cohorts[-4:],
        "latest_week1": week1[-1] if week1 else None,
        "mean_week1": sum(week1) / len(week1) if week1 else None,
        "campaigns": [campaigns.campaign_report(campaign) for campaign in sent],
    }
