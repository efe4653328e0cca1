"""The points of a report's series: local days and local hours, in any zone."""

from datetime import date
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from domain.reporting import day_starts, hour_starts, local_range


def local(starts, zone):
    return [s.astimezone(ZoneInfo(zone)).strftime("%H:%M%z") for s in starts]


@pytest.mark.parametrize(
    ("zone", "day", "hours", "first_five"),
    [
        ("Asia/Kolkata", date(2026, 11, 1), 24, ["00:00+0530", "01:00+0530", "02:00+0530"]),
        # the clocks go back at 02:00: 01:00-02:00 twice, one point per offset
        ("America/Los_Angeles", date(2026, 11, 1), 25, ["00:00-0700", "01:00-0700", "01:00-0800"]),
        # they jump from 02:45 to 03:45: the hour that starts there is a point
        ("Pacific/Chatham", date(2026, 9, 27), 24, ["01:00+1245", "02:00+1245", "03:45+1345"]),
        # back half an hour at 02:00: local 01:30 starts a point of its own
        ("Australia/Lord_Howe", date(2027, 4, 4), 25, ["00:00+1100", "01:00+1100", "01:30+1030"]),
    ],
)
def test_hour_points_start_where_the_local_hour_starts(zone, day, hours, first_five):
    window = local_range(day, day, zone)
    starts = hour_starts(window, zone)
    assert (starts[0], starts[-1]) == (window.start_utc, window.end_utc)
    assert len(starts) - 1 == hours
    assert " ".join(first_five) in " ".join(local(starts, zone))


def test_day_points_start_at_local_midnight_across_a_change_of_offset():
    # St John's goes back from -2:30 to -3:30 at 02:00 on 1 Nov: that day lasts 25 hours
    window = local_range(date(2026, 10, 31), date(2026, 11, 2), "America/St_Johns")
    starts = day_starts(window, "America/St_Johns")
    assert local(starts, "America/St_Johns") == [
        "00:00-0230",
        "00:00-0230",
        "00:00-0330",
        "00:00-0330",
    ]
    assert [(b - a).total_seconds() / 3600 for a, b in pairwise(starts)] == [24, 25, 24]
    assert starts[-1] == window.end_utc
