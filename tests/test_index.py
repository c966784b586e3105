"""The index (gateway.index): the project's test corpus (gateway.testing.corpus) indexed in
every syntax, overwrite (STO-6), delete, latest demographics (QRS-7), DAT-3 charsets, DAT-4
patients, concurrent writers, and the same on PostgreSQL when its binaries are installed."""

from __future__ import annotations

import io
import json
import multiprocessing
import sqlite3
import struct
import uuid
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from pydicom.dataset import Dataset
from pydicom.filereader import read_file_meta_info
from pydicom.filewriter import write_dataset
from pydicom.filebase import DicomBytesIO

from gateway.index import (FileRecord, Index, IndexUnavailable, InstanceAttrs, UnreadableDataset,
                           extract_attributes, normalize_pn)
from gateway.index.cli import ls_command

EXPLICIT_LE = "1.2.840.10008.1.2.1"
SYNTAXES = ("implicit", "explicit-le", "explicit-be")


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path) -> str:
    """A fresh, empty index database: SQLite file in tmp_path, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'index.db'}"
    import psycopg

    base = request.getfixturevalue("pg_server")
    name = "idx_" + uuid.uuid4().hex[:12]
    with psycopg.connect(base.replace("postgresql+psycopg", "postgresql") + "/postgres", autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    return f"{base}/{name}"


# ---- helpers ------------------------------------------------------------------------

def split_part10(path: Path) -> tuple[bytes, str]:
    """(raw dataset bytes, transfer syntax) of a Part-10 file: what the receive path hands over."""
    data = path.read_bytes()
    assert data[128:132] == b"DICM"
    # (0002,0000) UL, explicit VR LE: tag 4 + VR 2 + length 2 + value 4
    assert data[132:136] == b"\x02\x00\x00\x00"
    group_length = struct.unpack("<I", data[140:144])[0]
    syntax = str(read_file_meta_info(path).TransferSyntaxUID)
    return data[144 + group_length:], syntax


def load_manifest(corpus: Path) -> dict:
    return json.loads((corpus / "manifest.json").read_text(encoding="utf-8"))


def index_corpus(idx: Index, corpus: Path, syntaxes=SYNTAXES) -> dict[str, dict[str, InstanceAttrs]]:
    """Index every file of the given syntaxes from its raw dataset bytes; returns attrs per syntax."""
    manifest = load_manifest(corpus)
    seen: dict[str, dict[str, InstanceAttrs]] = {}
    for syntax in syntaxes:
        for f in (x for x in manifest["files"] if x["syntax"] == syntax):
            raw, ts = split_part10(corpus / f["path"])
            assert ts == f["transfer_syntax_uid"]
            attrs = extract_attributes(raw, ts)
            seen.setdefault(syntax, {})[f["sop_instance_uid"]] = attrs
            with idx.transaction() as tx:
                tx.store_instance(attrs, FileRecord(f["path"], f["size"], f["sha256"], ts,
                                                    calling_ae="MODALITY", called_ae="DICOM_GATEWAY"))
    return seen


def make_attrs(n: int = 1, **kw) -> InstanceAttrs:
    base = dict(sop_instance_uid=f"2.25.{n}", sop_class_uid="1.2.840.10008.5.1.4.1.1.128",
                study_instance_uid="2.25.1000", series_instance_uid="2.25.2000", patient_id="PID1",
                patient_name="DOE^JOHN", modality="PT", study_date="20240101", instance_number=n)
    base.update(kw)
    return InstanceAttrs(**base)


def frec(path: str = "a/b.dcm", when: datetime | None = None) -> FileRecord:
    return FileRecord(path, 123, "0" * 64, EXPLICIT_LE, received_at=when)


# ---- the corpus, every syntax ------------------------------------------------------------

def test_corpus_indexed_as_manifest_says(db_url, corpus_small):
    manifest = load_manifest(corpus_small)
    idx = Index(db_url)
    seen = index_corpus(idx, corpus_small)

    # Same object in three syntaxes -> the same attributes (DAT-3 decoding, big endian numbers).
    for uid, attrs in seen["explicit-le"].items():
        for syntax in ("implicit", "explicit-be"):
            assert replace(seen[syntax][uid], transfer_syntax_uid=None) == replace(attrs, transfer_syntax_uid=None)
    # Raw dataset bytes and the Part-10 file give the same answer.
    for f in manifest["files"][:: 7]:
        from_file = extract_attributes(corpus_small / f["path"], has_file_meta=True)
        assert from_file == seen[f["syntax"]][f["sop_instance_uid"]]

    # Re-indexing the same UIDs in another syntax overwrote (STO-6): counts are one syntax's.
    per_syntax = [f for f in manifest["files"] if f["syntax"] == "explicit-le"]
    stats = idx.stats()
    assert stats["patients"] == len(manifest["patients"]) == 3
    assert stats["studies"] == len(manifest["studies"]) == 4
    assert stats["series"] == sum(s["series"] for s in manifest["studies"])
    assert stats["instances"] == stats["files"] == len(per_syntax) == sum(s["instances"] for s in manifest["studies"])
    last = {f["sop_instance_uid"]: f for f in manifest["files"] if f["syntax"] == SYNTAXES[-1]}
    assert stats["bytes"] == sum(f["size"] for f in last.values())

    tree = {p.patient_id: p for p in idx.tree()}
    assert set(tree) == {p["patient_id"] for p in manifest["patients"]}
    for mp in manifest["patients"]:
        node = tree[mp["patient_id"]]
        assert node.patient_name == mp["patient_name"]  # Müller^Jürgen, Sato^Hanako=佐藤^花子=さとう^はなこ
        assert node.issuer_of_patient_id == mp["issuer_of_patient_id"]
        assert node.birth_date == mp["birth_date"] and node.sex == mp["sex"]
        assert len(node.studies) == mp["studies"]
    assert tree["GWT0000002"].patient_name == "Müller^Jürgen"
    assert tree["GWT0000003"].patient_name == "Sato^Hanako=佐藤^花子=さとう^はなこ"
    assert len(tree["ANC0000001"].studies) == 2  # DAT-4: one patient, two studies

    studies = {s.study_instance_uid: s for p in tree.values() for s in p.studies}
    for ms in manifest["studies"]:
        st = studies[ms["study_instance_uid"]]
        assert (st.study_date, st.study_time, st.accession_number, st.study_id) == (
            ms["study_date"], ms["study_time"], ms["accession_number"], ms["study_id"])
        assert st.study_description == ms["study_description"]
        assert st.referring_physician_name == ms["referring_physician_name"]
        assert st.modalities == sorted(ms["modalities"])
        assert st.number_of_series == ms["series"] and st.number_of_instances == ms["instances"]

    for uid, f in last.items():
        found = idx.find_instance(uid)
        assert found is not None and found.file is not None
        assert (found.sop_class_uid, found.study_instance_uid, found.series_instance_uid, found.patient_id) == (
            f["sop_class_uid"], f["study_instance_uid"], f["series_instance_uid"], f["patient_id"])
        assert (found.file.path, found.file.size, found.file.sha256) == (f["path"], f["size"], f["sha256"])
        assert found.file.calling_ae == "MODALITY" and found.file.received_at.tzinfo is not None
    assert idx.dangling_files(corpus_small) == []

    # Filters: wildcards, PN ignoring case and component boundaries (QRS-3), date ranges.
    def ids(**kw):
        return sorted(s.accession_number for p in idx.tree(**kw) for s in p.studies)

    assert ids(patient_name="müller^jürgen") == ["ACC20231102042"]
    assert ids(patient_name="*JÜRGEN") == ["ACC20231102042"]
    assert ids(patient_name="*佐藤*") == ids(patient_name="sato*") == ids(patient_name="*HANAKO*") == ["ACC20240607003"]
    assert ids(patient_name="M?LLER*") == ["ACC20231102042"]  # '?' is one character, Ü too
    assert ids(patient_name="MU?LLER*") == []
    assert ids(patient_id="ANC*") == ["ACC20240315001", "ACC20240322007"]
    assert ids(study_date="20240301-20240331") == ["ACC20240315001", "ACC20240322007"]
    assert ids(study_date="20240601-") == ["ACC20240607003"]
    assert ids(study_date="-20231231") == ["ACC20231102042"]
    assert ids(study_date="20240315") == ["ACC20240315001"]
    assert ids(modality="PT") == ["ACC20240315001"]
    assert ids(modality="OT") == ["ACC20240315001", "ACC20240322007", "ACC20240607003"]
    assert ids(accession="ACC2024*") == ["ACC20240315001", "ACC20240322007", "ACC20240607003"]
    assert ids(accession="ACC_0240315001") == []  # '_' is literal, not a LIKE wildcard

    out = io.StringIO()
    assert ls_command(idx, {"patient_id": "GWT*"}, out=out) == 0
    text = out.getvalue()
    assert "Müller^Jürgen" in text and "佐藤^花子" in text and "MRT Schädel nativ" in text
    assert "ANCHOR" not in text and text.rstrip().endswith(f"2 patients, 2 studies in {idx.location}")
    idx.close()


def test_migrated_schema_matches_tables(db_url):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from gateway.index import alembic_config
    from gateway.index.schema import metadata

    idx = Index(db_url)
    Index(db_url).close()  # opening again is a no-op
    with idx.engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        assert ctx.get_current_revision() == ScriptDirectory.from_config(alembic_config(db_url)).get_current_head()
        assert compare_metadata(ctx, metadata) == []
    idx.close()


def test_sqlite_is_wal_and_durable(tmp_path):
    idx = Index(tmp_path / "sub" / "index.db")  # a plain path works, parents are made
    with idx.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 10000
    idx.close()


# ---- overwrite, delete, moves, demographics -----------------------------------------------

def test_duplicate_overwrites_row_and_file(db_url):
    idx = Index(db_url)
    with idx.transaction() as tx:
        first = tx.store_instance(make_attrs(1, image_type="ORIGINAL"), frec("x/1.dcm"))
    assert first.replaced is None
    with idx.transaction() as tx:
        again = tx.store_instance(make_attrs(1, image_type="DERIVED", instance_number=7),
                                  FileRecord("x/1b.dcm", 456, "f" * 64, "1.2.840.10008.1.2"))
    assert again.replaced is not None and again.replaced.path == "x/1.dcm"
    found = idx.find_instance("2.25.1")
    assert found.file.path == "x/1b.dcm" and found.file.size == 456
    assert found.file.transfer_syntax_uid == "1.2.840.10008.1.2"
    assert idx.stats() == {"patients": 1, "studies": 1, "series": 1, "instances": 1, "files": 1, "bytes": 456}
    with idx.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT image_type, instance_number FROM instances")).one() == ("DERIVED", 7)


def test_delete_cleans_parents(db_url):
    idx = Index(db_url)
    with idx.transaction() as tx:
        tx.store_instance(make_attrs(1), frec("p/1.dcm"))
        tx.store_instance(make_attrs(2), frec("p/2.dcm"))
        tx.store_instance(make_attrs(3, series_instance_uid="2.25.2001"), frec("p/3.dcm"))
    with idx.transaction() as tx:
        assert tx.delete_instance("2.25.3").path == "p/3.dcm"
    assert idx.stats()["series"] == 1
    with idx.transaction() as tx:
        assert tx.delete_instance("2.25.1").path == "p/1.dcm"
        assert tx.find_instance("2.25.1") is None
    assert idx.stats()["instances"] == 1 and idx.stats()["patients"] == 1
    with idx.transaction() as tx:
        tx.delete_instance("2.25.2")
        assert tx.delete_instance("2.25.2") is None
    assert idx.stats() == {"patients": 0, "studies": 0, "series": 0, "instances": 0, "files": 0, "bytes": 0}


def test_moved_instance_leaves_no_empty_parents(db_url):
    idx = Index(db_url)
    with idx.transaction() as tx:
        tx.store_instance(make_attrs(1), frec())
    # The same SOP Instance UID arrives again under another patient, study and series.
    with idx.transaction() as tx:
        tx.store_instance(make_attrs(1, patient_id="PID2", study_instance_uid="2.25.1001",
                                     series_instance_uid="2.25.2002"), frec())
    assert idx.stats()["patients"] == 1 and idx.stats()["studies"] == 1 and idx.stats()["series"] == 1
    assert [p.patient_id for p in idx.tree()] == ["PID2"]
    # A study corrected to another patient takes its series along; the old patient goes.
    with idx.transaction() as tx:
        tx.store_instance(make_attrs(1, patient_id="PID3", study_instance_uid="2.25.1001",
                                     series_instance_uid="2.25.2002"), frec())
    assert [p.patient_id for p in idx.tree()] == ["PID3"] and idx.stats()["patients"] == 1


def test_latest_demographics_win(db_url):
    """QRS-7: the most recently received object's demographics update patient and study."""
    idx = Index(db_url)
    t0 = datetime(2024, 1, 1, 12, tzinfo=timezone.utc)
    with idx.transaction() as tx:
        tx.store_instance(make_attrs(1, patient_name="DOE^JOHN", study_description="old", sex="M"),
                          frec(when=t0))
        tx.store_instance(make_attrs(2, patient_name="DOE^JOHNNY", study_description="new", sex=None),
                          frec(when=t0 + timedelta(hours=1)))
    [p] = idx.tree()
    assert p.patient_name == "DOE^JOHNNY" and p.studies[0].study_description == "new"
    assert p.sex == "M"  # absent in the newer object: kept, not erased
    # An older object indexed later (e.g. a re-import) does not roll demographics back.
    with idx.transaction() as tx:
        tx.store_instance(make_attrs(3, patient_name="OLD^NAME", study_description="older"),
                          frec(when=t0 - timedelta(days=1)))
    [p] = idx.tree()
    assert p.patient_name == "DOE^JOHNNY" and p.studies[0].study_description == "new"
    assert p.studies[0].number_of_instances == 3
    assert idx.tree(patient_name="*johnny") and not idx.tree(patient_name="OLD*")


def test_transaction_rolls_back_on_error(db_url):
    idx = Index(db_url)
    with pytest.raises(RuntimeError):
        with idx.transaction() as tx:
            tx.store_instance(make_attrs(1), frec())
            raise RuntimeError("backend failed after indexing")
    assert idx.stats()["instances"] == 0 and idx.find_instance("2.25.1") is None


def test_dangling_files(tmp_path):
    root = tmp_path / "store"
    (root / "a").mkdir(parents=True)
    (root / "a" / "1.dcm").write_bytes(b"x" * 123)
    (root / "a" / "2.dcm").write_bytes(b"x" * 5)
    idx = Index(tmp_path / "index.db")
    with idx.transaction() as tx:
        for n in (1, 2, 3):
            tx.store_instance(make_attrs(n), frec(f"a/{n}.dcm"))
    assert sorted(d.sop_instance_uid for d in idx.dangling_files(root)) == ["2.25.2", "2.25.3"]
    assert [d.file.path for d in idx.dangling_files(root, check_size=False)] == ["a/3.dcm"]


def test_file_record_paths_are_relative():
    for bad in ("/etc/passwd", "../x.dcm", "a/../../x", "a\\b.dcm", ""):
        with pytest.raises(ValueError, match="relative"):
            FileRecord(bad, 1, "0" * 64, EXPLICIT_LE)


# ---- unavailable database -> IndexUnavailable (A710) ----------------------------------------

def test_locked_database_is_unavailable(tmp_path):
    db = tmp_path / "index.db"
    Index(db).close()
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        idx = Index(db, busy_timeout=0.1, lock_retries=2, migrate=False)
        with pytest.raises(IndexUnavailable, match="database is locked"):
            with idx.transaction() as tx:
                tx.store_instance(make_attrs(1), frec())
        assert idx.find_instance("2.25.1") is None  # readers are not blocked by a writer (WAL)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with idx.transaction() as tx:  # and it works again once the lock is gone
        tx.store_instance(make_attrs(1), frec())


def test_not_a_database_is_unavailable(tmp_path):
    junk = tmp_path / "index.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(IndexUnavailable, match="index database"):
        Index(junk)


def test_postgres_down_is_unavailable(pg_server):
    from conftest import free_port

    url = pg_server.rsplit(":", 1)[0] + f":{free_port()}/postgres"
    with pytest.raises(IndexUnavailable):
        Index(url, busy_timeout=2)


# ---- attribute extraction -------------------------------------------------------------------

def _raw(ds: Dataset, implicit=False, little=True) -> bytes:
    fp = DicomBytesIO()
    fp.is_implicit_VR, fp.is_little_endian = implicit, little
    write_dataset(fp, ds)
    return fp.getvalue()


def _minimal(**kw) -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.20"
    ds.SOPInstanceUID = "2.25.42"
    ds.StudyInstanceUID = "2.25.43"
    ds.SeriesInstanceUID = "2.25.44"
    ds.PatientID = "X1"
    for k, v in kw.items():
        setattr(ds, k, v)
    return ds


def test_iso2022_japanese_decoded():
    """DAT-3: multi-valued Specific Character Set with ISO 2022 escapes (PS3.5 H.3.1)."""
    name = "Yamada^Tarou=山田^太郎=やまだ^たろう"
    ds = _minimal(SpecificCharacterSet=["", "ISO 2022 IR 87"], PatientName=name)
    raw = _raw(ds)
    assert b"\x1b$B" in raw  # really encoded with escape sequences
    attrs = extract_attributes(raw, EXPLICIT_LE)
    assert attrs.patient_name == name
    assert attrs.specific_character_set == "\\ISO 2022 IR 87"
    assert normalize_pn(attrs.patient_name) == "YAMADA^TAROU=山田^太郎=やまだ^たろう"


def test_latin1_and_numbers_in_big_endian():
    ds = _minimal(SpecificCharacterSet="ISO_IR 100", PatientName="Müller^Jürgen", SeriesNumber=7,
                  InstanceNumber="12", NumberOfFrames=64, Rows=128, Columns=256, PatientWeight="71.5",
                  ImageType=["ORIGINAL", "PRIMARY"], OtherPatientIDs=["A", "B"])
    for implicit, little, uid in ((False, False, "1.2.840.10008.1.2.2"), (True, True, "1.2.840.10008.1.2")):
        a = extract_attributes(_raw(ds, implicit, little), uid)
        assert a.patient_name == "Müller^Jürgen" and a.transfer_syntax_uid == uid
        assert (a.series_number, a.instance_number, a.number_of_frames, a.rows, a.columns) == (7, 12, 64, 128, 256)
        assert a.patient_weight == 71.5 and a.image_type == "ORIGINAL\\PRIMARY" and a.other_patient_ids == "A\\B"


def test_unreadable_bytes_give_a_clear_error(corpus_small):
    with pytest.raises(UnreadableDataset, match="SOPInstanceUID \\(0008,0018\\)"):
        ds = _minimal()
        del ds.SOPInstanceUID
        extract_attributes(_raw(ds), EXPLICIT_LE)
    with pytest.raises(UnreadableDataset, match="SOPClassUID"):
        extract_attributes(b"", EXPLICIT_LE)
    with pytest.raises(UnreadableDataset, match="cannot parse|has no"):
        extract_attributes(b"\x08\x00\x16\x00UI\xff\xff" + b"1.2" * 10, EXPLICIT_LE)  # length past the end
    with pytest.raises(UnreadableDataset, match="transfer syntax"):
        extract_attributes(_raw(_minimal()), "1.2.3.4")
    with pytest.raises(UnreadableDataset, match="needs its transfer syntax"):
        extract_attributes(_raw(_minimal()))
    with pytest.raises(UnreadableDataset, match="Part-10"):
        extract_attributes(_raw(_minimal()), has_file_meta=True)
    with pytest.raises(UnreadableDataset, match="cannot open"):
        extract_attributes(corpus_small / "nope.dcm", has_file_meta=True)
    raw, ts = split_part10(corpus_small / "explicit-le" / "CT" / "CT_0001.dcm")
    with pytest.raises(UnreadableDataset):
        extract_attributes(raw[:200], ts)  # truncated inside the header
    assert issubclass(UnreadableDataset, ValueError)


def test_normalize_pn():
    assert normalize_pn("Doe^John^^^") == "DOE^JOHN"
    assert normalize_pn(" Doe ^ John =") == "DOE^JOHN"
    assert normalize_pn("Sato^Hanako=佐藤^花子=さとう^はなこ") == "SATO^HANAKO=佐藤^花子=さとう^はなこ"
    assert normalize_pn("") == "" and normalize_pn(None) is None


# ---- four processes writing at once ------------------------------------------------------------

def _writer(url: str, proc: int, count: int) -> int:
    idx = Index(url)  # all four open (and migrate) a fresh database at the same time
    for k in range(count):
        attrs = make_attrs(proc * 1000 + k, patient_id="CONCURRENT", study_instance_uid="2.25.77",
                           series_instance_uid=f"2.25.88{proc}", patient_name=f"WRITER^{proc}")
        with idx.transaction() as tx:
            tx.store_instance(attrs, frec(f"c/{proc}/{k}.dcm"))
    idx.close()
    return count


def test_concurrent_writers_lose_nothing(db_url):
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(4) as pool:
        done = pool.starmap(_writer, [(db_url, p, 50) for p in range(4)])
    assert done == [50] * 4
    idx = Index(db_url)
    assert idx.stats() == {"patients": 1, "studies": 1, "series": 4, "instances": 200, "files": 200,
                           "bytes": 200 * 123}
    [p] = idx.tree()
    assert [s.number_of_instances for s in p.studies[0].series] == [50] * 4


def test_extraction_agrees_with_a_full_pydicom_read(corpus_small):
    """The direct raw-value conversion gives what a full dcmread gives, every file and syntax."""
    import pydicom

    from gateway.index.attrs import _KEYS

    for f in load_manifest(corpus_small)["files"]:
        path = corpus_small / f["path"]
        attrs = extract_attributes(path, has_file_meta=True)
        full = pydicom.dcmread(path)
        for key, (tag, _) in _KEYS.items():
            elem = full.get(tag)
            got = getattr(attrs, key)
            if elem is None or elem.VR == "SQ":
                assert got in (None, ""), (f["path"], key)
            elif elem.VM > 1:
                assert got == "\\".join(str(v) for v in elem.value), (f["path"], key)
            elif isinstance(got, (int, float)) and elem.value not in (None, ""):
                assert got == type(got)(float(elem.value)), (f["path"], key)
            else:
                assert (got or "") == ("" if elem.value is None else str(elem.value)), (f["path"], key)


def _forked_writer(idx: Index, start: int) -> None:
    for k in range(start, start + 10):
        with idx.transaction() as tx:
            tx.store_instance(make_attrs(k), frec(f"f/{k}.dcm"))


def test_index_survives_fork(tmp_path):
    """An Index opened before a fork: the child drops the inherited pooled connections."""
    idx = Index(tmp_path / "index.db")
    _forked_writer(idx, 0)
    child = multiprocessing.get_context("fork").Process(target=_forked_writer, args=(idx, 100))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    _forked_writer(idx, 200)
    assert idx.stats()["instances"] == 30


def test_ls_command_options_and_errors(tmp_path, capsys):
    import argparse

    from gateway.index.cli import add_ls_arguments

    idx = Index(tmp_path / "index.db")
    with idx.transaction() as tx:
        tx.store_instance(make_attrs(1, study_description="Ganzkörper"), frec())
    parser = argparse.ArgumentParser()
    add_ls_arguments(parser)
    out = io.StringIO()
    assert ls_command(idx, parser.parse_args(["--modality", "PT", "--study-date", "2024-"]), out=out) == 0
    assert "DOE^JOHN" in out.getvalue() and "Ganzkörper" in out.getvalue() and "1 instance " in out.getvalue()
    out = io.StringIO()
    assert ls_command(idx, parser.parse_args(["--modality", "CT"]), out=out) == 0
    assert out.getvalue() == f"0 patients, 0 studies in {tmp_path / 'index.db'}\n"
    (tmp_path / "junk.db").write_bytes(b"junk" * 1000)
    assert ls_command(str(tmp_path / "junk.db"), None, out=io.StringIO()) == 2
    assert "index database" in capsys.readouterr().err
