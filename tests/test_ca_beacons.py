"""BeaconMonitor: which beacons mean a new or restarted server (no sockets, explicit times)."""

from __future__ import annotations

from pvarchiver.ca.beacons import BeaconMonitor

A = ("10.0.0.1", 5064)
B = ("10.0.0.2", 5064)


def test_first_beacon_of_a_server_is_an_anomaly() -> None:
    mon = BeaconMonitor()
    assert mon.beacon(A, 17, now=100.0)
    assert mon.anomalies == 1
    assert mon.last_seen(A) == 100.0
    assert mon.last_seen(B) is None


def test_regular_sequence_is_quiet() -> None:
    mon = BeaconMonitor()
    mon.beacon(A, 5, 0.0)
    assert [mon.beacon(A, i, float(i)) for i in range(6, 20)] == [False] * 14
    assert mon.anomalies == 1
    assert mon.last_seen(A) == 19.0


def test_same_beacon_twice_is_not_an_anomaly() -> None:
    mon = BeaconMonitor()
    mon.beacon(A, 5, 0.0)
    assert not mon.beacon(A, 5, 0.001)  # via a second interface or a repeater


def test_restart_and_gap_are_anomalies() -> None:
    mon = BeaconMonitor()
    mon.beacon(A, 5, 0.0)
    assert mon.beacon(A, 0, 1.0)  # restarted: ids start again
    assert not mon.beacon(A, 1, 2.0)
    assert mon.beacon(A, 9, 3.0)  # beacons lost or server restarted in between
    assert mon.anomalies == 3


def test_id_wraps_around() -> None:
    mon = BeaconMonitor()
    mon.beacon(A, 0xFFFFFFFF, 0.0)
    assert not mon.beacon(A, 0, 1.0)


def test_servers_are_told_apart_by_host_and_port() -> None:
    mon = BeaconMonitor()
    assert mon.beacon(A, 5, 0.0)
    assert mon.beacon(B, 6, 0.0)  # another server, although its id follows A's
    assert mon.beacon(("10.0.0.1", 5070), 6, 0.0)
    assert not mon.beacon(A, 6, 1.0)
    assert len(mon) == 3 and mon.anomalies == 3
