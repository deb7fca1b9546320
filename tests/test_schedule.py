import calendar

from pvarchiver.pb import PayloadType, Sample
from pvarchiver.storage import PlainPBStore
from pvarchiver.storage.batch import append_samples
from pvarchiver.storage.schedule import ETLScheduler

D = PayloadType.SCALAR_DOUBLE
T0 = calendar.timegm((2025, 3, 1, 10, 0, 0))


def test_stages_run_on_the_aligned_schedule(stores: list[PlainPBStore]) -> None:
    sts = stores[0]
    sched = ETLScheduler(stores, now=T0 + 60)
    assert [s.next_run for s in sched.stages] == [T0 + 300, calendar.timegm((2025, 3, 1, 16, 5, 0))]
    append_samples(sts, "A:B", D, [Sample(T0 + i, 0, float(i)) for i in range(0, 7200, 10)])
    assert sched.run_due(T0 + 299) == []
    (stats,) = sched.run_due(T0 + 3600 + 300)  # 11:05: the 10:00 partition moves
    assert stats.files_moved == 1 and stats.samples_moved == 360
    assert sched.stages[0].next_run == T0 + 2 * 3600 + 300
    assert sched.seconds_until_next(T0 + 3600 + 300) == 3600


def test_consolidate_on_shutdown_moves_the_current_partition(stores: list[PlainPBStore]) -> None:
    sts, mts = stores[:2]
    append_samples(sts, "A:B", D, [Sample(T0 + i, 0, float(i)) for i in range(100)])
    sched = ETLScheduler(stores, now=T0 + 100)
    (stats,) = sched.on_shutdown()  # only STS asks for it in the AA's default policy
    assert stats.samples_moved == 100
    assert sts.files_for_pv("A:B") == [] and len(list(mts.read_all("A:B"))) == 100
