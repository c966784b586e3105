"""Every hook a dicom-gateway plugin can implement.

Hooks are prefixed ``gateway_``. Implement them in a module or class marked
with :data:`gateway.hookimpl` and expose it through the ``dicom_gateway``
entry-point group::

    [project.entry-points.dicom_gateway]
    my_plugin = "my_package.my_plugin"

Built-in plugins load through exactly that path. Unless a hook says
otherwise, every implementation is called and the results are collected in a
list. Hooks receive gateway-owned objects (:mod:`gateway.messages`), never
pynetdicom types. A hook implementation that raises is logged and counted,
and the DICOM peer gets a proper failure status; it never takes a worker down.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from pathlib import Path

    from gateway.cli.registry import CommandRegistry
    from gateway.index import FileRecord
    from gateway.messages import (AssociationInfo, AssociationRequest, Rejection, Response, RoutedInstance,
                                  IndexedInstance, SeriesInfo, StoreRequest)
    from gateway.services import BackendRegistry, ServiceRegistry

PROJECT = "gateway"

#: The hook API's version, MAJOR.MINOR. A minor version adds hooks, or
#: arguments to a hook (an implementation takes only the arguments it names,
#: so it keeps working) and may deprecate; only a major version removes or
#: changes one. A plugin may state the major version it was written for as
#: ``GATEWAY_PLUGIN_API = 1`` in its module; another major is left out, named.
#: Policy: docs/plugins.md, "Versions and deprecation".
API_VERSION = "1.2"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec(historic=True)
def gateway_register_services(registry: "ServiceRegistry") -> None:
    """Register the DICOM services this plugin provides.

    Called once per plugin when the plugin host starts (historic: a plugin
    registered later is called too). Call ``registry.add(Service(...))`` for
    each service class; a :class:`gateway.services.Service` names its SOP
    classes (or a callable of the config returning them), its role and
    transfer syntaxes, and a handler object with one method per DIMSE
    operation it serves (``c_echo``, ``c_store``, …). Presentation contexts
    and the conformance statement are built from this registry. A service
    in the SCU role (``role="scu"`` or ``"both"``) also gives the ``client``
    through which the core and other plugins act as that SCU
    (``registry.scu(name).client``) and ``scu_behaviour``, what it proposes.

    Returns nothing.
    """


@hookspec(historic=True)
def gateway_register_storage_backends(registry: "BackendRegistry") -> None:
    """Register storage backend factories by name.

    Called once per plugin when the plugin host starts (historic). Call
    ``registry.add(name, factory)``; the config chooses a backend by that
    name and the core calls ``factory(config)`` to build it.

    Returns nothing.
    """


@hookspec(historic=True)
def gateway_register_print_drivers(registry: "BackendRegistry") -> None:
    """Register print driver factories by name (API 1.2).

    A print driver is where a composed film goes: a DICOM Print SCP, a PNG
    or PDF file, a site's own non-DICOM printer. ``printers/*.toml`` chooses
    one by name (``driver = "..."``) and the print plugin calls
    ``factory(printer_config, config)``; what the returned object must do is
    documented in docs/print.md ("Print drivers").

    Returns nothing.
    """


@hookspec(historic=True)
def gateway_register_media_drivers(registry: "BackendRegistry") -> None:
    """Register media driver factories by name (API 1.2).

    A media driver writes a staged file-set to its target (a folder, an ISO
    image, a site's disc burner or USB target) and reads it back for
    verification. The media plugin chooses one by name and calls
    ``factory(config)``; the interface is in docs/media.md ("Media drivers").

    Returns nothing.
    """


@hookspec
def gateway_register_commands(commands: "CommandRegistry") -> None:
    """Add ``dicom-gateway`` subcommands.

    Called once per plugin (attributed to it: ``dicom-gateway --help`` lists
    commands under the plugin that added them) each time the command line is
    built, in the command's own process — never in a running gateway. Call
    ``p = commands.add_parser(name, help=..., examples=...)``; ``p`` is a plain
    :class:`argparse.ArgumentParser`: add arguments and sub-commands to it and
    ``p.set_defaults(func=run)``, where ``run(args)`` returns the exit status.
    ``commands.config_options(p)`` adds the usual ``--config DIR`` and
    ``--data-dir``; in ``run`` use :func:`gateway.command_setup.load_command_config`
    and :func:`gateway.command_setup.open_command_index`. Import what the command
    needs inside ``run`` so that ``--help`` stays fast. A name taken by the core
    or by another plugin is refused (that plugin is named, the rest of the command
    line works). Returns nothing.
    """


@hookspec
def gateway_config_loaded(config: Any) -> list[str] | None:
    """Validate and take up a newly loaded configuration.

    Called with the validated :class:`gateway.config.GatewayConfig` before it
    is swapped in, at start-up and on every hot reload, in every worker.
    ``config.plugin_settings(name)`` holds this plugin's own section. Return
    a list of error strings (``"plugins/x.toml: key 'y': ..."``) to refuse
    the config — the last good one keeps running — or ``None``/``[]`` to
    accept it. Must not keep state from a config that another plugin may
    still refuse; read settings again when handling requests instead.
    """


@hookspec(firstresult=True)
def gateway_association_requested(request: "AssociationRequest", config: Any) -> "Rejection | None":
    """Decide whether to accept an association, before negotiation.

    Called for each A-ASSOCIATE-RQ that passed the core's own policy (called
    AE title, application context, association limits — STO-4, STO-9), with
    the config generation the association will run on.
    Return a :class:`gateway.messages.Rejection` to send an A-ASSOCIATE-RJ
    with that result/source/reason, or ``None`` to let it through. The first
    non-``None`` result wins (firstresult).
    """


@hookspec
def gateway_association_opened(association: "AssociationInfo") -> None:
    """Observe an association that has just been established.

    Called once, after the A-ASSOCIATE-AC was sent. Returns nothing; use it
    for audit trails (SEC-4), metrics or per-association state.
    """


@hookspec
def gateway_association_closed(association: "AssociationInfo", reason: str) -> None:
    """Observe the end of an association.

    Called once per established association with ``reason`` one of
    ``"released"``, ``"aborted"`` or ``"closed"``. Returns nothing.
    """


@hookspec(firstresult=True)
def gateway_instance_received(request: "StoreRequest") -> "Response | int | None":
    """Accept, coerce or reject an incoming C-STORE before it is stored.

    Called for every C-STORE-RQ before the storage service handles it. Return
    a failure :class:`gateway.messages.Response` (or status code) to refuse
    the instance with that status, or ``None`` to continue. The first
    non-``None`` result wins (firstresult).
    """


@hookspec
def gateway_instance_stored(instance: "IndexedInstance", config: Any) -> None:
    """An object was stored and indexed; observe it (derive data, keep your own table).

    Called by the storage service in the association's thread, after the
    file and its index row are committed and before the peer gets Success, for
    every new or replaced object (not for a byte-identical resend, STO-6); also
    for ``dicom-gateway import``. ``instance.path`` is the stored file: read it,
    never change it. Do not block here — every object of the association waits:
    hand work to a thread of your own and keep what you derive in a table of
    your own (its own ``sqlalchemy.MetaData``, ``create_all(checkfirst=True)``
    on the index engine; never the core's tables). An
    implementation that raises is logged and counted; the object stays stored.
    Returns nothing.
    """


@hookspec
def gateway_ls_columns(level: str, uids: list[str], config: Any) -> "dict[str, dict[str, str]] | None":
    """Add columns to ``dicom-gateway ls``.

    Called once per ``ls`` with ``level`` ``"series"`` and the Series Instance
    UIDs about to be shown, in the command's process. Return ``{column name:
    {uid: text}}`` for the series you have something to say about (one query,
    not one per UID); ``ls`` prints ``name text`` on those series' lines.
    Return ``None`` or ``{}`` for nothing.
    """


@hookspec
def gateway_route(instance: "RoutedInstance", config: Any) -> "list[str] | None":
    """Add forward destinations for an instance that is being stored.

    Called for every instance the storage service is about to index, after
    the ``routes/*.toml`` rules were evaluated, with a
    :class:`gateway.messages.RoutedInstance` (who sent it, its UIDs, modality,
    and ``instance.dataset()`` for any other attribute) and the running config.
    Return a list of destinations — a configured remote's name or
    ``"AET@host:port"`` — or ``None``. Every implementation is called and the
    lists are merged with the rules' destinations; a destination named twice
    is queued once. ``instance.destinations`` holds what the rules chose (read
    only). A rule with action ``drop`` that matched vetoes every destination,
    including these. The jobs are written in the same transaction as the
    instance, so keep this fast: no network I/O.
    """


@hookspec
def gateway_series_complete(series: "SeriesInfo", config: Any) -> None:
    """Observe a series that has become complete.

    Called in the sender process once per completion: when no instance of the
    series arrived for ``[forwarding] series_quiet_time`` seconds, or the
    association that sent its last instance ended, whichever comes first. A
    late arrival reopens the series, so the event can fire again for the same
    series. ``series`` is a :class:`gateway.messages.SeriesInfo`. Returns nothing.
    """


@hookspec
def gateway_sender_poll(config: Any, index: Any, stopping: Any) -> None:
    """Background work of a plugin's own, in the sender process (API 1.1).

    Called by the sender's scheduler on every round (about every ``[forwarding]
    poll_interval`` seconds, also while ``[forwarding] enabled = false``), once
    the index is open, with the running config (hot reloads included), the
    sender's :class:`gateway.index.Index` and ``stopping``, a
    :class:`threading.Event` set when the sender shuts down. There is exactly
    one sender per node (restarted by the supervisor when it dies), so this is
    where a durable job queue of a plugin's own is worked off. Must return at
    once: on the first call start a daemon thread of your own, hand it the
    newest config on later calls, and let it end when ``stopping`` is set.
    Returns nothing.
    """


@hookspec(firstresult=True)
def gateway_stored_file_path(file: "FileRecord", config: Any) -> "Path | None":
    """Where the file of a stored instance can be read on this host.

    Called by the core whenever it reads an object it stored — the sender
    before forwarding it, ``dicom-gateway send --study/--series`` — with the
    index's :class:`gateway.index.FileRecord` (``file.backend`` names the
    storage backend, ``file.path`` is relative to that backend's root) and the
    running config. The storage service that wrote it knows its root: return
    the absolute :class:`pathlib.Path`, or ``None`` when the record is not
    yours. The first non-``None`` result wins (firstresult).
    """


@hookspec
def gateway_transform_outgoing(dataset: Any, destination: Any, config: Any) -> None:
    """Change an object on its way to a destination (coercion, de-identification).

    Called by the Storage SCU for every object it is about to send — from the
    sender's queue and from ``dicom-gateway send`` — after the SND-7
    conversions and before the SND-2 syntax conversion, with the whole object
    as a pydicom ``Dataset`` (File Meta included, read from the stored file),
    the :class:`gateway.net.storescu.Destination` it goes to and the running
    config. Modify ``dataset`` in place; every implementation is called in
    turn. Returns nothing. The stored object is never changed; a new SOP
    Instance UID set here is what the peer receives (and what storage
    commitment asks about). When no plugin implements this hook, objects
    leave byte-exact without being parsed; implementing it costs a pydicom
    read and write per object. An implementation that raises fails that
    object (not retried until an operator runs ``queue retry``).
    """
