import calendar

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pvarchiver.storage.partitions import (
    Granularity,
    next_etl_time,
    parse_partition_name,
    partition_bounds,
    partition_for,
    partition_start,
    shift_partition,
)

T = calendar.timegm((2012, 8, 24, 16, 37, 0))


@pytest.mark.parametrize(
    ("gran", "name"),
    [
        (Granularity.PARTITION_5MIN, "2012_08_24_16_35"),
        (Granularity.PARTITION_15MIN, "2012_08_24_16_30"),
        (Granularity.PARTITION_30MIN, "2012_08_24_16_30"),
        (Granularity.PARTITION_HOUR, "2012_08_24_16"),
        (Granularity.PARTITION_DAY, "2012_08_24"),
        (Granularity.PARTITION_MONTH, "2012_08"),
        (Granularity.PARTITION_YEAR, "2012"),
    ],
)
def test_partition_names_match_the_aa(gran: Granularity, name: str) -> None:
    assert partition_for(T, gran) == name
    assert parse_partition_name(name, gran) == partition_start(T, gran)


def test_names_of_another_granularity_are_rejected() -> None:
    assert parse_partition_name("2012_08_24", Granularity.PARTITION_HOUR) is None
    assert parse_partition_name("2012_08_24_16_31", Granularity.PARTITION_5MIN) is None
    assert parse_partition_name("2012_13", Granularity.PARTITION_MONTH) is None
    assert parse_partition_name("2012_02_30", Granularity.PARTITION_DAY) is None
    assert parse_partition_name("20x2", Granularity.PARTITION_YEAR) is None
    assert parse_partition_name("2012_08_24_16_35", Granularity.PARTITION_15MIN) is None


def test_month_and_year_bounds_follow_the_calendar() -> None:
    feb = calendar.timegm((2024, 2, 10, 0, 0, 0))
    assert partition_bounds(feb, Granularity.PARTITION_MONTH) == (
        calendar.timegm((2024, 2, 1, 0, 0, 0)),
        calendar.timegm((2024, 3, 1, 0, 0, 0)),
    )
    dec = calendar.timegm((2024, 12, 31, 23, 59, 59))
    assert shift_partition(
        partition_start(dec, Granularity.PARTITION_MONTH), Granularity.PARTITION_MONTH, 1
    ) == calendar.timegm((2025, 1, 1, 0, 0, 0))
    assert shift_partition(
        calendar.timegm((2025, 1, 1, 0, 0, 0)), Granularity.PARTITION_MONTH, -13
    ) == calendar.timegm((2023, 12, 1, 0, 0, 0))


def test_granularity_parse_lists_valid_values() -> None:
    assert Granularity.parse("partition_hour") is Granularity.PARTITION_HOUR
    with pytest.raises(ValueError, match="PARTITION_5MIN"):
        Granularity.parse("PARTITION_WEEK")


@given(st.integers(0, 2**33), st.sampled_from(list(Granularity)))
def test_partitions_nest_in_a_utc_year(ts: int, gran: Granularity) -> None:
    start, end = partition_bounds(ts, gran)
    assert start <= ts < end
    year_start, year_end = partition_bounds(ts, Granularity.PARTITION_YEAR)
    assert year_start <= start and end <= year_end
    assert parse_partition_name(partition_for(ts, gran), gran) == start
    assert partition_for(end - 1, gran) == partition_for(ts, gran)
    assert partition_for(end, gran) != partition_for(ts, gran)


def test_etl_schedule_is_aligned_plus_five_minutes() -> None:
    hourly = next_etl_time(calendar.timegm((2024, 5, 1, 10, 7, 0)), Granularity.PARTITION_HOUR)
    assert hourly == calendar.timegm((2024, 5, 1, 11, 5, 0))
    at = next_etl_time(calendar.timegm((2024, 5, 1, 10, 3, 0)), Granularity.PARTITION_HOUR)
    assert at == calendar.timegm((2024, 5, 1, 10, 5, 0))
    daily = next_etl_time(calendar.timegm((2024, 5, 1, 9, 0, 0)), Granularity.PARTITION_DAY)
    assert daily == calendar.timegm((2024, 5, 1, 16, 5, 0))  # 8 h period: 00:05, 08:05, 16:05
    five = next_etl_time(calendar.timegm((2024, 5, 1, 9, 1, 0)), Granularity.PARTITION_5MIN)
    assert five == calendar.timegm((2024, 5, 1, 9, 5, 0))
