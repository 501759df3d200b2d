"""Cohort retention (first-time or recurring) by set algebra over the day aggregates.

A cohort is a set of member ordinals (the members who started in a period, or, first-time, started then for the
first time ever); counts[k] = |cohort ∩ members who returned k periods later|. Exact, and read per day shown.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pyroaring import BitMap

from console.blueprints.engagement.aggregates import Day, read_days, union
from console.blueprints.engagement.periods import add_periods, as_day, label, period_start, zone_name
from console.blueprints.engagement.rollups import escape_key
from console.timeutil import utcnow

DAY = timedelta(days=1)


def _picker(event: str | None):
    """The member set of a day for `event` (every active member without one)."""
    if not event:
        return lambda day: day.users
    key = escape_key(event)
    return lambda day: day.names.get(key, (BitMap(), 0))[0]


def retention(period: str = "week", cohorts: int = 8, periods: int | None = None, start_event: str | None = None,
              return_event: str | None = None, mode: str = "first_time", now: datetime | None = None) -> dict:
    """Cohorts for the `cohorts` periods ending with the current one; counts[k] = members active k periods later."""
    today = as_day(now or utcnow())
    periods = periods or cohorts
    current = period_start(today, period)
    first = add_periods(current, period, -(cohorts - 1))
    names = sorted({escape_key(event) for event in (start_event, return_event) if event})
    days = read_days(first, today, names=names, counters=False)
    starts, returns = _picker(start_event), _picker(return_event)
    bounds = [add_periods(first, period, index) for index in range(cohorts + 1)]
    started = [union(days, bounds[i], bounds[i + 1] - DAY, starts) for i in range(cohorts)]
    returned = [union(days, bounds[i], bounds[i + 1] - DAY, returns) for i in range(cohorts)]
    seen = BitMap()
    if mode == "first_time":  # a first-time cohort excludes anyone who started in any earlier period
        earlier: dict[datetime, Day] = read_days(None, first - DAY, names=names, counters=False)
        seen = union(earlier, datetime.min.replace(tzinfo=first.tzinfo), first - DAY, starts)
    out = []
    for index in range(cohorts):
        cohort_start = bounds[index]
        members = started[index] - seen if mode == "first_time" else started[index]
        if mode == "first_time":
            seen |= started[index]
        size = len(members)
        length = min(periods, cohorts - index)  # periods after the current one have not begun
        counts = [size] + [members.intersection_cardinality(returned[index + k]) for k in range(1, length)]
        out.append({"cohort": cohort_start.date().isoformat(), "label": label(cohort_start, period), "size": size,
                    "counts": counts, "retention": [n / size if size else 0.0 for n in counts]})
    return {"period": period, "mode": mode, "start_event": start_event, "return_event": return_event,
            "cohorts": out, "timezone": zone_name(), "generated_at": utcnow()}
