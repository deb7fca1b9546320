"""PVA protocol on byte streams, no network in the decoding: framing, validation, search
messages, a scripted server in both byte orders, malformed input, and streams captured at
run time from a real p4p server (pvxs), decoded by ours and compared with p4p's client."""

from __future__ import annotations

import pytest

from pvarchiver.pva.codec import Writer, encode_type
from pvarchiver.pva.connection import (
    ChannelCreated,
    ClientConnection,
    GetResult,
    MonitorReady,
    MonitorUpdate,
    Validated,
)
from pvarchiver.pva.data import Layout, encode_value
from pvarchiver.pva.protocol import (
    CONNECTION_VALIDATED,
    CONNECTION_VALIDATION,
    CREATE_CHANNEL,
    GET,
    MONITOR,
    SEARCH_RESPONSE,
    Framer,
    ProtocolError,
    Status,
    build_control,
    build_message,
    build_search,
    parse_search_response,
    write_status,
)
from pvarchiver.pva.request import pv_request

from .test_pva_codec import NTSCALAR


def srv(cmd: int, body: bytes | bytearray, order: str = ">") -> bytes:
    return build_message(cmd, body, order, server=True)


def handshake(order: str) -> bytes:
    w = Writer(order)
    w.pack("IH", 0x10000, 0x7FFF)
    w.size(2)
    w.string("anonymous")
    w.string("ca")
    ok = Writer(order)
    write_status(ok, Status())
    return (
        build_control(2, 0, order, server=True)
        + srv(CONNECTION_VALIDATION, w.buf, order)
        + srv(CONNECTION_VALIDATED, ok.buf, order)
    )


def test_framer_joins_segments_and_checks_headers() -> None:
    body = b"x" * 10
    first = bytes((0xCA, 2, 0x40 | 0x10, 13)) + (4).to_bytes(4, "little") + body[:4]
    last = bytes((0xCA, 2, 0x40 | 0x20, 13)) + (6).to_bytes(4, "little") + body[4:]
    f = Framer()
    frames = list(f.feed(first + last[:3])) + list(f.feed(last[3:]))
    assert [(fr.command, fr.payload) for fr in frames] == [(13, body)]
    with pytest.raises(ProtocolError, match="bad PVA header"):
        list(Framer().feed(b"\xcb\x02\x40\x01\x00\x00\x00\x00"))
    with pytest.raises(ProtocolError, match="direction"):
        list(Framer().feed(build_message(1, b"", ">")))  # a client message from the "server"
    with pytest.raises(ProtocolError, match="too large"):
        list(Framer().feed(b"\xca\x02\xc0\x01\x7f\xff\xff\xff"))
    with pytest.raises(ProtocolError, match="segmentation"):
        list(Framer().feed(last))


@pytest.mark.parametrize("order", "<>")
def test_validation_answer_and_channel(order: str) -> None:
    c = ClientConnection("alice", "host1")
    events = c.receive(handshake(order))
    assert events == [Validated(Status(), "ca")]
    assert c.order == order and c.auth_methods == ("anonymous", "ca")
    out = c.outgoing()
    # our answer: header in the server's order, buffer size, registry size, QoS, "ca", creds
    assert out[:4] == bytes((0xCA, 2, 0x80 if order == ">" else 0, CONNECTION_VALIDATION))
    assert b"\x02ca\x80\x00\x02\x04user\x60\x04host\x60\x05alice\x05host1" in out
    c.create_channel(5, "PV:A")
    out = c.outgoing()
    assert out[3] == CREATE_CHANNEL and out.endswith(b"\x04PV:A")
    w = Writer(order)
    w.pack("II", 5, 77)
    write_status(w, Status())
    assert c.receive(srv(CREATE_CHANNEL, w.buf, order)) == [ChannelCreated(5, 77, Status())]


def test_anonymous_without_user() -> None:
    c = ClientConnection()
    assert c.receive(handshake(">"))[0].auth == "anonymous"
    assert c.outgoing().endswith(b"\x09anonymous\xff")


def test_messages_before_validation_are_refused() -> None:
    c = ClientConnection()
    w = Writer(">")
    w.pack("II", 1, 1)
    with pytest.raises(ProtocolError, match="before connection validation"):
        c.receive(srv(CREATE_CHANNEL, w.buf))


def _monitor_server(c: ClientConnection, order: str) -> Layout:
    c.receive(handshake(order))
    c.monitor(77, 3, pv_request())
    c.outgoing()
    w = Writer(order)
    w.pack("IB", 3, 0x08)
    write_status(w, Status())
    encode_type(NTSCALAR, w)
    events = c.receive(srv(MONITOR, w.buf, order))
    assert isinstance(events[0], MonitorReady) and events[0].status.ok
    start = c.outgoing()
    assert start[3] == MONITOR and start[-1] == 0x44  # START (pipeline off)
    return Layout(NTSCALAR)


def _update(order: str, bits: int, fields: list[tuple[object, object]], overrun: int = 0) -> bytes:
    w = Writer(order)
    w.pack("IB", 3, 0)
    w.bitset(bits)
    for fd, v in fields:
        encode_value(fd, v, w)  # type: ignore[arg-type]
    w.bitset(overrun)
    return srv(MONITOR, w.buf, order)


@pytest.mark.parametrize("order", "<>")
def test_monitor_updates_and_malformed(order: str) -> None:
    c = ClientConnection()
    layout = _monitor_server(c, order)
    full = _update(order, 1, [(NTSCALAR, {"value": 1.0, "alarm": {"message": "a"}})])
    (u,) = c.receive(full)
    assert isinstance(u, MonitorUpdate) and u.value["value"] == 1.0 and u.changed == 1
    i = layout.index
    d, ln, s = layout.descs[i["value"]], layout.descs[i["timeStamp.secondsPastEpoch"]], None
    part = _update(
        order, (1 << i["value"]) | (1 << i["timeStamp.secondsPastEpoch"]), [(d, 2.0), (ln, 99)], 2
    )
    (u2,) = c.receive(part[:5]) + c.receive(part[5:])
    assert u2.value["value"] == 2.0 and u2.value["timeStamp.secondsPastEpoch"] == 99
    assert u2.value["alarm.message"] == "a" and u2.overrun == 2
    assert u.value["value"] == 1.0  # the earlier update's value was not changed in place
    # a truncated update (size word honest, body cut) is an error, never a half update
    bad = bytearray(part)
    bad_body = bytes(bad[8:-6])
    with pytest.raises(ProtocolError):
        c.receive(srv(MONITOR, bad_body, order))
    assert s is None


def test_get_sequence() -> None:
    c = ClientConnection()
    c.receive(handshake("<"))
    c.get(77, 9, pv_request())
    c.outgoing()
    w = Writer("<")
    w.pack("IB", 9, 0x08)
    write_status(w, Status())
    encode_type(NTSCALAR, w)
    assert c.receive(srv(GET, w.buf, "<")) == []
    assert c.outgoing()[-1] == 0  # the GET itself follows the INIT reply
    w = Writer("<")
    w.pack("IB", 9, 0)
    write_status(w, Status())
    w.bitset(1)
    encode_value(NTSCALAR, {"value": 4.0}, w)
    (res,) = c.receive(srv(GET, w.buf, "<"))
    assert isinstance(res, GetResult) and res.value is not None and res.value["value"] == 4.0
    assert c.outgoing()[3] == 15  # DESTROY_REQUEST after the GET


def test_error_status_is_reported() -> None:
    c = ClientConnection()
    c.receive(handshake(">"))
    c.get(1, 2, pv_request())
    w = Writer(">")
    w.pack("IB", 2, 0x08)
    write_status(w, Status(2, "no such field", "stack"))
    (res,) = c.receive(srv(GET, w.buf))
    assert res == GetResult(2, Status(2, "no such field", "stack"), None)


def test_search_messages() -> None:
    msg = build_search(0x01020304, [(7, "A:B"), (8, "C")], 5555)
    assert msg[:4] == b"\xca\x02\x80\x03"
    body = msg[8:]
    assert body[:8] == b"\x01\x02\x03\x04\x80\x00\x00\x00" and body[8:24] == bytes(16)
    assert body[24:26] == b"\x15\xb3" and body[26:31] == b"\x01\x03tcp"
    assert body[31:] == b"\x00\x02\x00\x00\x00\x07\x03A:B\x00\x00\x00\x08\x01C"
    w = Writer("<")
    w.buf += b"G" * 12
    w.pack("I", 0x01020304)
    w.buf += bytes(10) + b"\xff\xff" + bytes([10, 0, 0, 2])
    w.pack("H", 5075)
    w.string("tcp")
    w.u8(1)
    w.pack("HII", 2, 7, 8)
    resp = parse_search_response(bytes(w.buf), "<")
    assert (resp.addr, resp.port, resp.found, resp.cids) == ("10.0.0.2", 5075, True, (7, 8))
    with pytest.raises(ValueError):
        parse_search_response(bytes(w.buf)[:-3], "<")
    assert SEARCH_RESPONSE == 4


# ------------------------------------------------------------ bytes from a real server


def _plain(v: object) -> object:
    """p4p values (numpy arrays, nested dicts) as plain Python for comparison."""
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if hasattr(v, "tolist"):
        return v.tolist()
    if isinstance(v, list | tuple):
        return [_plain(x) for x in v]
    return v


def test_captured_p4p_stream_decodes_like_p4p(tmp_path: object) -> None:
    """Bytes captured from a real p4p server, replayed one byte at a time into a fresh
    connection: the same events as when read whole, and the values p4p's own client reads."""
    from p4p.client.thread import Context
    from p4p.nt import NTEnum, NTScalar
    from p4p.server.thread import SharedPV

    from .pva_peers import capture, p4p_client_conf, p4p_server

    pvs = {
        "T:ARR": SharedPV(nt=NTScalar("ai", display=True), initial=[1, -2, 3]),
        "T:ENUM": SharedPV(nt=NTEnum(), initial={"index": 1, "choices": ["a", "b"]}),
    }
    with p4p_server(pvs) as (sport, bport):
        ctx = Context("pva", conf=p4p_client_conf(bport), useenv=False, nt=False)
        try:
            for name in pvs:
                theirs = _plain(ctx.get(name).todict())
                chunks, events = capture(sport, name)
                (res,) = [e for e in events if isinstance(e, GetResult)]
                assert res.value is not None and res.value.todict() == theirs
                replay = ClientConnection("tester", "localhost")
                again = []
                for b in b"".join(chunks):
                    got = replay.receive(bytes([b]))
                    for ev in got:  # the client's side of the dialogue, as in capture()
                        if isinstance(ev, ChannelCreated):
                            replay.get(ev.sid, 1, pv_request())
                    again += got
                assert [type(e) for e in again] == [type(e) for e in events]
                (res2,) = [e for e in again if isinstance(e, GetResult)]
                assert res2.value is not None and res2.value.todict() == theirs
        finally:
            ctx.close()
