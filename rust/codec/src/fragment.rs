//! Splitting a DIMSE message into P-DATA-TF PDUs for sending.

/// Chunk used when the peer set no maximum (max_pdu 0).
pub const UNLIMITED_CHUNK: usize = 4 << 20;

/// Encode `command` then `dataset` as P-DATA-TF PDUs, one PDV each, every
/// PDU's length field at most `max_pdu` (the peer's Maximum Length Received;
/// 0 = unlimited). Lengths are written in place; data is copied once.
pub fn fragment_message(context_id: u8, command: &[u8], dataset: Option<&[u8]>, max_pdu: u32) -> Vec<Vec<u8>> {
    // PDU length = PDV item length field (4) + context + control + data.
    let chunk = if max_pdu == 0 { UNLIMITED_CHUNK } else { (max_pdu as usize).saturating_sub(6).max(1) };
    let mut pdus = Vec::new();
    push_fragments(&mut pdus, context_id, command, 0x01, chunk);
    if let Some(data) = dataset {
        push_fragments(&mut pdus, context_id, data, 0x00, chunk);
    }
    pdus
}

fn push_fragments(pdus: &mut Vec<Vec<u8>>, context_id: u8, data: &[u8], kind: u8, chunk: usize) {
    let mut pieces = data.chunks(chunk).peekable();
    if pieces.peek().is_none() {
        pdus.push(pdata(context_id, kind | 0x02, &[]));
        return;
    }
    while let Some(piece) = pieces.next() {
        let last = if pieces.peek().is_none() { 0x02 } else { 0x00 };
        pdus.push(pdata(context_id, kind | last, piece));
    }
}

fn pdata(context_id: u8, control: u8, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + data.len());
    out.extend_from_slice(&[0x04, 0]);
    out.extend_from_slice(&((data.len() + 6) as u32).to_be_bytes());
    out.extend_from_slice(&((data.len() + 2) as u32).to_be_bytes());
    out.push(context_id);
    out.push(control);
    out.extend_from_slice(data);
    out
}
