"""Cohort retention (first-time or recurring) by set algebra over the day aggregates.

A cohort is a set of member ordinals (the members who started in a period, or, first-time, started then for the
first time ever); counts[k] = |cohort ∩ members who returned k periods later|. Exact, and read per day shown.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from bson import Binary
from pyroaring import BitMap

from console.blueprints.engagement.frozen import Reader
from console.blueprints.engagement.periods import add_periods, as_day, label, period_start, zone_name
from console.blueprints.engagement.rollups import escape_key
from console.timeutil import utcnow

DAY = timedelta(days=1)


def _sets(reader: Reader, event: str | None):
    """first, last -> the members who did `event` (anything, without one) on the local days [first, last]."""
    if not event:
        return lambda first, last: reader.span(first, last).users
    key = escape_key(event)
    return lambda first, last: reader.span(first, last, names=[key]).names.get(key, (BitMap(), 0))[0]


def retention(period: str = "week", cohorts: int = 8, periods: int | None = None, start_event: str | None = None,
              return_event: str | None = None, mode: str = "first_time", now: datetime | None = None) -> dict:
    """Cohorts for the `cohorts` periods ending with the current one; counts[k] = members active k periods later.

    A cohort's counts over past periods are frozen with the cohort's members (frozen.Reader); only the current
    period's column is counted afresh."""
    today = as_day(now or utcnow())
    reader = Reader(now)
    periods = periods or cohorts
    current = period_start(today, period)
    first = add_periods(current, period, -(cohorts - 1))
    bounds = [add_periods(first, period, index) for index in range(cohorts + 1)]
    starts, returns = _sets(reader, start_event), _sets(reader, return_event)

    def cohort(index: int) -> BitMap:
        members = starts(bounds[index], min(bounds[index + 1] - DAY, today))
        if mode == "first_time":  # a first-time cohort excludes anyone who started in any earlier period
            members = members - starts(None, bounds[index] - DAY)
        return members

    def row(index: int) -> dict:
        """The cohort and its counts in the periods after it that are over."""
        members = cohort(index)
        over = [len(members)] + [
            members.intersection_cardinality(returns(bounds[index + k], bounds[index + k + 1] - DAY))
            for k in range(1, cohorts - 1 - index)]
        return {"cohort": Binary(members.serialize()), "counts": over}

    past = {index: reader.key("retention", period, mode, start_event or "", return_event or "",
                              bounds[index].date(), current.date())
            for index in range(cohorts - 1) if current - DAY < reader.today}
    kept = reader.kept({key: current - DAY for key in past.values()},
                       lambda missing: {key: row(index) for index, key in past.items() if key in missing})
    now_returning = returns(current, today)
    out = []
    for index in range(cohorts):
        if index in past:
            members = BitMap.deserialize(bytes(kept[past[index]]["cohort"]))
            full = [*kept[past[index]]["counts"], members.intersection_cardinality(now_returning)]
        else:
            members = cohort(index)
            full = [len(members)] + [members.intersection_cardinality(returns(bounds[index + k],
                                                                              min(bounds[index + k + 1] - DAY, today)))
                                     for k in range(1, cohorts - index)]
        size = len(members)
        counts = full[:min(periods, cohorts - index)]  # periods after the current one have not begun
        out.append({"cohort": bounds[index].date().isoformat(), "label": label(bounds[index], period), "size": size,
                    "counts": counts, "retention": [n / size if size else 0.0 for n in counts]})
    return {"period": period, "mode": mode, "start_event": start_event, "return_event": return_event,
            "cohorts": out, "timezone": zone_name(), "generated_at": utcnow()}
