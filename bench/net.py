#!/usr/bin/env python3
"""Network benchmark (foundation issue): C-ECHO round trips per second and
one 64 MB C-STORE message over loopback, for

  gateway (Rust receive path) | gateway (plain pynetdicom path) |
  pynetdicom's own SCP        | DCMTK storescp

measured side by side in one run. Prints a table and the ratios.

    python bench/net.py [--echoes 2000] [--store-mb 64] [--runs 3]

C-ECHO client: DCMTK echoscu --repeat N on one association (TCP_NODELAY=1).
C-STORE client: a raw socket that sends pre-fragmented P-DATA-TF PDUs
(16,382-byte max PDU, what every server here accepts) and waits for the
C-STORE-RSP, so the client costs nothing measurable.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from pynetdicom.pdu import A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import A_ASSOCIATE, ImplementationClassUIDNotification, MaximumLengthNotification
from pynetdicom.presentation import build_context
from pynetdicom.transport import AddressInformation

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _common import free_port, wait_port  # noqa: E402
ENV = dict(os.environ, TCP_NODELAY="1", PYTHONPATH=str(HERE / "plugins"))
SC = "1.2.840.10008.5.1.4.1.1.7"
IMPLICIT = "1.2.840.10008.1.2"
MAX_PDU = 16382


PYNETDICOM_SCP = textwrap.dedent("""
    import sys
    from pynetdicom import AE, evt, StoragePresentationContexts
    from pynetdicom.sop_class import Verification
    ae = AE(ae_title="BENCH")
    ae.add_supported_context(Verification)
    ae.supported_contexts = ae.supported_contexts + StoragePresentationContexts
    ae.maximum_pdu_size = %d
    ae.start_server(("127.0.0.1", int(sys.argv[1])), block=True,
                    evt_handlers=[(evt.EVT_C_STORE, lambda e: 0x0000), (evt.EVT_C_ECHO, lambda e: 0x0000)])
""" % MAX_PDU)


def start_servers(tmp: Path) -> dict[str, tuple[subprocess.Popen, int]]:
    servers = {}
    for name, path in (("gateway (rust path)", "rust"), ("gateway (pynetdicom path)", "pynetdicom")):
        port = free_port()
        cfg = tmp / path
        cfg.mkdir()
        (cfg / "gateway.toml").write_text(textwrap.dedent(f"""
            [node]
            ae_title = "BENCH"
            data_dir = "{tmp / ('data-' + path)}"
            workers = 1
            receive_path = "{path}"
            max_pdu = {MAX_PDU}
            log_level = "WARNING"
            [[listeners]]
            port = {port}
            bind = "127.0.0.1"
            ae_titles = ["BENCH"]
            [http]
            enabled = false
            [plugins]
            modules = ["sink"]
        """))
        proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "serve", "--config", str(cfg)], env=ENV,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        servers[name] = (proc, port)
    port = free_port()
    servers["pynetdicom SCP"] = (subprocess.Popen([sys.executable, "-c", PYNETDICOM_SCP, str(port)], env=ENV,
                                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), port)
    if shutil.which("/usr/bin/storescp"):
        port = free_port()
        servers["DCMTK storescp"] = (subprocess.Popen(
            ["/usr/bin/storescp", "--ignore", "-aet", "BENCH", "--max-pdu", str(MAX_PDU), str(port)], env=ENV,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), port)
    for _, port in servers.values():
        wait_port(port)
    return servers


def bench_echo(port: int, n: int) -> float:
    started = time.perf_counter()
    subprocess.run(["/usr/bin/echoscu", "--repeat", str(n), "-aec", "BENCH", "127.0.0.1", str(port)],
                   env=ENV, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return n / (time.perf_counter() - started)


def _encode_rq(prim) -> bytes:
    pdu = A_ASSOCIATE_RQ()
    pdu.from_primitive(prim)
    return pdu.encode()


def associate_rq() -> bytes:
    prim = A_ASSOCIATE()
    prim.application_context_name = "1.2.840.10008.3.1.1.1"
    prim.calling_ae_title, prim.called_ae_title = "RAWBENCH", "BENCH"
    prim.calling_presentation_address = AddressInformation("127.0.0.1", 1)
    prim.called_presentation_address = AddressInformation("127.0.0.1", 2)
    cx = build_context(SC, [IMPLICIT])
    cx.context_id = 1
    prim.presentation_context_definition_list = [cx]
    ml, ic = MaximumLengthNotification(), ImplementationClassUIDNotification()
    ml.maximum_length_received = MAX_PDU
    ic.implementation_class_uid = "1.2.3.4"
    prim.user_information = [ml, ic]
    return _encode_rq(prim)


def store_message(size: int) -> tuple[bytes, bytes]:
    from pydicom.dataset import Dataset
    from pynetdicom.dsutils import encode

    uid = "1.2.826.0.1.3680043.10.1472.98.1"
    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = SC, uid, "OT"
    ds.add_new(0x7FE00010, "OB", os.urandom(1024) * (size // 1024))
    cmd = Dataset()
    cmd.AffectedSOPClassUID, cmd.CommandField, cmd.MessageID = SC, 0x0001, 1
    cmd.Priority, cmd.CommandDataSetType, cmd.AffectedSOPInstanceUID = 0, 0x0000, uid
    body = encode(cmd, True, True)
    return struct.pack("<HHII", 0, 0, 4, len(body)) + body, encode(ds, True, True)


def read_pdu(s: socket.socket) -> bytes:
    head = b""
    while len(head) < 6:
        chunk = s.recv(6 - len(head))
        if not chunk:
            raise ConnectionError("closed")
        head += chunk
    n = struct.unpack(">I", head[2:])[0]
    body = bytearray()
    while len(body) < n:
        chunk = s.recv(n - len(body))
        if not chunk:
            raise ConnectionError("closed")
        body += chunk
    return head + bytes(body)


def bench_store(port: int, pdus: list[bytes], nbytes: int) -> float:
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(associate_rq())
    assert read_pdu(s)[0] == 0x02
    started = time.perf_counter()
    for pdu in pdus:
        s.sendall(pdu)
    rsp = read_pdu(s)
    elapsed = time.perf_counter() - started
    assert rsp[0] == 0x04, rsp[:16]
    s.sendall(struct.pack(">BBI", 5, 0, 4) + b"\x00" * 4)
    try:
        read_pdu(s)
    except ConnectionError:
        pass
    s.close()
    return nbytes / elapsed / 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--echoes", type=int, default=2000)
    ap.add_argument("--store-mb", type=int, default=64)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    from gateway import _rust

    command, dataset = store_message(args.store_mb << 20)
    pdus = _rust.fragment_message(1, command, dataset, MAX_PDU)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        servers = start_servers(Path(tmp))
        try:
            for name, (_, port) in servers.items():
                echo = statistics.median(bench_echo(port, args.echoes) for _ in range(args.runs))
                store = statistics.median(bench_store(port, pdus, len(dataset)) for _ in range(args.runs))
                results[name] = (echo, store)
        finally:
            for proc, _ in servers.values():
                proc.terminate()
                proc.wait(30)
    base_echo, base_store = results["gateway (rust path)"]
    print(f"{'server':<28}{'C-ECHO/s':>10}{f'{args.store_mb} MB C-STORE MB/s':>24}"
          f"{'rust/this echo':>16}{'rust/this store':>17}")
    for name, (echo, store) in results.items():
        print(f"{name:<28}{echo:>10.0f}{store:>24.0f}{base_echo / echo:>16.2f}{base_store / store:>17.2f}")
    print(f"\n{args.echoes} echoes per run on one association (echoscu --repeat), {args.runs} runs, median;"
          f" store: one {len(dataset) / 1e6:.1f} MB implicit-LE dataset in {len(pdus)} PDUs of <= {MAX_PDU} bytes.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
