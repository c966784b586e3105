"""Test plugin: gateway_route adds a destination for NM objects, and one for a named instance."""

from gateway.hookspecs import hookimpl

SEEN: list[tuple[str, tuple[str, ...]]] = []


@hookimpl
def gateway_route(instance, config):
    SEEN.append((instance.sop_instance_uid, instance.destinations))
    if instance.modality == "NM":
        return ["NMVIEW@127.0.0.1:4999"]
    if instance.dataset() is not None and str(instance.dataset().get("Manufacturer", "")) == "ROUTE-ME":
        return ["pacs"]
    return None
