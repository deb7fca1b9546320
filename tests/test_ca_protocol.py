"""Pure tests of the CA wire layer: headers, builders and the streaming framer."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from pvarchiver.ca import dbr
from pvarchiver.ca import protocol as P
from pvarchiver.pb import PayloadType


def collect(framer: P.Framer) -> list[P.Message]:
    out: list[P.Message] = []
    framer.other = lambda c, dt, n, p1, p2, body: out.append(P.Message(c, dt, n, p1, p2, body))
    return out


def test_pad_and_string_payload() -> None:
    assert P.pad(b"") == b""
    assert P.pad(b"abc") == b"abc\0\0\0\0\0"
    assert len(P.pad(b"x" * 8)) == 8
    # A name of exactly 8 chars still needs its NUL, hence 16 bytes.
    assert P.string_payload("ABCDEFGH") == b"ABCDEFGH" + b"\0" * 8


def test_header_normal_and_extended() -> None:
    h = P.pack_header(P.EVENT_ADD, 16, 20, 1, 7, 9)
    assert len(h) == 16
    assert struct.unpack(">HHHHII", h) == (1, 16, 20, 1, 7, 9)
    ext = P.pack_header(P.READ_NOTIFY, 800_016, 20, 100_000, 3, 4)
    assert len(ext) == 24
    assert struct.unpack(">HHHHIIII", ext) == (15, 0xFFFF, 20, 0, 3, 4, 800_016, 100_000)
    # count alone above 16 bits also needs the extended form
    assert len(P.pack_header(P.READ_NOTIFY, 0, 20, 70_000, 3, 4)) == 24


@pytest.mark.parametrize(
    "msg",
    [
        P.version(1, 5),
        P.search("PV:NAME", 12),
        P.create_chan("PV:NAME", 3),
        P.clear_channel(4, 3),
        P.event_add(20, 1, 4, 99, P.DBE_LOG | P.DBE_ALARM),
        P.event_cancel(20, 1, 4, 99),
        P.read_notify(34, 1, 4, 5),
        P.write_notify(6, 1, 4, 5, struct.pack(">d", 1.5)),
        P.echo(),
        P.events_off(),
        P.events_on(),
        P.client_name("user"),
        P.host_name("host.example"),
        P.repeater_register("127.0.0.1"),
        P.search_reply(5064, 12),
        P.not_found(12),
        P.create_chan_reply(6, 1, 3, 77),
        P.create_ch_fail(3),
        P.access_rights(3, 3),
        P.server_disconn(3),
        P.read_notify_reply(20, 1, 5, b"\0" * 16),
        P.write_notify_reply(6, 1, 5),
        P.error(P.read_notify(20, 1, 4, 5), 3, 42, "bad"),
        P.beacon(5064, 7),
        P.repeater_confirm(),
    ],
)
def test_every_message_is_framed_and_padded(msg: bytes) -> None:
    assert len(msg) % 8 == 0
    out = list(P.iter_messages(msg))
    assert len(out) == 1
    cmd, size = struct.unpack_from(">HH", msg)
    assert out[0].cmd == cmd
    if size != 0xFFFF:
        assert len(out[0].payload) == size


def test_field_meanings() -> None:
    (m,) = P.iter_messages(P.search("A:B", 42, P.DO_REPLY))
    assert (m.cmd, m.data_type, m.data_count, m.p1, m.p2) == (6, 10, 13, 42, 42)
    assert m.payload.rstrip(b"\0") == b"A:B"
    (m,) = P.iter_messages(P.beacon(15064, 9, "127.0.0.1"))
    assert (m.data_count, m.p1, P.int_to_ip(m.p2)) == (15064, 9, "127.0.0.1")
    (m,) = P.iter_messages(P.event_add(20, 1, 4, 99, P.DBE_PROPERTY))
    assert P.parse_event_add_payload(m.payload) == P.DBE_PROPERTY
    (m,) = P.iter_messages(P.error(P.read_notify(20, 1, 4, 5), 3, 42, "no way"))
    req, text = P.parse_error_payload(m.payload)
    assert req is not None and req.cmd == P.READ_NOTIFY and req.p2 == 5 and text == "no way"
    assert P.ip_to_int("10.1.2.3") == 0x0A010203 and P.int_to_ip(0x0A010203) == "10.1.2.3"


def test_framer_byte_by_byte_and_event_dispatch() -> None:
    payload = struct.pack(">hhIIid", 0, 0, 100, 5, 0, 2.5)
    stream = (
        P.access_rights(1, 3)
        + P.create_chan_reply(6, 1, 1, 7)
        + P.event_add_reply(20, 1, 99, payload) * 3
        + P.event_add_reply(20, 1, 98, payload)  # unknown subscription: dropped silently
        + P.pack_header(P.EVENT_ADD, 0, 20, 1, 1, 99)  # cancel confirmation: goes to other
    )
    events: list[tuple[int, ...]] = []
    for chunk_size in (1, 3, 7, 16, 1000):
        framer = P.Framer()
        others = collect(framer)
        events.clear()
        framer.events[99] = lambda buf, off, n: events.append(
            (*struct.unpack_from(">hhIIid", buf, off), n)
        )
        for i in range(0, len(stream), chunk_size):
            framer.feed(stream[i : i + chunk_size])
        assert [m.cmd for m in others] == [P.ACCESS_RIGHTS, P.CREATE_CHAN, P.EVENT_ADD]
        assert events == [(0, 0, 100, 5, 0, 2.5, 1)] * 3
        assert framer.pending == 0


def test_framer_extended_array() -> None:
    n = 100_000
    values = np.arange(n, dtype=">f8")
    body = struct.pack(">hhIIi", 0, 1, 10, 20, 0) + values.tobytes()
    msg = P.event_add_reply(20, n, 5, body)
    got: list[object] = []
    handler = dbr.time_event_decoder(dbr.DOUBLE, True, lambda *a: got.append(a))
    framer = P.Framer()
    framer.events[5] = handler
    for i in range(0, len(msg), 65536):
        framer.feed(msg[i : i + 65536])
    secs, nanos, sev, st, arr = got[0]  # type: ignore[misc]
    assert (secs, nanos, sev, st) == (10 + dbr.EPICS_EPOCH_OFFSET, 20, 1, 0)
    assert isinstance(arr, np.ndarray) and arr.dtype == np.float64
    np.testing.assert_array_equal(arr, np.arange(n))


# native -> (struct format after status/severity/stamp, fields incl. RISC pads, decoded value)
TIME_LAYOUT: dict[int, tuple[str, tuple[object, ...], object]] = {
    dbr.STRING: ("40s", (b"hello\0garbage".ljust(40, b"\0"),), "hello"),
    dbr.SHORT: ("hh", (0, -3), -3),
    dbr.FLOAT: ("f", (1.5,), 1.5),
    dbr.ENUM: ("hH", (0, 2), 2),
    dbr.CHAR: ("hBB", (0, 0, 200), 200),
    dbr.LONG: ("i", (-70000,), -70000),
    dbr.DOUBLE: ("id", (0, 2.25), 2.25),
}


@pytest.mark.parametrize("native", range(7))
def test_time_scalar_layouts(native: int) -> None:
    fmt, fields, expect = TIME_LAYOUT[native]
    payload = struct.pack(">hhII" + fmt, 1, 2, 3, 4, *fields)
    got: list[tuple[object, ...]] = []
    dbr.time_event_decoder(native, False, lambda *a: got.append(a))(payload, 0, 1)
    assert got == [(3 + dbr.EPICS_EPOCH_OFFSET, 4, 2, 1, expect)]
    rd = dbr.decode(dbr.time_type(native), payload, 1)
    assert (rd.value, rd.secs, rd.nanos, rd.status, rd.severity) == (
        expect,
        3 + dbr.EPICS_EPOCH_OFFSET,
        4,
        1,
        2,
    )
    assert dbr.data_size(dbr.time_type(native), 1) == len(payload)


def test_ctrl_double_and_enum_layouts() -> None:
    body = struct.pack(">hhhh8s8dd", 0, 0, 3, 0, b"mm", 10, -10, 9, 8, -8, -9, 5, -5, 1.25)
    rd = dbr.decode(dbr.ctrl_type(dbr.DOUBLE), body, 1)
    assert (rd.precision, rd.units, rd.value) == (3, "mm", 1.25)
    assert (rd.upper_disp_limit, rd.lower_alarm_limit, rd.lower_ctrl_limit) == (10, -9, -5)
    strs = b"".join(s.ljust(26, b"\0") for s in (b"Off", b"On")) + b"\0" * 26 * 14
    body = struct.pack(">hhh", 0, 0, 2) + strs + struct.pack(">H", 1)
    rd = dbr.decode(dbr.ctrl_type(dbr.ENUM), body, 1)
    assert rd.enum_strings == ["Off", "On"] and rd.value == 1


def test_encode_roundtrip() -> None:
    raw, n = dbr.encode(dbr.DOUBLE, [1.0, 2.0])
    assert n == 2 and dbr.decode(dbr.DOUBLE, raw, 2).value.tolist() == [1.0, 2.0]
    raw, n = dbr.encode(dbr.STRING, "abc")
    assert n == 1 and dbr.decode(dbr.STRING, raw, 1).value == "abc"
    raw, n = dbr.encode(dbr.CHAR, b"xyz")
    assert dbr.decode(dbr.CHAR, raw, 3).value == b"xyz"


def test_payload_type_map() -> None:
    assert dbr.payload_type(dbr.DOUBLE, 1) is PayloadType.SCALAR_DOUBLE
    assert dbr.payload_type(dbr.DOUBLE, 10) is PayloadType.WAVEFORM_DOUBLE
    assert dbr.payload_type(dbr.FLOAT, 1) is PayloadType.SCALAR_FLOAT
    assert dbr.payload_type(dbr.LONG, 1) is PayloadType.SCALAR_INT
    assert dbr.payload_type(dbr.SHORT, 1) is PayloadType.SCALAR_SHORT
    assert dbr.payload_type(dbr.ENUM, 1) is PayloadType.SCALAR_ENUM
    assert dbr.payload_type(dbr.CHAR, 1) is PayloadType.SCALAR_BYTE
    assert dbr.payload_type(dbr.CHAR, 256) is PayloadType.WAVEFORM_BYTE
    assert dbr.payload_type(dbr.STRING, 1) is PayloadType.SCALAR_STRING
    assert dbr.payload_type(dbr.STRING, 4) is PayloadType.WAVEFORM_STRING


def test_config_from_env() -> None:
    from pvarchiver.ca import CAConfig

    cfg = CAConfig.from_env(
        {
            "EPICS_CA_ADDR_LIST": "127.0.0.1 127.0.0.2:6000 127.0.0.1",
            "EPICS_CA_AUTO_ADDR_LIST": "NO",
            "EPICS_CA_SERVER_PORT": "7064",
            "EPICS_CA_REPEATER_PORT": "7065",
            "EPICS_CA_MAX_ARRAY_BYTES": "1000000",
            "EPICS_CA_CONN_TMO": "2.5",
            "EPICS_CA_MAX_SEARCH_PERIOD": "5",
            "EPICS_CA_NAME_SERVERS": "127.0.0.3",
        }
    )
    assert cfg.addr_list == [("127.0.0.1", 7064), ("127.0.0.2", 6000)]
    assert cfg.search_targets() == cfg.addr_list
    assert (cfg.server_port, cfg.repeater_port, cfg.max_array_bytes) == (7064, 7065, 1_000_000)
    assert (cfg.conn_tmo, cfg.max_search_period) == (2.5, 5.0)
    assert cfg.name_servers == [("127.0.0.3", 7064)]
    default = CAConfig.from_env({})
    assert default.auto_addr_list and default.server_port == 5064
    assert ("255.255.255.255", 5064) in default.search_targets()
    assert default.max_array_bytes == 16384 and default.max_search_period == 300
