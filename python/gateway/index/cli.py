"""``dicom-gateway ls``: print what the index holds as a tree.

:mod:`gateway.cli.core` adds it to the command line::

    p = sub.add_parser("ls", help="list patients, studies and series in the index",
                       epilog=LS_EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_ls_arguments(p)
    ...
    return ls_command(Index(url), args)
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TextIO

from gateway.terminal import plural

if TYPE_CHECKING:
    from gateway.index.store import Index, PatientNode

__all__ = ["ls_command", "add_ls_arguments", "format_tree", "LS_EXAMPLES"]

FILTERS = ("patient_id", "patient_name", "study_date", "modality", "accession")

LS_EXAMPLES = """\
examples:
  dicom-gateway ls                                  every patient, study and series
  dicom-gateway ls --patient-name 'm?ller*'         names match ignoring case and '^' boundaries
  dicom-gateway ls --patient-id ANC0000001
  dicom-gateway ls --study-date 20240301-20240331   a date or a range A-B, A- or -B
  dicom-gateway ls --modality PT --accession 'ACC2024*'
"""


def add_ls_arguments(parser: argparse.ArgumentParser) -> None:
    """The filter options of ``ls`` (findscu-style keys, wildcards ``*`` and ``?``)."""
    parser.add_argument("--patient-id", metavar="ID", help="Patient ID (0010,0020), wildcards allowed")
    parser.add_argument("--patient-name", metavar="NAME", help="Patient's Name (0010,0010), wildcards allowed")
    parser.add_argument("--study-date", metavar="DATE", help="Study Date YYYYMMDD or range A-B")
    parser.add_argument("--modality", metavar="MOD", help="studies with a series of this modality")
    parser.add_argument("--accession", metavar="ACC", help="Accession Number (0008,0050), wildcards allowed")


def _filters(filters: Mapping[str, Any] | argparse.Namespace | None) -> dict[str, str]:
    if filters is None:
        return {}
    get = filters.get if isinstance(filters, Mapping) else (lambda k: getattr(filters, k, None))
    return {k: v for k in FILTERS if (v := get(k))}


def _v(value: Any, empty: str = "-") -> str:
    return empty if value in (None, "") else str(value)


def format_tree(patients: list[PatientNode], series_columns: Mapping[str, str] | None = None) -> list[str]:
    """``series_columns``: text plugins add to a series' line, by Series Instance UID."""
    series_columns = series_columns or {}
    lines: list[str] = []
    for p in patients:
        extra = ", ".join(x for x in (
            f"issuer {p.issuer_of_patient_id}" if p.issuer_of_patient_id else "",
            f"born {p.birth_date}" if p.birth_date else "",
            f"sex {p.sex}" if p.sex else "") if x)
        n = len(p.studies)
        lines.append(f"{_v(p.patient_id, '(no ID)')}  {_v(p.patient_name, '(no name)')}"
                     f"{f'  ({extra})' if extra else ''}  {plural(n, 'study')}")
        for si, st in enumerate(p.studies):
            last_study = si == len(p.studies) - 1
            lead, cont = ("└─ ", "   ") if last_study else ("├─ ", "│  ")
            lines.append(
                f"{lead}{_v(st.study_date)} {_v(st.study_time)[:6]}  {_v(st.accession_number)}  "
                f"{_v(st.study_description, '(no description)')}  [{' '.join(st.modalities)}]  "
                f"{plural(st.number_of_series, 'series')}, {plural(st.number_of_instances, 'instance')}  "
                f"{st.study_instance_uid}")
            for ri, se in enumerate(st.series):
                branch = "└─ " if ri == len(st.series) - 1 else "├─ "
                lines.append(
                    f"{cont}{branch}#{_v(se.series_number)}  {_v(se.modality)}  "
                    f"{_v(se.series_description, '(no description)')}  {_v(se.series_date)}  "
                    f"{plural(se.number_of_instances, 'instance')}  "
                    + (f"{series_columns[se.series_instance_uid]}  " if se.series_instance_uid in series_columns else "")
                    + f"{se.series_instance_uid}")
    return lines


def ls_command(index: Index | str, filters: Mapping[str, Any] | argparse.Namespace | None = None,
               out: TextIO = sys.stdout,
               columns: Callable[[str, list[str]], Mapping[str, Mapping[str, str]]] | None = None) -> int:
    """Print the tree of patients ▸ studies ▸ series matching ``filters``; returns the exit code.
    ``columns(level, uids)`` gives the plugins' extra columns (``gateway_ls_columns``)."""
    from gateway.index.store import Index, IndexUnavailable

    try:
        idx = index if isinstance(index, Index) else Index(index)
        patients = idx.tree(**_filters(filters))
    except IndexUnavailable as err:
        print(f"dicom-gateway ls: {err}", file=sys.stderr)
        return 2
    extra: dict[str, str] = {}
    if columns is not None:
        uids = [se.series_instance_uid for p in patients for st in p.studies for se in st.series]
        for name, values in columns("series", uids).items():
            for uid, text in values.items():
                extra[uid] = f"{extra[uid]}  {name} {text}" if uid in extra else f"{name} {text}"
    for line in format_tree(patients, extra):
        out.write(line + "\n")
    n_studies = sum(len(p.studies) for p in patients)
    out.write(f"{plural(len(patients), 'patient')}, {plural(n_studies, 'study')} in {idx.location}\n")
    return 0
