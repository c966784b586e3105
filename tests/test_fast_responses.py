"""C-FIND / C-MOVE / C-GET responses encoded by hand (gateway.net.fastpath, issue 12):
the bytes on the wire must be pynetdicom's, fragment for fragment, and a stream of
them must reach a real peer (DCMTK findscu) complete and in order."""

from __future__ import annotations

import struct
from io import BytesIO

import pytest
from pynetdicom.dimse_messages import C_FIND_RSP, C_GET_RSP, C_MOVE_RSP
from pynetdicom.dimse_primitives import C_FIND, C_GET, C_MOVE
from pynetdicom.pdu import P_DATA_TF

from gateway import _rust
from gateway.net.fastpath import encode_response_command

KINDS = {"find": (C_FIND, C_FIND_RSP), "move": (C_MOVE, C_MOVE_RSP), "get": (C_GET, C_GET_RSP)}


def _pynetdicom_pdus(message, max_pdu: int) -> bytes:
    return b"".join(P_DATA_TF(pdata).encode() for pdata in message.encode_msg(3, max_pdu))


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("status", [0xFF00, 0xFF01, 0x0000, 0xB000, 0xA900, 0xFE00])
@pytest.mark.parametrize("identifier", [None, b"\x08\x00\x52\x00\x06\x00IMAGE ", bytes(range(256)) * 9])
@pytest.mark.parametrize("max_pdu", [0, 16384, 100, 7])
def test_response_pdus_equal_pynetdicoms(kind, status, identifier, max_pdu):
    primitive_type, message_type = KINDS[kind]
    primitive = primitive_type()
    primitive.MessageIDBeingRespondedTo = 513
    primitive.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.2.2.1"  # odd length: padded
    primitive.Status = status
    if kind != "find" and status in (0xFF00, 0xB000):
        primitive.NumberOfRemainingSuboperations = 299 if status == 0xFF00 else None
        primitive.NumberOfCompletedSuboperations = 1
        primitive.NumberOfFailedSuboperations = 0
        primitive.NumberOfWarningSuboperations = 65535
    if identifier is not None:
        primitive.Identifier = BytesIO(identifier)
    message = message_type()
    message.primitive_to_message(primitive)
    command = encode_response_command(primitive)
    assert command is not None
    ours = b"".join(_rust.fragment_message(3, command, identifier, max_pdu))  # what FastDIMSE sends
    assert ours == _pynetdicom_pdus(message, max_pdu)


@pytest.mark.parametrize("optional", ["ErrorComment", "OffendingElement"])
def test_optional_status_elements_are_left_to_pynetdicom(optional):
    primitive = C_MOVE()
    primitive.MessageIDBeingRespondedTo = 1
    primitive.Status = 0xA900
    setattr(primitive, optional, "no such key" if optional == "ErrorComment" else 0x00100010)
    assert encode_response_command(primitive) is None


def test_fragments_name_their_kind_and_end_with_a_last_fragment():
    """PS3.8 E.2: bit 0 says command, bit 1 last fragment; every PDU fits the peer's max."""
    data = b"".join(_rust.fragment_message(1, b"C" * 25, b"D" * 40, 16))
    pos, headers = 0, []
    while pos < len(data):
        kind, _, length = struct.unpack_from(">BBI", data, pos)
        assert kind == 0x04 and length <= 16
        item_length, context_id, header = struct.unpack_from(">IBB", data, pos + 6)
        assert item_length == length - 4 and context_id == 1
        headers.append(header)
        pos += 6 + length
    assert headers == [1, 1, 3, 0, 0, 0, 2]
