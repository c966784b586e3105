"""`gateway_instance_stored` and `gateway_ls_columns` (issue 11.4): a plugin sees
every object the storage service stored — over the network and by `import` —
with its stored file, and adds a column to `dicom-gateway ls`."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import TEST_PLUGINS, basic_toml, free_port, write_config, write_cts


def _cli(*args):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(TEST_PLUGINS), os.environ.get("PYTHONPATH")])))
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], capture_output=True, text=True,
                          timeout=120, env=env)


def test_hook_instance_stored(inprocess_gateway, tmp_path):
    from pynetdicom import AE
    from pydicom import dcmread

    port = free_port()
    inprocess_gateway(basic_toml(port, tmp_path / "d", modules=["observer"]))
    files = write_cts(tmp_path / "in", 2, patient_id="OBS")
    ae = AE(ae_title="OBSERVED")
    ae.add_requested_context("1.2.840.10008.5.1.4.1.1.2", ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
    assoc = ae.associate("127.0.0.1", port, ae_title="DICOM_GATEWAY")
    assert assoc.is_established
    try:
        statuses = [int(assoc.send_c_store(dcmread(f)).Status) for f in sorted(files)]
        statuses.append(int(assoc.send_c_store(dcmread(sorted(files)[0])).Status))  # identical resend
    finally:
        assoc.release()
    assert statuses == [0, 0, 0]
    rows = [r.split("\t") for r in (tmp_path / "d" / "observed.txt").read_text().splitlines()]
    expected = sorted(str(dcmread(f).SOPInstanceUID) for f in files)
    assert sorted(r[0] for r in rows) == expected  # once each: the resend (STO-6) is not a new object
    assert all(r[2] == "CT" and r[4] == "True" and r[3].startswith(str(tmp_path / "d")) for r in rows)


def test_hook_ls_columns(tmp_path):
    data = tmp_path / "d"
    cfg = write_config(tmp_path / "c", basic_toml(free_port(), data, modules=["observer"]))
    write_cts(tmp_path / "in", 3, patient_id="COLS")
    imported = _cli("import", str(tmp_path / "in"), "--config", str(cfg))
    assert imported.returncode == 0, imported.stdout + imported.stderr
    assert len((data / "observed.txt").read_text().splitlines()) == 3  # import goes through the hook too
    listing = _cli("ls", "--config", str(cfg))
    assert listing.returncode == 0, listing.stderr
    series_line = listing.stdout.splitlines()[2]
    assert "3 instances  observed 3  " in series_line, listing.stdout
