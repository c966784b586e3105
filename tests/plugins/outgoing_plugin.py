"""Test plugin: gateway_transform_outgoing stamps the destination and removes the birth date,
and breaks on purpose for a patient named BROKEN."""

from gateway.hookspecs import hookimpl


@hookimpl
def gateway_transform_outgoing(dataset, destination, config):
    if str(dataset.get("PatientName", "")) == "BROKEN":
        raise RuntimeError("refusing to send this one")
    dataset.InstitutionName = f"VIA {destination.ae_title}"
    if "PatientBirthDate" in dataset:
        del dataset.PatientBirthDate
