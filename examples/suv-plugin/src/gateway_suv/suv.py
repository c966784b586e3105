"""Body-weight SUV factors of a PET image, from its header alone (no gateway imports).

SUVbw = C(t) [Bq/ml] x weight [g] / dose decayed to the reference time [Bq]
(PS3.3 C.8.9.1 PET Series and C.8.9.2 PET Isotope modules); this module
computes the factor ``weight / decayed dose`` in g/ml that a voxel value in
BQML is multiplied by. Only images in Bq/ml (Units ``BQML``) have one: for
counts (``CNTS``) or anything else neither source below means g/ml per Bq/ml,
so such an image gets no factor at all, and ``why`` says so.

Philips writes its own factor in (7053,1000) "SUV Scale Factor" of the block
"Philips PET Private Group". Both are kept: they need not agree (a factor
from an undecayed dose, a different reference time), and a site chooses.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

PHILIPS_CREATOR = "Philips PET Private Group"
PHILIPS_SUV_OFFSET = 0x00  # (7053,xx00)


@dataclass(frozen=True)
class Factors:
    """What one image yields: either factor may be None, ``why`` says why the
    computed one (or, for an image not in BQML, any) is missing; an operator
    reads it in `dicom-gateway suv` and the gateway's log."""

    philips: float | None
    computed: float | None
    why: str = ""

    def chosen(self, prefer: str) -> tuple[float | None, str]:
        """(factor, source) with ``prefer`` ("philips" | "computed") first, the other as fallback."""
        order = [("philips", self.philips), ("computed", self.computed)]
        if prefer == "computed":
            order.reverse()
        for source, value in order:
            if value is not None:
                return value, source
        return None, ""


def factors(ds: Any) -> Factors:
    """The factors of one image header (a pydicom Dataset, pixels not needed)."""
    units = str(ds.get("Units", "")).strip().upper()
    if units != "BQML":
        return Factors(None, None, f"Units is {units or 'missing'}, not BQML: no SUV")
    return Factors(philips_factor(ds), *_computed(ds))


def philips_factor(ds: Any) -> float | None:
    # The element number is relative to the block its creator reserved: look the
    # block up by creator, never at a fixed (7053,1000).
    try:
        value = ds.private_block(0x7053, PHILIPS_CREATOR)[PHILIPS_SUV_OFFSET].value
        if isinstance(value, bytes):  # read as UN: Implicit VR without the private dictionary
            value = value.decode("ascii", "replace").strip(" \0")
        factor = float(value)
    except (KeyError, ValueError, TypeError):
        return None
    return factor if factor > 0 else None


def _computed(ds: Any) -> tuple[float | None, str]:
    try:
        weight_kg = float(ds.get("PatientWeight") or 0)
    except (TypeError, ValueError):
        weight_kg = 0.0
    if weight_kg <= 0:
        return None, "no Patient Weight"
    items = ds.get("RadiopharmaceuticalInformationSequence") or []
    if not items:
        return None, "no Radiopharmaceutical Information Sequence"
    rp = items[0]
    try:
        dose = float(rp.RadionuclideTotalDose)
        half_life = float(rp.RadionuclideHalfLife)
    except (AttributeError, TypeError, ValueError):
        return None, "no Radionuclide Total Dose or Half Life"
    if dose <= 0 or half_life <= 0:
        return None, "Radionuclide Total Dose or Half Life not positive"
    elapsed, why = _decay_interval(ds, rp)
    if elapsed is None:
        return None, why
    decayed = dose * 2.0 ** (-elapsed / half_life)
    return weight_kg * 1000.0 / decayed, ""


def _decay_interval(ds: Any, rp: Any) -> tuple[float | None, str]:
    """Seconds from injection to the time the pixel values are decay corrected to.

    Decay Correction (0054,1102), PS3.3 C.8.9.1.1 — all images of a series are
    corrected to the same time:

    START  the acquisition start. Taken from Series Date/Time, not from each
           image's Acquisition Time: C.8.9.1.1.2 makes Series Date/Time the
           reference time of every time-related PET attribute, activity
           included (Frame Reference Time is an offset from it), while in a
           multi-bed whole-body series Acquisition Time differs per bed. (QIBA's
           vendor-neutral SUV recipe does the same; a series post-processed
           later, with a Series Time after its Acquisition Times, is not caught.)
    ADMIN  the administration: no decay, the dose as given.
    NONE   not corrected: each image refers to its own Acquisition Date/Time.
    """
    mode = str(ds.get("DecayCorrection", "")).strip().upper()
    if mode == "ADMIN":
        return 0.0, ""
    if mode == "START":
        reference = _when(ds.get("SeriesDate"), ds.get("SeriesTime"))
    elif mode == "NONE":
        reference = _when(ds.get("AcquisitionDate") or ds.get("SeriesDate"), ds.get("AcquisitionTime"))
    else:
        return None, f"Decay Correction {mode or 'missing'} is not START, ADMIN or NONE"
    if reference is None:
        return None, "no reference date/time for the decay"
    start = _datetime(rp.get("RadiopharmaceuticalStartDateTime"))
    if start is None:
        start = _when(reference.strftime("%Y%m%d"), rp.get("RadiopharmaceuticalStartTime"))
        if start is not None and start > reference:
            start -= timedelta(days=1)  # time only: the injection was before midnight
    if start is None:
        return None, "no Radiopharmaceutical Start (Date)Time"
    return (reference - start).total_seconds(), ""


def _when(date: Any, time: Any) -> datetime | None:
    if not date or not time:
        return None
    return _datetime(f"{str(date).strip()}{str(time).strip()}")


def _datetime(text: Any) -> datetime | None:
    """A DICOM DT value (no UTC offset) or DA+TM, to the microsecond; None if unusable."""
    if not text:
        return None
    value = str(text).strip().split("+")[0].split("-")[0]
    whole, _, fraction = value.partition(".")
    formats = {8: "%Y%m%d", 10: "%Y%m%d%H", 12: "%Y%m%d%H%M", 14: "%Y%m%d%H%M%S"}
    fmt = formats.get(len(whole))
    if fmt is None:
        return None
    try:
        moment = datetime.strptime(whole, fmt)
    except ValueError:
        return None
    if fraction.isdigit():
        moment += timedelta(microseconds=int(fraction[:6].ljust(6, "0")))
    return moment
