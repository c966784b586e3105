#!/usr/bin/env python3
"""Generate rust/dataset/src/dict_generated.rs, the VR dictionary for implicit VR.

Sources (DAT-1):
  * pydicom's standard dictionary: ``pydicom._dicom_dict.DicomDictionary`` and
    ``RepeatersDictionary`` (repeating groups 50xx curves, 60xx overlays, ...);
  * pydicom's private dictionaries ``pydicom._private_dict.private_dictionaries``
    (includes "Philips PET Private Group" 7053,xx00..);
  * the GE GENIE private dictionary "GEMS_GENIE_2" from seed 003, section 3.6
    (table 3-37) and appendix A (table A-13). The two tables disagree in a few
    rows (OCR noise such as ``SI``/``S:L``/``Lo``); table A-13 wins, which is
    also what /work/shared/corpus/make_corpus.py writes ((0033,xx1A) LO,
    (0033,xx1C) OB, (0033,xx1E) FD, (0055,xx64) SQ). Rows of (5001,xxyy) apply
    to every odd curve group 5001..50FF (the corpus uses 5001 and 5003).

The output is checked in, so ``cargo build`` needs no Python; the Rust test
``dict_is_current`` (tests/dict_current.rs) re-runs this script with
``--check`` when Python with pydicom 3.0.2 is available.

Usage:  python rust/dataset/gen_dict.py [--seed PATH] [--check]
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "src", "dict_generated.rs")
DEFAULT_SEED = os.path.join(HERE, "..", "..", "..", "shared", "seeds", "003_*.txt")

# Value representations known to the Rust `Vr` enum.
PLAIN_VRS = {
    "AE", "AS", "AT", "CS", "DA", "DS", "DT", "FL", "FD", "IS", "LO", "LT", "OB", "OD",
    "OF", "OL", "OV", "OW", "PN", "SH", "SL", "SQ", "SS", "ST", "SV", "TM", "UC", "UI",
    "UL", "UN", "UR", "US", "UT", "UV",
}
AMBIGUOUS = {
    "US or SS": "UsOrSs",
    "OB or OW": "ObOrOw",
    "US or SS or OW": "UsOrSsOrOw",
    "US or OW": "UsOrOw",
    "OW or OB": "ObOrOw",
}
OCR_FIX = {"SI": "SL", "S:L": "SL", "Lo": "LO"}

GENIE_CREATOR = "GEMS_GENIE_2"
ROW = re.compile(r"\((?P<g>[0-9A-Fa-fx]{4}),\s*(?P<e>[0-9A-Fa-fx]{4})\)\)?\s*\t\s*(?P<vr>[A-Za-z:]{2,3})\s*(\t|$)")


def vr_variant(vr: str) -> str | None:
    vr = vr.strip()
    if vr in AMBIGUOUS:
        return AMBIGUOUS[vr]
    if vr in PLAIN_VRS:
        return vr.capitalize()
    return None  # "NONE" (item tags) and unknown


def genie_rows(seed_path: str) -> dict[tuple[str, str], str]:
    """(group, element) -> VR from seed 003 tables 3-37 and A-13 (A-13 wins)."""
    text = open(seed_path, encoding="utf-8").read()
    text = re.sub(r"</?i>", "", text)
    lines = text.splitlines()
    tables: dict[str, dict[tuple[str, str], str]] = {"3-37": {}, "A-13": {}}
    current = None
    for line in lines:
        if "Table 3-37." in line and line.startswith("**"):
            current = "3-37"
            continue
        if "Table A-13." in line and (line.startswith("**") or line.startswith("Table")):
            current = "A-13"
            continue
        if line.startswith("#") or (line.startswith("**Table") and "3-37" not in line and "A-13" not in line):
            current = None
            continue
        if current is None:
            continue
        m = ROW.search(line)
        if not m:
            continue
        g, e, vr = m["g"].upper().replace("X", "x"), m["e"].upper().replace("X", "x"), m["vr"]
        vr = OCR_FIX.get(vr, vr)
        if vr not in PLAIN_VRS or not e.startswith("xx"):
            continue
        tables[current][(g, e[2:])] = vr
    merged = dict(tables["3-37"])
    merged.update(tables["A-13"])
    return merged


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", default=None, help="seed 003 text (default: ../shared/seeds/003_*.txt)")
    ap.add_argument("--check", action="store_true", help="exit 1 if the checked-in file is not current")
    a = ap.parse_args()

    import pydicom
    from pydicom._dicom_dict import DicomDictionary, RepeatersDictionary
    from pydicom._private_dict import private_dictionaries

    seed = a.seed
    if seed is None:
        found = sorted(glob.glob(DEFAULT_SEED))
        if not found:
            print(f"seed 003 not found at {DEFAULT_SEED}; pass --seed", file=sys.stderr)
            return 2
        seed = found[0]

    std = []
    for tag, entry in sorted(DicomDictionary.items()):
        v = vr_variant(entry[0])
        if v is not None:
            std.append((tag, v))
    rep = []
    for key, entry in sorted(RepeatersDictionary.items()):
        v = vr_variant(entry[0])
        if v is None:
            continue
        mask = int("".join("0" if c == "x" else "F" for c in key), 16)
        value = int(key.replace("x", "0"), 16)
        rep.append((mask, value, v, key))

    # private: (creator, group, group_mask, element_low_byte, vr)
    priv = set()
    for creator, entries in private_dictionaries.items():
        for key, entry in entries.items():
            if len(key) != 8 or key[4:6] != "xx":
                continue
            v = vr_variant(entry[0])
            if v is None:
                continue
            g = key[:4]
            try:
                if "x" in g:
                    if g[2:] != "xx":
                        continue
                    priv.add((creator, int(g[:2] + "00", 16), 0xFF00, int(key[6:], 16), v))
                else:
                    priv.add((creator, int(g, 16), 0xFFFF, int(key[6:], 16), v))
            except ValueError:
                continue
    for (g, e), vr in genie_rows(seed).items():
        v = vr_variant(vr)
        if g.startswith("50"):  # curve-group private rows: every odd group 5001..50FF
            priv.add((GENIE_CREATOR, 0x5000, 0xFF00, int(e, 16), v))
        elif "x" not in g:
            priv.add((GENIE_CREATOR, int(g, 16), 0xFFFF, int(e, 16), v))
    # A later (more specific) row wins over an earlier one for the same key.
    dedup: dict[tuple[str, int, int, int], str] = {}
    for creator, g, m, e, v in sorted(priv):
        dedup[(creator, g, m, e)] = v
    privs = sorted(dedup.items(), key=lambda kv: (kv[0][0].encode("utf-8"), kv[0][1], kv[0][2], kv[0][3]))

    out = []
    out.append("// @generated by rust/dataset/gen_dict.py from pydicom "
               f"{pydicom.__version__} and seed 003 ({os.path.basename(seed)}). Do not edit.\n")
    out.append("// Regenerate: python rust/dataset/gen_dict.py\n\n")
    out.append("use crate::vr::Vr;\n\n")
    out.append(f"pub const PYDICOM_VERSION: &str = \"{pydicom.__version__}\";\n\n")
    out.append("/// Standard elements, sorted by tag.\n")
    out.append(f"pub static STANDARD: [(u32, Vr); {len(std)}] = [\n")
    for tag, v in std:
        out.append(f"    (0x{tag:08X}, Vr::{v}),\n")
    out.append("];\n\n")
    out.append("/// Repeating groups: (mask, value, vr); tag & mask == value.\n")
    out.append(f"pub static REPEATERS: [(u32, u32, Vr); {len(rep)}] = [\n")
    for mask, value, v, key in rep:
        out.append(f"    (0x{mask:08X}, 0x{value:08X}, Vr::{v}), // {key}\n")
    out.append("];\n\n")
    out.append("/// Private elements: (creator, group, group mask, element low byte, vr),\n")
    out.append("/// sorted by creator bytes, then group, mask, element.\n")
    out.append(f"pub static PRIVATE: [(&str, u16, u16, u8, Vr); {len(privs)}] = [\n")
    for (creator, g, m, e), v in privs:
        cr = creator.replace("\\", "\\\\").replace('"', '\\"')
        out.append(f"    (\"{cr}\", 0x{g:04X}, 0x{m:04X}, 0x{e:02X}, Vr::{v}),\n")
    out.append("];\n")
    text = "".join(out)
    if a.check:
        current = open(OUT, encoding="utf-8").read() if os.path.exists(OUT) else ""
        if current != text:
            print(f"{OUT} is not current; run python rust/dataset/gen_dict.py", file=sys.stderr)
            return 1
        print("dict_generated.rs is current")
        return 0
    with open(OUT, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {OUT}: {len(std)} standard, {len(rep)} repeating, {len(privs)} private")
    return 0


if __name__ == "__main__":
    sys.exit(main())
