"""Register the seeds' private dictionaries with pydicom (DAT-1).

After ``register()`` pydicom (and so the index, `dcmdump`-like tools and
plugins) read Philips (7053) and GE GENIE (GEMS_GENIE_2) private elements by
name and with their real VRs, also from Implicit VR files. The same data
feeds the Rust transcoder's build-time dictionary (rust/dataset/gen_dict.py).
"""

from __future__ import annotations

from pydicom.datadict import add_private_dict_entries

from gateway.private_dict import PRIVATE_DICTIONARIES

_done = False


def register() -> None:
    """Idempotent; called by the index and the storage service on import."""
    global _done
    if _done:
        return
    for creator, entries in PRIVATE_DICTIONARIES.items():
        regular = {int(key[:4] + "00" + key[6:], 16): value
                   for key, value in entries.items() if not key.startswith("50xx")}
        add_private_dict_entries(creator, regular)
    # The public API files a tag under "ggggxxee"; GENIE's curve-group rows
    # must match every odd 50xx group, which pydicom looks up as "50xxxxee".
    from pydicom._private_dict import private_dictionaries

    for key, (vr, vm, name) in PRIVATE_DICTIONARIES["GEMS_GENIE_2"].items():
        if key.startswith("50xx"):
            private_dictionaries["GEMS_GENIE_2"][key] = (vr, vm, name, "")
    _done = True
