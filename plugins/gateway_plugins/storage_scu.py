"""Storage service class SCU (PS3.4 Annex B, SND-1..SND-8) as a registered
service, so the core, the ``send`` command and other plugins (a C-MOVE's
sub-operations, media import to a peer) find it through the registry and the
conformance statement shows what it proposes.

The association machinery itself stays in :mod:`gateway.net.storescu`, next to
the forward sender that uses it (decision 0004; decision 0006 says why)."""

from __future__ import annotations

from typing import Any, Callable, Iterable, Iterator, Sequence

from gateway.messages import UNCOMPRESSED_SYNTAXES
from gateway.services import Service

NAME = "storage-scu"

BEHAVIOUR = (
    "Proposes each needed storage SOP class with Implicit VR LE, Explicit VR LE and Explicit VR BE, "
    "plus the object's stored syntax, each syntax in a context of its own (SND-1); more than 127 "
    "contexts: the uncompressed syntaxes of a SOP class share one",
    "Sends in the first accepted of Explicit VR LE > Explicit VR BE > Implicit VR LE, converting in Rust "
    "when stored otherwise (SND-2); a route may prefer another accepted syntax",
    "Proposes no SCP/SCU role selection (the default roles: we SCU, the peer SCP); for a C-GET's "
    "sub-operations, sends on the requester's association in the contexts where it accepted the SCP role",
    "Many C-STOREs per association (SND-3); a SOP class the peer did not accept: the object is failed "
    "and skipped (SND-4); refused (A7xx): the association ends and the rest is retried later; another "
    "failure: that object fails and the rest go on a new association; Warning (Bxxx): sent, logged (SND-5)",
)


class StorageSCU:
    """What other code calls to send objects to a Storage SCP."""

    def destination(self, spec: str, config: Any) -> Any:
        """A ``remotes/*.toml`` name or ``AET@host:port`` → a destination;
        LookupError says which names there are."""
        from gateway.net.storescu import resolve_destination

        return resolve_destination(spec, config)

    def send(self, destination: Any, items: Sequence[Any], config: Any, *,
             on_result: Callable[[Any], None] | None = None,
             on_state: Callable[[str], None] | None = None,
             on_start: Callable[[Any], None] | None = None,
             host: Any = None,
             cancelled: Callable[[], bool] | None = None) -> list[Any]:
        """Send ``items`` (:class:`gateway.net.storescu.Outgoing`) to
        ``destination`` on as few associations as SND-3..SND-5 allow, through
        the plugins' ``gateway_outgoing`` transform of ``host`` when given.
        Blocks until done; results (``SendResult``) in the order of ``items``.
        Once ``cancelled()`` is true the items not yet sent end "cancelled"."""
        from gateway.net.storescu import send_items
        from gateway.outgoing import outgoing_transform

        transform = outgoing_transform(host, config) if host is not None else None
        return send_items(destination, items, config, on_result=on_result, on_state=on_state,
                          on_start=on_start, transform=transform, cancelled=cancelled)

    def send_back(self, channel: Any, items: Iterable[Any], config: Any, *, host: Any = None) -> Iterator[Any]:
        """C-STORE ``items`` back on the association a request came on
        (``request.store_channel`` of a C-GET), in the calling thread, yielding
        each ``SendResult`` as it is done; a SOP class on which the peer did not
        accept our SCU role fails (SND-4). Same syntax choice, conversion and
        ``gateway_outgoing`` transform as :meth:`send`."""
        from gateway.net.storescu import send_on_channel
        from gateway.outgoing import outgoing_transform

        transform = outgoing_transform(host, config) if host is not None else None
        return iter(send_on_channel(channel, items, config, transform=transform))


def service(sop_classes: Callable[[Any], Sequence[str]]) -> Service:
    return Service(
        name=NAME,
        sop_classes=sop_classes,  # what the archive may hold is what may leave it
        handler=None,
        transfer_syntaxes=UNCOMPRESSED_SYNTAXES,
        role="scu",
        client=StorageSCU(),
        scu_behaviour=BEHAVIOUR,
        description="Storage SCU: forwarding, `dicom-gateway send`, C-MOVE/C-GET sub-operations (SND-1..SND-8)",
    )
