"""The template third-party plugin, examples/suv-plugin (issue 11 item 4), installed
into a temporary virtualenv from its folder, as a stranger would install it: its command and its
`ls` column appear, and the SUV factors it stores for the project's test PET
series — sent to a real gateway with DCMTK storescu — match a hand calculation."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

from conftest import basic_toml, dcmtk, free_port, wait_for, write_config

REPO = Path(__file__).resolve().parent.parent
NODELAY = dict(os.environ, TCP_NODELAY="1")

# The generator's PET series (gateway.testing.corpus make_pt): FDG injected at
# 07:15:00, series (and acquisition) start 08:15:00 on the same day, Decay
# Correction START, 370 MBq, half-life 6586.2 s, patient 82 kg, Units BQML.
#   elapsed       = 08:15:00 - 07:15:00 = 3600 s
#   decayed dose  = 370e6 * 2 ** (-3600 / 6586.2) = 253.314e6 Bq  (2 ** -0.546597 = 0.684633)
#   SUV factor    = 82000 g / 253.314e6 Bq = 3.23709e-4 g/ml
HAND_COMPUTED = 82000 / 253.314e6
# Its Philips factor (7053,1000) is written from the undecayed dose: 82000 / 370e6
# = 2.21622e-4 g/ml. So the two differ by the decay over the hour, 1 / 0.684633 = 1.4606.
HAND_PHILIPS = 82000 / 370e6


@pytest.fixture(scope="module")
def suv_site(tmp_path_factory) -> Path:
    """A temporary virtualenv with examples/suv-plugin installed from its folder, as a
    site would install it; its python. The gateway itself comes from this test
    run's environment (a .pth), so what is tested is the installed plugin."""
    import site
    import sysconfig
    import venv

    tmp = tmp_path_factory.mktemp("suv")
    source = shutil.copytree(REPO / "examples" / "suv-plugin", tmp / "src")  # builds leave no files in the repo
    venv.EnvBuilder(with_pip=False).create(tmp / "venv")
    python = tmp / "venv" / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    ours = [p for p in {sysconfig.get_paths()["purelib"], *site.getsitepackages()} if Path(p).is_dir()]
    # addsitedir, not a bare path: the editable installs' own .pth files must run too
    (Path(purelib) / "dicom_gateway_under_test.pth").write_text(
        "".join(f"import site; site.addsitedir({p!r})\n" for p in ours))
    run = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                          "--no-build-isolation", "--no-deps", "--disable-pip-version-check", str(source)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert (Path(purelib) / "gateway_suv" / "plugin.py").exists()
    return python


@pytest.fixture(scope="module")
def pet_files(tmp_path_factory) -> list[Path]:
    from gateway.testing.corpus import generate

    out = tmp_path_factory.mktemp("pt")
    generate(out, profile="small", only=["PT", "CT"])
    return sorted((out / "PT").glob("*.dcm")) + sorted((out / "CT").glob("*.dcm"))[:2]


def cli(python: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(python), "-m", "gateway.cli", *args], capture_output=True, text=True, timeout=120)


def test_installed_from_its_folder_it_adds_its_command(suv_site):
    top = cli(suv_site, "--help")
    assert top.returncode == 0 and top.stderr == "", top.stderr
    block = top.stdout.split("commands from plugin 'suv':\n", 1)[1]
    assert block.splitlines()[0].split()[0] == "suv"
    listed = cli(suv_site, "plugins")
    assert any(line.split()[:1] == ["suv"] and "dicom-gateway-suv" in line for line in listed.stdout.splitlines()), \
        listed.stdout
    assert "examples:\n  dicom-gateway suv --series 1.2.3" in cli(suv_site, "suv", "--help").stdout


def test_stored_pet_series_gets_suv_factors_in_the_index_and_ls(suv_site, pet_files, gateway_process, tmp_path):
    port, data = free_port(), tmp_path / "d"
    cnts = _with_units(pet_files[0], tmp_path / "cnts.dcm", "CNTS")
    cfg = write_config(tmp_path / "cfg", basic_toml(port, data), **{"plugins/suv.toml": 'prefer = "computed"\n'})
    gateway = gateway_process(["serve", "--config", str(cfg)], port, python=str(suv_site))
    sent = subprocess.run([dcmtk("storescu"), "-aec", "DICOM_GATEWAY", "127.0.0.1", str(port),
                           *map(str, pet_files + [cnts])], capture_output=True, text=True, timeout=120, env=NODELAY)
    assert sent.returncode == 0, sent.stdout + sent.stderr
    pts = [pydicom.dcmread(p, stop_before_pixels=True) for p in pet_files if "PT_" in p.name]
    study = str(pts[0].StudyInstanceUID)

    def rows():
        run = cli(suv_site, "suv", "--study", study, "--json", "--config", str(cfg))
        found = [json.loads(line) for line in run.stdout.splitlines()]
        return found if len(found) == len(pts) + 1 else None

    found = {r["sop_instance_uid"]: r for r in wait_for(rows, timeout=30, what="the SUV rows")}
    assert set(found) == {str(ds.SOPInstanceUID) for ds in pts} | {str(pydicom.dcmread(cnts).SOPInstanceUID)}
    for ds in pts:  # the CT objects got no row: only PT is looked at
        row = found[str(ds.SOPInstanceUID)]
        assert row["computed"] == pytest.approx(HAND_COMPUTED, rel=1e-3)
        assert row["philips"] == pytest.approx(HAND_PHILIPS, rel=1e-6)
        assert (row["factor"], row["source"]) == (row["computed"], "computed")  # prefer = "computed"
    odd = found[str(pydicom.dcmread(cnts).SOPInstanceUID)]  # it has a Philips factor too, but counts
    assert (odd["philips"], odd["computed"], odd["factor"], odd["source"]) == (None, None, None, "")
    assert odd["why_not_computed"] == "Units is CNTS, not BQML: no SUV"
    assert "PET image without a computed SUV factor" in gateway.output()  # and the operator's log says why
    assert "why=Units is CNTS, not BQML: no SUV" in gateway.output()

    value = cli(suv_site, "suv", "--series", str(pts[0].SeriesInstanceUID), "--value", "5300", "--json",
                "--config", str(cfg))
    converted = {r["sop_instance_uid"]: r for r in map(json.loads, value.stdout.splitlines())}
    assert converted[str(pts[0].SOPInstanceUID)]["suv"] == pytest.approx(5300 * HAND_COMPUTED, rel=1e-3)

    listing = cli(suv_site, "ls", "--config", str(cfg))
    assert listing.returncode == 0, listing.stderr
    line_of = {line.split()[-1]: line for line in listing.stdout.splitlines()}  # series lines end with the UID
    assert "SUVbw 0.0003237 g/ml (computed)" in line_of[str(pts[0].SeriesInstanceUID)], listing.stdout
    assert "SUVbw - (Units is CNTS, not BQML: no SUV)" in line_of[str(pydicom.dcmread(cnts).SeriesInstanceUID)]
    ct_line = next(line for line in listing.stdout.splitlines() if "CT" in line.split()[:3])
    assert "SUVbw" not in ct_line

    # --rescan recomputes from the stored files (rows lost, or data older than the plugin)
    rescan = cli(suv_site, "suv", "--study", study, "--rescan", "--config", str(cfg))
    assert rescan.returncode == 0, rescan.stderr
    assert f"rescanned {len(pts) + 1} image(s); 2 object(s) of other modalities skipped" in rescan.stderr


def test_import_waits_for_its_rows_and_rescan_fills_in_data_older_than_the_plugin(suv_site, pet_files, tmp_path):
    pts = [p for p in pet_files if "PT_" in p.name]
    # `import` with the plugin: the rows are there when the command has returned (its writer
    # thread is flushed at exit), no waiting
    cfg = write_config(tmp_path / "cfg", basic_toml(free_port(), tmp_path / "d"))
    assert cli(suv_site, "import", *map(str, pet_files), "--config", str(cfg)).returncode == 0
    listed = cli(suv_site, "suv", "--json", "--config", str(cfg))
    assert len(listed.stdout.splitlines()) == len(pts), listed.stdout + listed.stderr
    # stored before the plugin was installed (this run's own environment does not have it)
    old = write_config(tmp_path / "old", basic_toml(free_port(), tmp_path / "o"))
    before = subprocess.run([sys.executable, "-m", "gateway.cli", "import", *map(str, pet_files), "--config", str(old)],
                            capture_output=True, text=True, timeout=120)
    assert before.returncode == 0, before.stderr
    assert cli(suv_site, "suv", "--config", str(old)).returncode == 1  # nothing stored yet, and it says so
    rescan = cli(suv_site, "suv", "--rescan", "--json", "--config", str(old))  # every PET series of the index
    assert rescan.returncode == 0, rescan.stderr
    assert f"rescanned {len(pts)} image(s)" in rescan.stderr
    rows = [json.loads(line) for line in rescan.stdout.splitlines()]
    assert len(rows) == len(pts) and all(r["computed"] == pytest.approx(HAND_COMPUTED, rel=1e-3) for r in rows)
    assert {r["source"] for r in rows} == {"philips"}  # the default, prefer = "philips"


def test_a_bad_settings_file_is_refused_with_file_line_and_key(suv_site, tmp_path):
    cfg = write_config(tmp_path / "cfg", basic_toml(free_port(), tmp_path / "d"),
                       **{"plugins/suv.toml": 'enabled = true\nprefer = "vendor"\nmodalities = "PT"\n'})
    check = cli(suv_site, "config", "check", str(cfg))  # what a start or a hot reload runs
    assert check.returncode != 0
    assert "plugins/suv.toml:2: key 'prefer': Input should be 'philips' or 'computed'" in check.stdout, check.stdout
    assert "plugins/suv.toml:3: key 'modalities': Input should be a valid list" in check.stdout  # wrong type
    own = cli(suv_site, "suv", "--config", str(cfg))  # the plugin's command reads the same file
    assert own.returncode == 2 and "plugins/suv.toml:3: key 'modalities'" in own.stderr, own.stderr


def _with_units(source: Path, target: Path, units: str) -> Path:
    from pydicom.uid import generate_uid

    ds = pydicom.dcmread(source)
    ds.Units = units
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SeriesInstanceUID, ds.SeriesNumber = generate_uid(), 4  # a series of its own
    ds.save_as(target)
    return target


def _suv_module():
    """gateway_suv/suv.py loaded by path: it imports no gateway code, and putting the
    plugin's folder on sys.path would make its entry point visible to the other tests."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "suv_under_test", REPO / "examples" / "suv-plugin" / "src" / "gateway_suv" / "suv.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks itself up there
    spec.loader.exec_module(module)
    return module


def _pet_header(**changes):
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    drug = Dataset()
    drug.RadiopharmaceuticalStartTime, drug.RadionuclideTotalDose, drug.RadionuclideHalfLife = "071500", "370e6", "6586.2"
    ds = Dataset()
    ds.Units, ds.DecayCorrection, ds.PatientWeight = "BQML", "START", "82"
    ds.SeriesDate, ds.SeriesTime, ds.AcquisitionDate, ds.AcquisitionTime = "20240315", "081500", "20240315", "084500"
    ds.RadiopharmaceuticalInformationSequence = Sequence([drug])
    for keyword, value in changes.items():
        setattr(drug if keyword.startswith("Radio") else ds, keyword, value)
    return ds


def test_decay_reference_per_decay_correction():
    suv = _suv_module()
    assert suv.factors(_pet_header()).computed == pytest.approx(HAND_COMPUTED, rel=1e-3)  # START: 3600 s
    assert suv.factors(_pet_header(DecayCorrection="ADMIN")).computed == pytest.approx(82000 / 370e6)  # no decay
    # NONE: to this image's Acquisition Time, 08:45:00: 5400 s; 2 ** (-5400 / 6586.2) = 0.566483
    assert suv.factors(_pet_header(DecayCorrection="NONE")).computed == pytest.approx(82000 / (370e6 * 0.566483), rel=1e-5)
    # a start time without a date after the series time: injected the day before (23:50 -> 00:20, 1800 s)
    late = _pet_header(SeriesDate="20240316", SeriesTime="002000", RadiopharmaceuticalStartTime="235000")
    assert suv.factors(late).computed == pytest.approx(82000 / (370e6 * 2 ** (-1800 / 6586.2)))
    # a DateTime wins over the time alone
    dated = _pet_header(RadiopharmaceuticalStartDateTime="20240315074500")  # 1800 s before the series
    assert suv.factors(dated).computed == pytest.approx(82000 / (370e6 * 2 ** (-1800 / 6586.2)))
    assert suv.factors(_pet_header(PatientWeight="")).why == "no Patient Weight"
    assert suv.factors(_pet_header(DecayCorrection="XYZ")).computed is None


def test_philips_factor_is_found_by_its_private_creator_also_as_UN():
    suv = _suv_module()
    ds = _pet_header()
    ds.private_block(0x7053, "Some Other Creator", create=True).add_new(0x00, "DS", "9.9")  # takes (7053,1000)
    ds.private_block(0x7053, suv.PHILIPS_CREATOR, create=True).add_new(0x00, "UN", b"0.00022162 ")  # (7053,1100)
    assert suv.factors(ds).philips == pytest.approx(0.00022162)
    assert suv.factors(_pet_header()).philips is None
