"""`dicom-gateway route test FILE…`: which rules match a stored object, and why (not)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from gateway.messages import AssociationInfo, RoutedInstance


def _instance(path: Path, calling_ae: str, called_ae: str, source: str) -> RoutedInstance:
    import pydicom

    ds = pydicom.dcmread(path, stop_before_pixels=True)
    meta = ds.file_meta
    who = AssociationInfo(id="route-test", calling_ae=calling_ae, called_ae=called_ae, peer_host=source,
                          peer_port=0, local_port=0)
    return RoutedInstance(
        sop_instance_uid=str(ds.get("SOPInstanceUID", meta.get("MediaStorageSOPInstanceUID", ""))),
        sop_class_uid=str(ds.get("SOPClassUID", meta.get("MediaStorageSOPClassUID", ""))),
        study_instance_uid=str(ds.get("StudyInstanceUID", "")),
        series_instance_uid=str(ds.get("SeriesInstanceUID", "")),
        modality=str(ds.get("Modality", "")) or None,
        transfer_syntax=str(meta.get("TransferSyntaxUID", "")),
        association=who, _dataset=ds)


def route_test_command(files: list[str], runtime: Any, calling_ae: str, called_ae: str, source: str) -> int:
    """Print every rule's verdict for each file; exit 0, or 2 when a file cannot be read."""
    router = runtime.router
    status = 0
    if not router.rules:
        print("no routing rules are configured (routes/*.toml)")
    for name in files:
        path = Path(name)
        try:
            instance = _instance(path, calling_ae, called_ae, source)
        except Exception as exc:
            print(f"{path}: cannot read as DICOM: {exc}", file=sys.stderr)
            status = 2
            continue
        decision = router.decide(instance)
        print(f"{path}  ({instance.modality or '-'} {instance.sop_class_uid}, "
              f"from {calling_ae}@{source} to {called_ae})")
        for v in decision.verdicts:
            where = f"{v.file}:{v.line}" if v.line else v.file
            if v.matched:
                target = ", ".join(v.destinations) if v.destinations else ""
                print(f"  MATCH    {v.rule} ({where}) -> {v.action} {target}".rstrip())
            else:
                print(f"  no match {v.rule} ({where}): " + "; ".join(v.reasons))
        for dest in decision.hook_destinations:
            print(f"  PLUGIN   gateway_route -> forward {dest}")
        for err in decision.errors:
            print(f"  error    {err}")
        for compiled in decision.actions:
            print(f"  => {compiled.rule.action} (rule {compiled.rule.name}), carried out by its plugin")
        if decision.dropped_by:
            print(f"  => dropped by rule {decision.dropped_by!r}: not forwarded")
        elif decision.plans:
            for plan in decision.plans:
                extra = []
                if plan.state == "held":
                    extra.append("held for an operator")
                if plan.state == "waiting":
                    extra.append("after the sender's association ends" if plan.complete_after == -1
                                 else f"after the series is quiet for {plan.complete_after:g} s")
                if plan.priority:
                    extra.append(f"priority {plan.priority}")
                if plan.options.get("syntax"):
                    extra.append(f"prefers {plan.options['syntax']}")
                print(f"  => forward to {plan.destination} (rule {plan.rule})"
                      + (f": {', '.join(extra)}" if extra else ""))
        elif not decision.actions:
            print("  => not forwarded (no rule matched)")
    return status
