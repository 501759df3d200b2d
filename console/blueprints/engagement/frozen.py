"""Frozen answers about past days: computed once from the day aggregates, kept until a late event changes a day.

A local day before today (ANALYTICS_TIMEZONE) changes only when a late event lands on it. So what a dashboard
asks of past days (the members of a span of days, one period's counts, a lifecycle bar, a cohort row, who was last
active when) is computed once and kept in `activity_frozen`, under a key naming the question, with `last` (the
last day it depends on) and `epoch` (the invalidation count when its computation began). An answer that includes
today adds today's own day document to the frozen part (`Reader.live`): live traffic invalidates nothing, and a
request reads a few small documents per period shown, whatever the number of members.

Late events: `aggregates.apply` calls `invalidate(day)` after writing to a day before today (or within MARGIN of
midnight, for clocks a little apart). That appends the day to the log in the `frozen_state` counter (one atomic
write) and drops the kept answers with last >= day. A reader reads the state before anything else and uses a kept
answer only if no invalidation logged after its epoch names a day it depends on; so an answer computed from data a
late write overtook is never used once that write's invalidation landed, even when it was stored after the drop.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from bson import Binary
from pymongo import ReplaceOne
from pyroaring import BitMap

from console.blueprints.engagement.aggregates import Day, read_days
from console.blueprints.engagement.periods import as_day, zone_name
from console.db import find_in, get_db
from console.timeutil import as_utc, utcnow

FROZEN = "activity_frozen"
STATE = {"_id": "frozen_state"}  # in `counters`: n (invalidations so far), log (their days, newest last), gen
LOG_KEEP = 500
MARGIN = timedelta(minutes=15)
DAY = timedelta(days=1)
EVERYTHING = datetime(1970, 1, 1, tzinfo=UTC)  # an invalidation from this day on drops every answer
KEEP_DAYS = 40  # answers not recomputed for this long are pruned (recomputed when asked again)


def _frozen():
    return get_db()[FROZEN]


def _counters():
    return get_db()["counters"]


def is_late(day: datetime, now: datetime | None = None) -> bool:
    """Whether a write to `day` may change answers already frozen (any day before today, give or take MARGIN)."""
    return as_utc(day) < as_day((now or utcnow()) + MARGIN)


def invalidate(day: datetime) -> None:
    """A late write landed on `day`: answers depending on it or a later day no longer hold."""
    _counters().update_one(STATE, {"$inc": {"n": 1}, "$push": {"log": {"$each": [as_utc(day)], "$slice": -LOG_KEEP}},
                                   "$setOnInsert": {"gen": uuid.uuid4().hex}}, upsert=True)
    _frozen().delete_many({"last": {"$gte": as_utc(day)}})


def clear() -> None:
    """Every answer goes (a rebuild, an erased member)."""
    invalidate(EVERYTHING)


def prune(now: datetime | None = None) -> int:
    """Drop answers computed more than KEEP_DAYS ago (old custom ranges); returns how many went."""
    return _frozen().delete_many({"at": {"$lt": (now or utcnow()) - timedelta(days=KEEP_DAYS)}}).deleted_count


# --- storing days --------------------------------------------------------------------------------------------

def pack_day(day: Day) -> dict:
    return {"u": Binary(day.users.serialize()), "c": [day.events, day.sessions, day.seconds],
            "f": {name: [Binary(bits.serialize()), events] for name, (bits, events) in day.features.items()},
            "n": {name: [Binary(bits.serialize()), events] for name, (bits, events) in day.names.items()}}


def unpack_day(value: dict) -> Day:
    def sets(part):
        return {name: (BitMap.deserialize(bytes(bits)), events) for name, (bits, events) in (part or {}).items()}

    events, sessions, seconds = value["c"]
    return Day(BitMap.deserialize(bytes(value["u"])), events, sessions, seconds, sets(value.get("f")),
               sets(value.get("n")))


def merge(days) -> Day:
    """One Day for several: unions of the sets, sums of the counters."""
    out = Day()
    for day in days:
        out.users |= day.users
        out.events += day.events
        out.sessions += day.sessions
        out.seconds += day.seconds
        for mine, theirs in ((out.features, day.features), (out.names, day.names)):
            for name, (bits, events) in theirs.items():
                have = mine.get(name)
                mine[name] = (have[0] | bits, have[1] + events) if have else (BitMap(bits), events)
    return out


def count_into(slices: list[BitMap], bits: BitMap) -> None:
    """Add one member set to a binary counter (slice i: the members whose count has bit i set)."""
    carry, index = BitMap(bits), 0
    while carry:
        if index == len(slices):
            slices.append(carry)
            return
        slices[index], carry = slices[index] ^ carry, slices[index] & carry
        index += 1


# --- reading -------------------------------------------------------------------------------------------------

class Reader:
    """One request's view: the state read first, today's documents read once, answers memoized."""

    def __init__(self, now: datetime | None = None):
        real_today = as_day(utcnow())
        self.today = min(as_day(now), real_today) if now else real_today
        self.zone = zone_name()
        state = _counters().find_one(STATE) or {}
        if not state.get("gen"):
            _counters().update_one(STATE, {"$setOnInsert": {"gen": uuid.uuid4().hex, "n": 0, "log": []}},
                                   upsert=True)
            state = _counters().find_one(STATE) or {}
        self.gen, self.epoch = state.get("gen"), state.get("n", 0)
        self.log = [as_utc(day) for day in state.get("log") or []]
        self._memo: dict = {}
        self._live: dict[datetime, Day] | None = None

    # kept answers

    def _valid(self, doc: dict) -> bool:
        epoch, last = doc.get("epoch", -1), as_utc(doc["last"])
        if doc.get("gen") != self.gen or epoch > self.epoch:
            return False
        first_logged = self.epoch - len(self.log) + 1  # the epoch of log[0]
        if epoch + 1 < first_logged:
            return False  # invalidations since were dropped from the log: unknown days
        return all(day > last for day in self.log[max(0, epoch + 1 - first_logged):])

    def kept(self, wanted: dict[str, datetime], compute) -> dict:
        """The answers for `wanted` (key -> last day it depends on; every one before today), computing the
        missing ones with compute(missing keys) -> {key: value} and keeping them."""
        out = {key: self._memo[key] for key in wanted if key in self._memo}
        asked = [key for key in wanted if key not in out]
        for doc in find_in(_frozen(), "_id", asked):
            if self._valid(doc):
                out[doc["_id"]] = doc["v"]
        missing = [key for key in asked if key not in out]
        if missing:
            fresh = compute(missing)
            now = utcnow()
            _frozen().bulk_write([ReplaceOne({"_id": key}, {"last": wanted[key], "epoch": self.epoch, "gen": self.gen,
                                                            "at": now, "v": fresh[key]}, upsert=True)
                                  for key in missing], ordered=False)
            out.update(fresh)
        self._memo.update(out)
        return out

    def key(self, kind: str, *parts) -> str:
        return "|".join([self.zone, kind, *("" if part is None else str(part) for part in parts)])

    # today's documents

    def live(self) -> dict[datetime, Day]:
        """The days from today on (whole documents: every set), read once."""
        if self._live is None:
            self._live = read_days(self.today, self.today + 7 * DAY, features=True, names=None, all_names=True)
        return self._live

    def _live_span(self, first: datetime | None, last: datetime) -> Day:
        low = max(first or self.today, self.today)
        return merge(day for label, day in self.live().items() if low <= label <= last)

    # spans

    def span(self, first: datetime | None, last: datetime, *, features: bool = False, names=()) -> Day:
        """The members, counters and (if asked) feature and event sets of the local days [first, last] (every
        day up to `last` when first is None)."""
        names = tuple(sorted(names))
        if first is not None and first > last:
            return Day()
        if last >= self.today:
            past = (self.span(first, self.today - DAY, features=features, names=names)
                    if first is None or first < self.today else Day())
            return merge([past, self._live_span(first, last)])
        key = self.key("span", first and first.date(), last.date(), "f" if features else "", ",".join(names))
        value = self.kept({key: last}, lambda _missing: {key: pack_day(self._span_from_days(first, last, features,
                                                                                            names))})[key]
        return unpack_day(value)

    def _span_from_days(self, first, last, features, names) -> Day:
        if first is None:  # since the beginning: yesterday's answer and one more day, when kept
            before = self.key("span", None, (last - DAY).date(), "f" if features else "", ",".join(names))
            doc = _frozen().find_one({"_id": before})
            if doc is not None and self._valid(doc):
                return merge([unpack_day(doc["v"]), *read_days(last, last, features=features,
                                                               names=list(names)).values()])
        return merge(read_days(first, last, features=features, names=list(names)).values())

    # per-period numbers

    def numbers(self, periods: list[tuple[datetime, datetime]]) -> list[dict]:
        """For each period (first day, last day): members active, members new (never active before its first
        day), events, sessions, session seconds and per feature (escaped name) [members, events]."""
        past = [period for period in periods if period[1] < self.today]
        keys = {period: self.key("numbers", period[0].date(), period[1].date()) for period in past}
        kept = self.kept({key: period[1] for period, key in keys.items()},
                         lambda missing: self._numbers_from_days([period for period, key in keys.items()
                                                                  if key in missing], keys))
        return [kept[keys[period]] if period in keys else self._numbers_live(*period) for period in periods]

    def _numbers_from_days(self, periods, keys) -> dict:
        first, last = min(low for low, _high in periods), max(high for _low, high in periods)
        days = read_days(first, last, features=True)
        seen = self.span(None, first - DAY).users
        out, running, added = {}, BitMap(seen), first
        for low, high in sorted(periods):
            while added < low:  # every day before this period's first joins "seen before"
                if added in days:
                    running |= days[added].users
                added += DAY
            out[keys[(low, high)]] = _numbers(merge(day for label, day in days.items() if low <= label <= high),
                                              running)
        return out

    def _numbers_live(self, low: datetime, high: datetime) -> dict:
        return _numbers(self.span(low, high, features=True), self.span(None, low - DAY).users)

    # stickiness

    def stickiness(self, end: datetime, window: int) -> list[int]:
        """[n1..n_window]: members active on exactly k of the `window` days ending `end`."""
        first = end - (window - 1) * DAY
        if end < self.today:
            key = self.key("sticky", window, end.date())
            return self.kept({key: end}, lambda _missing: {key: _distribution(
                _counter(read_days(first, end, counters=False).values()), window)})[key]
        slices = self._slices(first, self.today - DAY) if first < self.today else []
        for label, day in sorted(self.live().items()):
            if first <= label <= end:
                count_into(slices, day.users)
        return _distribution(slices, window)

    def _slices(self, first: datetime, last: datetime) -> list[BitMap]:
        key = self.key("slices", first.date(), last.date())
        value = self.kept({key: last}, lambda _missing: {key: [Binary(bits.serialize()) for bits in _counter(
            read_days(first, last, counters=False).values())]})[key]
        return [BitMap.deserialize(bytes(bits)) for bits in value]

    # who was last active when

    def last_active(self) -> tuple[datetime | None, dict[datetime, BitMap]]:
        """(the first day with activity, {day: members whose last activity before today was that day})."""
        yesterday = self.today - DAY
        key = self.key("last", yesterday.date())
        value = self.kept({key: yesterday}, lambda _missing: {key: self._last_active_from_days(yesterday)})[key]
        return (as_utc(value["first"]) if value["first"] else None,
                {as_utc(label): BitMap.deserialize(bytes(bits)) for label, bits in value["days"]})

    def _last_active_from_days(self, last: datetime) -> dict:
        before = self.key("last", (last - DAY).date())
        doc = _frozen().find_one({"_id": before})
        if doc is not None and self._valid(doc):  # the day before's answer, moved on by one day
            users = merge(read_days(last, last, counters=False).values()).users
            moved = [(label, BitMap.deserialize(bytes(bits)) - users) for label, bits in doc["v"]["days"]]
            moved += [(last, users)] if users else []
            return {"first": doc["v"]["first"] or (last if users else None),
                    "days": [[label, Binary(bits.serialize())] for label, bits in moved if bits]}
        days = read_days(None, last, counters=False)
        later, out = BitMap(), []
        for label in sorted(days, reverse=True):
            only = days[label].users - later
            if only:
                out.append([label, Binary(only.serialize())])
            later |= days[label].users
        return {"first": min(days) if days else None, "days": sorted(out)}


def _numbers(span: Day, seen_before: BitMap) -> dict:
    return {"active": len(span.users), "new": len(span.users - seen_before), "events": span.events,
            "sessions": span.sessions, "seconds": span.seconds,
            "features": {name: [len(bits), events] for name, (bits, events) in span.features.items()}}


def _counter(days) -> list[BitMap]:
    slices: list[BitMap] = []
    for day in days:
        count_into(slices, day.users)
    return slices


def _distribution(slices: list[BitMap], window: int) -> list[int]:
    everyone = BitMap.union(BitMap(), *slices)
    out = []
    for count in range(1, window + 1):
        if count >> len(slices):
            out.append(0)
            continue
        members = BitMap(everyone)
        for index, bits in enumerate(slices):
            members = members & bits if count >> index & 1 else members - bits
        out.append(len(members))
    return out
