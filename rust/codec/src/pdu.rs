//! The seven upper-layer PDUs (PS3.8 §9.3) with every A-ASSOCIATE
//! user-information sub-item (PS3.7 Annex D.3.3), decoded and encoded
//! without panicking on any input.

use crate::error::{CodecError, Result};

pub const ASSOCIATE_RQ: u8 = 0x01;
pub const ASSOCIATE_AC: u8 = 0x02;
pub const ASSOCIATE_RJ: u8 = 0x03;
pub const P_DATA_TF: u8 = 0x04;
pub const RELEASE_RQ: u8 = 0x05;
pub const RELEASE_RP: u8 = 0x06;
pub const ABORT: u8 = 0x07;

/// A-ASSOCIATE-RQ presentation context item (0x20).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresentationContextRq {
    pub id: u8,
    pub abstract_syntax: String,
    pub transfer_syntaxes: Vec<String>,
}

/// A-ASSOCIATE-AC presentation context item (0x21). `transfer_syntax` is
/// empty when the context was not accepted and the peer sent no sub-item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresentationContextAc {
    pub id: u8,
    pub result: u8,
    pub transfer_syntax: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserItem {
    /// 0x51 Maximum Length (PS3.8 D.1)
    MaxLength(u32),
    /// 0x52 Implementation Class UID
    ImplementationClassUid(String),
    /// 0x53 Asynchronous Operations Window
    AsyncOpsWindow { invoked: u16, performed: u16 },
    /// 0x54 SCP/SCU Role Selection
    RoleSelection { sop_class_uid: String, scu_role: u8, scp_role: u8 },
    /// 0x55 Implementation Version Name
    ImplementationVersionName(String),
    /// 0x56 SOP Class Extended Negotiation
    SopClassExtended { sop_class_uid: String, info: Vec<u8> },
    /// 0x57 SOP Class Common Extended Negotiation
    SopClassCommonExtended {
        sop_class_uid: String,
        service_class_uid: String,
        related_general_sop_classes: Vec<String>,
    },
    /// 0x58 User Identity (request)
    UserIdentityRq {
        identity_type: u8,
        positive_response_requested: u8,
        primary: Vec<u8>,
        secondary: Vec<u8>,
    },
    /// 0x59 User Identity (response)
    UserIdentityAc { server_response: Vec<u8> },
    /// A sub-item we do not know: kept so it can be passed on or logged.
    Unknown { item_type: u8, data: Vec<u8> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssociateRq {
    pub protocol_version: u16,
    pub called_ae: [u8; 16],
    pub calling_ae: [u8; 16],
    pub application_context: String,
    pub presentation_contexts: Vec<PresentationContextRq>,
    pub user_items: Vec<UserItem>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssociateAc {
    pub protocol_version: u16,
    pub called_ae: [u8; 16],
    pub calling_ae: [u8; 16],
    pub application_context: String,
    pub presentation_contexts: Vec<PresentationContextAc>,
    pub user_items: Vec<UserItem>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pdv {
    pub context_id: u8,
    /// Message control header: bit 0 command, bit 1 last fragment.
    pub control: u8,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pdu {
    AssociateRq(AssociateRq),
    AssociateAc(AssociateAc),
    AssociateRj { result: u8, source: u8, reason: u8 },
    PData(Vec<Pdv>),
    ReleaseRq,
    ReleaseRp,
    Abort { source: u8, reason: u8 },
}

impl Pdu {
    pub fn pdu_type(&self) -> u8 {
        match self {
            Pdu::AssociateRq(_) => ASSOCIATE_RQ,
            Pdu::AssociateAc(_) => ASSOCIATE_AC,
            Pdu::AssociateRj { .. } => ASSOCIATE_RJ,
            Pdu::PData(_) => P_DATA_TF,
            Pdu::ReleaseRq => RELEASE_RQ,
            Pdu::ReleaseRp => RELEASE_RP,
            Pdu::Abort { .. } => ABORT,
        }
    }
}

// ---------------------------------------------------------------- reading

struct Cur<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Offset of `buf[0]` in the whole PDU, for error messages.
    base: usize,
}

impl<'a> Cur<'a> {
    fn new(buf: &'a [u8], base: usize) -> Self {
        Cur { buf, pos: 0, base }
    }
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }
    fn offset(&self) -> usize {
        self.base + self.pos
    }
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8]> {
        if self.remaining() < n {
            return Err(CodecError::Truncated { what, offset: self.offset() });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self, what: &'static str) -> Result<u8> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &'static str) -> Result<u16> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn u32(&mut self, what: &'static str) -> Result<u32> {
        let b = self.take(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    /// An item header (type, reserved, u16 length) and a cursor over its value.
    fn item(&mut self) -> Result<(u8, Cur<'a>)> {
        let start = self.offset();
        let item = self.u8("an item type")?;
        self.u8("an item's reserved byte")?;
        let len = self.u16("an item length")? as usize;
        if len > self.remaining() {
            return Err(CodecError::BadItemLength { item, length: len, offset: start });
        }
        let base = self.offset();
        let value = self.take(len, "an item value")?;
        Ok((item, Cur::new(value, base)))
    }
    fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }
}

fn uid(bytes: &[u8], what: &'static str) -> Result<String> {
    // UIDs may be padded with a trailing NUL (PS3.5 9.1); some peers pad with a space.
    let trimmed = match bytes.iter().rposition(|&b| b != 0 && b != b' ') {
        Some(last) => &bytes[..=last],
        None => &bytes[..0],
    };
    if !trimmed.iter().all(|b| b.is_ascii_graphic()) {
        return Err(CodecError::InvalidValue { what, detail: "not printable ASCII".into() });
    }
    Ok(String::from_utf8_lossy(trimmed).into_owned())
}

fn ae(bytes: &[u8]) -> [u8; 16] {
    let mut out = [0u8; 16];
    out.copy_from_slice(&bytes[..16]);
    out
}

fn u16_prefixed<'a>(c: &mut Cur<'a>, what: &'static str) -> Result<&'a [u8]> {
    let n = c.u16(what)? as usize;
    c.take(n, what)
}

fn decode_user_items(mut c: Cur<'_>) -> Result<Vec<UserItem>> {
    let mut items = Vec::new();
    while c.remaining() > 0 {
        let offset = c.offset();
        let (t, mut v) = c.item()?;
        let bad_len = |len: usize| CodecError::BadItemLength { item: t, length: len, offset };
        let item = match t {
            0x51 => {
                if v.remaining() != 4 {
                    return Err(bad_len(v.remaining()));
                }
                UserItem::MaxLength(v.u32("maximum length")?)
            }
            0x52 => UserItem::ImplementationClassUid(uid(v.rest(), "implementation class UID")?),
            0x53 => {
                if v.remaining() != 4 {
                    return Err(bad_len(v.remaining()));
                }
                UserItem::AsyncOpsWindow {
                    invoked: v.u16("operations invoked")?,
                    performed: v.u16("operations performed")?,
                }
            }
            0x54 => {
                let sop = uid(u16_prefixed(&mut v, "role selection SOP class")?, "role selection SOP class")?;
                let scu_role = v.u8("SCU role")?;
                let scp_role = v.u8("SCP role")?;
                if v.remaining() != 0 {
                    return Err(bad_len(v.buf.len()));
                }
                UserItem::RoleSelection { sop_class_uid: sop, scu_role, scp_role }
            }
            0x55 => {
                let name = v.rest();
                if name.is_empty() || name.len() > 16 {
                    return Err(bad_len(name.len()));
                }
                UserItem::ImplementationVersionName(String::from_utf8_lossy(name).trim_end().to_string())
            }
            0x56 => {
                let sop = uid(u16_prefixed(&mut v, "extended negotiation SOP class")?, "extended negotiation SOP class")?;
                UserItem::SopClassExtended { sop_class_uid: sop, info: v.rest().to_vec() }
            }
            0x57 => {
                let sop = uid(u16_prefixed(&mut v, "common extended SOP class")?, "common extended SOP class")?;
                let svc = uid(u16_prefixed(&mut v, "service class UID")?, "service class UID")?;
                let related_bytes = u16_prefixed(&mut v, "related general SOP classes")?;
                let mut related = Vec::new();
                let mut r = Cur::new(related_bytes, 0);
                while r.remaining() > 0 {
                    related.push(uid(u16_prefixed(&mut r, "related general SOP class")?, "related general SOP class")?);
                }
                if v.remaining() != 0 {
                    return Err(bad_len(v.buf.len()));
                }
                UserItem::SopClassCommonExtended {
                    sop_class_uid: sop,
                    service_class_uid: svc,
                    related_general_sop_classes: related,
                }
            }
            0x58 => {
                let identity_type = v.u8("user identity type")?;
                let positive_response_requested = v.u8("positive response requested")?;
                let primary = u16_prefixed(&mut v, "user identity primary field")?.to_vec();
                let secondary = u16_prefixed(&mut v, "user identity secondary field")?.to_vec();
                if v.remaining() != 0 {
                    return Err(bad_len(v.buf.len()));
                }
                UserItem::UserIdentityRq { identity_type, positive_response_requested, primary, secondary }
            }
            0x59 => {
                let server_response = u16_prefixed(&mut v, "user identity server response")?.to_vec();
                if v.remaining() != 0 {
                    return Err(bad_len(v.buf.len()));
                }
                UserItem::UserIdentityAc { server_response }
            }
            other => UserItem::Unknown { item_type: other, data: v.rest().to_vec() },
        };
        items.push(item);
    }
    Ok(items)
}

struct AssociateCommon {
    protocol_version: u16,
    called_ae: [u8; 16],
    calling_ae: [u8; 16],
    application_context: Option<String>,
    user_items: Vec<UserItem>,
}

fn decode_associate(body: &[u8], is_rq: bool) -> Result<(AssociateCommon, Vec<PresentationContextRq>, Vec<PresentationContextAc>)> {
    let mut c = Cur::new(body, 6);
    let protocol_version = c.u16("protocol version")?;
    c.take(2, "reserved bytes")?;
    let called_ae = ae(c.take(16, "called AE title")?);
    let calling_ae = ae(c.take(16, "calling AE title")?);
    c.take(32, "reserved bytes")?;
    let mut common = AssociateCommon {
        protocol_version,
        called_ae,
        calling_ae,
        application_context: None,
        user_items: Vec::new(),
    };
    let mut rq_contexts = Vec::new();
    let mut ac_contexts = Vec::new();
    let mut saw_user_info = false;
    while c.remaining() > 0 {
        let offset = c.offset();
        let (t, mut v) = c.item()?;
        match (t, is_rq) {
            (0x10, _) => {
                if common.application_context.is_some() {
                    return Err(CodecError::UnknownItem { item: t, offset });
                }
                common.application_context = Some(uid(v.rest(), "application context name")?);
            }
            (0x20, true) => {
                let id = v.u8("presentation context ID")?;
                v.take(3, "reserved bytes")?;
                if id % 2 == 0 {
                    return Err(CodecError::BadContextId(id));
                }
                let mut abstract_syntax = None;
                let mut transfer_syntaxes = Vec::new();
                while v.remaining() > 0 {
                    let sub_offset = v.offset();
                    let (st, mut sv) = v.item()?;
                    match st {
                        0x30 if abstract_syntax.is_none() => abstract_syntax = Some(uid(sv.rest(), "abstract syntax")?),
                        0x40 => transfer_syntaxes.push(uid(sv.rest(), "transfer syntax")?),
                        _ => return Err(CodecError::UnknownItem { item: st, offset: sub_offset }),
                    }
                }
                let abstract_syntax = abstract_syntax.ok_or(CodecError::MissingItem("abstract syntax sub-item"))?;
                if transfer_syntaxes.is_empty() {
                    return Err(CodecError::MissingItem("transfer syntax sub-item"));
                }
                rq_contexts.push(PresentationContextRq { id, abstract_syntax, transfer_syntaxes });
            }
            (0x21, false) => {
                let id = v.u8("presentation context ID")?;
                v.u8("reserved byte")?;
                let result = v.u8("presentation context result")?;
                v.u8("reserved byte")?;
                let mut transfer_syntax = String::new();
                while v.remaining() > 0 {
                    let sub_offset = v.offset();
                    let (st, mut sv) = v.item()?;
                    if st != 0x40 {
                        return Err(CodecError::UnknownItem { item: st, offset: sub_offset });
                    }
                    transfer_syntax = uid(sv.rest(), "transfer syntax")?;
                }
                ac_contexts.push(PresentationContextAc { id, result, transfer_syntax });
            }
            (0x50, _) => {
                if saw_user_info {
                    return Err(CodecError::UnknownItem { item: t, offset });
                }
                saw_user_info = true;
                common.user_items = decode_user_items(v)?;
            }
            _ => return Err(CodecError::UnknownItem { item: t, offset }),
        }
    }
    if common.application_context.is_none() {
        return Err(CodecError::MissingItem("application context item"));
    }
    if is_rq && rq_contexts.is_empty() {
        return Err(CodecError::MissingItem("presentation context item"));
    }
    Ok((common, rq_contexts, ac_contexts))
}

fn fixed4(body: &[u8], pdu_type: u8) -> Result<[u8; 4]> {
    if body.len() != 4 {
        return Err(CodecError::BadPduLength { pdu_type, length: body.len() as u32 });
    }
    Ok([body[0], body[1], body[2], body[3]])
}

/// Parse the PDV items of a P-DATA-TF body.
pub fn decode_pdvs(body: &[u8]) -> Result<Vec<Pdv>> {
    let mut c = Cur::new(body, 6);
    let mut pdvs = Vec::new();
    if body.is_empty() {
        return Err(CodecError::BadPduLength { pdu_type: P_DATA_TF, length: 0 });
    }
    while c.remaining() > 0 {
        let remaining = c.remaining() as u32;
        let len = c.u32("a PDV item length")?;
        if len < 2 || len as u64 > (c.remaining() as u64) {
            return Err(CodecError::BadPdvLength { length: len, remaining });
        }
        let context_id = c.u8("a PDV context ID")?;
        if context_id % 2 == 0 {
            return Err(CodecError::BadContextId(context_id));
        }
        let control = c.u8("a PDV message control header")?;
        let data = c.take(len as usize - 2, "a PDV value")?.to_vec();
        pdvs.push(Pdv { context_id, control, data });
    }
    Ok(pdvs)
}

/// Decode one whole PDU (header included). Never panics.
pub fn decode(bytes: &[u8]) -> Result<Pdu> {
    if bytes.len() < 6 {
        return Err(CodecError::Truncated { what: "the PDU header", offset: bytes.len() });
    }
    let pdu_type = bytes[0];
    let length = u32::from_be_bytes([bytes[2], bytes[3], bytes[4], bytes[5]]);
    let body = &bytes[6..];
    if body.len() as u64 != length as u64 {
        return Err(CodecError::BadPduLength { pdu_type, length });
    }
    match pdu_type {
        ASSOCIATE_RQ => {
            let (c, contexts, _) = decode_associate(body, true)?;
            Ok(Pdu::AssociateRq(AssociateRq {
                protocol_version: c.protocol_version,
                called_ae: c.called_ae,
                calling_ae: c.calling_ae,
                application_context: c.application_context.unwrap_or_default(),
                presentation_contexts: contexts,
                user_items: c.user_items,
            }))
        }
        ASSOCIATE_AC => {
            let (c, _, contexts) = decode_associate(body, false)?;
            Ok(Pdu::AssociateAc(AssociateAc {
                protocol_version: c.protocol_version,
                called_ae: c.called_ae,
                calling_ae: c.calling_ae,
                application_context: c.application_context.unwrap_or_default(),
                presentation_contexts: contexts,
                user_items: c.user_items,
            }))
        }
        ASSOCIATE_RJ => {
            let b = fixed4(body, pdu_type)?;
            Ok(Pdu::AssociateRj { result: b[1], source: b[2], reason: b[3] })
        }
        P_DATA_TF => Ok(Pdu::PData(decode_pdvs(body)?)),
        RELEASE_RQ => fixed4(body, pdu_type).map(|_| Pdu::ReleaseRq),
        RELEASE_RP => fixed4(body, pdu_type).map(|_| Pdu::ReleaseRp),
        ABORT => {
            let b = fixed4(body, pdu_type)?;
            Ok(Pdu::Abort { source: b[2], reason: b[3] })
        }
        other => Err(CodecError::UnknownPduType(other)),
    }
}

// ---------------------------------------------------------------- writing

/// Start a length-prefixed block; returns the position to back-patch.
fn open_u16(out: &mut Vec<u8>, item: u8) -> usize {
    out.push(item);
    out.push(0);
    out.extend_from_slice(&[0, 0]);
    out.len()
}

fn close_u16(out: &mut [u8], start: usize) {
    let len = (out.len() - start).min(u16::MAX as usize) as u16;
    out[start - 2..start].copy_from_slice(&len.to_be_bytes());
}

fn item(out: &mut Vec<u8>, t: u8, value: &[u8]) {
    let start = open_u16(out, t);
    out.extend_from_slice(value);
    close_u16(out, start);
}

fn prefixed(out: &mut Vec<u8>, value: &[u8]) {
    out.extend_from_slice(&(value.len().min(u16::MAX as usize) as u16).to_be_bytes());
    out.extend_from_slice(value);
}

fn encode_user_items(out: &mut Vec<u8>, items: &[UserItem]) {
    let start = open_u16(out, 0x50);
    for it in items {
        match it {
            UserItem::MaxLength(n) => item(out, 0x51, &n.to_be_bytes()),
            UserItem::ImplementationClassUid(u) => item(out, 0x52, u.as_bytes()),
            UserItem::AsyncOpsWindow { invoked, performed } => {
                let s = open_u16(out, 0x53);
                out.extend_from_slice(&invoked.to_be_bytes());
                out.extend_from_slice(&performed.to_be_bytes());
                close_u16(out, s);
            }
            UserItem::RoleSelection { sop_class_uid, scu_role, scp_role } => {
                let s = open_u16(out, 0x54);
                prefixed(out, sop_class_uid.as_bytes());
                out.push(*scu_role);
                out.push(*scp_role);
                close_u16(out, s);
            }
            UserItem::ImplementationVersionName(n) => item(out, 0x55, n.as_bytes()),
            UserItem::SopClassExtended { sop_class_uid, info } => {
                let s = open_u16(out, 0x56);
                prefixed(out, sop_class_uid.as_bytes());
                out.extend_from_slice(info);
                close_u16(out, s);
            }
            UserItem::SopClassCommonExtended { sop_class_uid, service_class_uid, related_general_sop_classes } => {
                let s = open_u16(out, 0x57);
                prefixed(out, sop_class_uid.as_bytes());
                prefixed(out, service_class_uid.as_bytes());
                let mut related = Vec::new();
                for r in related_general_sop_classes {
                    prefixed(&mut related, r.as_bytes());
                }
                prefixed(out, &related);
                close_u16(out, s);
            }
            UserItem::UserIdentityRq { identity_type, positive_response_requested, primary, secondary } => {
                let s = open_u16(out, 0x58);
                out.push(*identity_type);
                out.push(*positive_response_requested);
                prefixed(out, primary);
                prefixed(out, secondary);
                close_u16(out, s);
            }
            UserItem::UserIdentityAc { server_response } => {
                let s = open_u16(out, 0x59);
                prefixed(out, server_response);
                close_u16(out, s);
            }
            UserItem::Unknown { item_type, data } => item(out, *item_type, data),
        }
    }
    close_u16(out, start);
}

fn header(out: &mut Vec<u8>, pdu_type: u8) -> usize {
    out.push(pdu_type);
    out.push(0);
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.len()
}

fn close_pdu(out: &mut [u8], start: usize) {
    let len = (out.len() - start) as u32;
    out[start - 4..start].copy_from_slice(&len.to_be_bytes());
}

fn associate_head(out: &mut Vec<u8>, version: u16, called: &[u8; 16], calling: &[u8; 16], app: &str) {
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(called);
    out.extend_from_slice(calling);
    out.extend_from_slice(&[0u8; 32]);
    item(out, 0x10, app.as_bytes());
}

/// Append the encoding of `pdu` to `out` (lengths back-patched in place).
pub fn encode(pdu: &Pdu, out: &mut Vec<u8>) {
    let start = header(out, pdu.pdu_type());
    match pdu {
        Pdu::AssociateRq(rq) => {
            associate_head(out, rq.protocol_version, &rq.called_ae, &rq.calling_ae, &rq.application_context);
            for cx in &rq.presentation_contexts {
                let s = open_u16(out, 0x20);
                out.extend_from_slice(&[cx.id, 0, 0, 0]);
                item(out, 0x30, cx.abstract_syntax.as_bytes());
                for ts in &cx.transfer_syntaxes {
                    item(out, 0x40, ts.as_bytes());
                }
                close_u16(out, s);
            }
            encode_user_items(out, &rq.user_items);
        }
        Pdu::AssociateAc(ac) => {
            associate_head(out, ac.protocol_version, &ac.called_ae, &ac.calling_ae, &ac.application_context);
            for cx in &ac.presentation_contexts {
                let s = open_u16(out, 0x21);
                out.extend_from_slice(&[cx.id, 0, cx.result, 0]);
                if !cx.transfer_syntax.is_empty() {
                    item(out, 0x40, cx.transfer_syntax.as_bytes());
                }
                close_u16(out, s);
            }
            encode_user_items(out, &ac.user_items);
        }
        Pdu::AssociateRj { result, source, reason } => out.extend_from_slice(&[0, *result, *source, *reason]),
        Pdu::PData(pdvs) => {
            for pdv in pdvs {
                out.extend_from_slice(&((pdv.data.len() + 2) as u32).to_be_bytes());
                out.push(pdv.context_id);
                out.push(pdv.control);
                out.extend_from_slice(&pdv.data);
            }
        }
        Pdu::ReleaseRq | Pdu::ReleaseRp => out.extend_from_slice(&[0, 0, 0, 0]),
        Pdu::Abort { source, reason } => out.extend_from_slice(&[0, 0, *source, *reason]),
    }
    close_pdu(out, start);
}

/// An A-ABORT PDU from the service provider with `reason` (PS3.8 9.3.8).
pub fn abort_pdu(reason: u8) -> Vec<u8> {
    let mut out = Vec::with_capacity(10);
    encode(&Pdu::Abort { source: 2, reason }, &mut out);
    out
}
