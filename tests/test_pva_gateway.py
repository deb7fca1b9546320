"""p4p's PVA gateway (``pvagw``) beside the archiver, as compose.yaml's ``pvagw`` profile and
docs/pva.md ("Containers") set it up: the shipped ``deploy/pvagw.json`` is what runs, with
only its addresses and ports moved to free loopback ones, and our client reaches a p4p
server's PV through the real gateway by TCP search (``EPICS_PVA_NAME_SERVERS``), as the
containerised archiver does.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from pvarchiver.pva.client import PVAClient
from pvarchiver.pva.env import PVAConfig

from .aio import run
from .helpers.net import free_port
from .pva_peers import p4p_server

ROOT = Path(__file__).resolve().parents[1]


def test_compose_profile_and_shipped_config() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    gw = compose["services"]["pvagw"]
    assert gw["profiles"] == ["pvagw"] and gw["network_mode"] == "host"
    assert "./deploy/pvagw.json:/etc/pvagw.json:ro" in gw["volumes"]
    assert "pvagw /etc/pvagw.json" in gw["entrypoint"][-1]
    conf = json.loads((ROOT / "deploy" / "pvagw.json").read_text())
    (srv,) = conf["servers"]
    assert (srv["serverport"], srv["bcastport"], srv["clients"]) == (9075, 9076, ["host"])


def test_archiver_client_through_real_pvagw(tmp_path: Path) -> None:
    pytest.importorskip("p4p")
    pvagw = shutil.which("pvagw") or str(Path(__import__("sys").executable).parent / "pvagw")
    if not Path(pvagw).exists():
        pytest.skip("pvagw (p4p) is not installed")
    from p4p.nt import NTScalar
    from p4p.server.thread import SharedPV

    pvs = {"HOST:PV": SharedPV(nt=NTScalar("d"), initial=4.5)}
    with p4p_server(pvs) as (_, bport):
        conf = json.loads((ROOT / "deploy" / "pvagw.json").read_text())
        gw_sport, gw_bport = free_port(), free_port()
        conf["clients"][0].update(addrlist=f"127.0.0.1:{bport}", autoaddrlist=False)
        conf["servers"][0].update(interface=["127.0.0.1"], serverport=gw_sport, bcastport=gw_bport)
        path = tmp_path / "pvagw.json"
        path.write_text(json.dumps(conf))
        proc = subprocess.Popen(
            [pvagw, str(path)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        try:

            async def main() -> float:
                cfg = PVAConfig.from_env(
                    {
                        "EPICS_PVA_AUTO_ADDR_LIST": "NO",
                        "EPICS_PVA_NAME_SERVERS": f"127.0.0.1:{gw_sport}",
                    }
                )
                client = PVAClient(cfg)
                await client.start()
                try:
                    ch = client.channel("HOST:PV")
                    v = await ch.get(30)
                    assert ch.server == ("127.0.0.1", gw_sport)  # through the gateway
                    return float(v["value"])
                finally:
                    await client.close()

            assert run(main(), 60) == 4.5
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
