"""Coarse times (docs/privacy.md): a row that outlives the moment it records keeps only the hour or
the day its feature needs. Expiries are rounded up, so nothing ends before it should; the times a
feature compares with later are rounded down. All in UTC."""

from __future__ import annotations

from datetime import datetime, timedelta

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)


def start_of_hour(moment: datetime) -> datetime:
    return moment.replace(minute=0, second=0, microsecond=0)


def end_of_hour(moment: datetime) -> datetime:
    """The first full hour at or after `moment`."""
    start = start_of_hour(moment)
    return start if start == moment else start + HOUR


def end_of_day(moment: datetime) -> datetime:
    """The first midnight at or after `moment`."""
    start = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    return start if start == moment else start + DAY
