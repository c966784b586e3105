//! The transfer-syntax transcoder: one pass over the encoded input, writing
//! the output as it goes, no object tree.
//!
//! * Elements with defined and undefined lengths, nested sequences and items,
//!   delimiters; defined lengths of sequences and items are recomputed
//!   (back-patched) because header sizes differ between implicit and explicit VR.
//! * Implicit VRs come from the generated dictionary, private elements through
//!   the creator reserved in `(gggg,00xx)` of the same dataset or item (DAT-1).
//! * Values are byte-swapped by VR; pixel data OW by Bits Allocated; Curve
//!   Data `(50xx,3000)` by its Data Value Representation `(50xx,0103)`.
//! * UN is never swapped (PS3.5 6.2.2); a value too long for a 16-bit explicit
//!   length is written as UN with its little-endian bytes (DAT-2); explicit UN
//!   with undefined length is an implicit VR LE sequence (PS3.5 6.2.2).
//! * Group lengths `(gggg,0000)` are recomputed. File Meta is rewritten.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use crate::dict::{private_vr, standard_vr, trim_creator};
use crate::error::{Error, Result, Tag};
use crate::swap::extend_swapped;
use crate::syntax::Syntax;
use crate::vr::Vr;

const ITEM: u32 = 0xFFFE_E000;
const ITEM_DELIM: u32 = 0xFFFE_E00D;
const SEQ_DELIM: u32 = 0xFFFE_E0DD;
const PIXEL_DATA: u32 = 0x7FE0_0010;
const UNDEFINED: u32 = 0xFFFF_FFFF;
/// Deeper nesting than this is refused (no real object comes close; it keeps
/// the recursion bounded on hostile input).
pub const MAX_DEPTH: usize = 64;

/// What to produce.
#[derive(Clone, Debug)]
pub struct Options {
    /// Target transfer syntax.
    pub dst: Syntax,
    /// Source syntax. Required for a raw dataset (no File Meta); when given for
    /// an input with File Meta it overrides the File Meta's Transfer Syntax UID.
    pub src: Option<Syntax>,
    /// Write a preamble, `DICM` and File Meta (else only the dataset, as sent
    /// over the network).
    pub file_meta: bool,
    /// The input is a bare dataset (no preamble, no File Meta), as received
    /// over the network: never look for `DICM` in it, since a dataset's own
    /// bytes can hold one at offset 128. Requires `src`.
    pub src_raw: bool,
    /// (0002,0012) written into the new File Meta.
    pub implementation_class_uid: String,
    /// (0002,0013); empty leaves it out.
    pub implementation_version_name: String,
}

impl Options {
    pub fn new(dst: Syntax) -> Options {
        Options {
            dst,
            src: None,
            file_meta: true,
            src_raw: false,
            implementation_class_uid: "1.2.826.0.1.3680043.10.1472.1".into(),
            implementation_version_name: "DICOM_GW_010".into(),
        }
    }
}

/// The parts of an input: optional preamble and File Meta, and the dataset.
struct Parsed<'a> {
    preamble: Option<&'a [u8]>,
    meta: Option<BTreeMap<u32, (Vr, &'a [u8])>>,
    dataset_offset: usize,
}

fn u16_at(data: &[u8], pos: usize, big: bool) -> Option<u16> {
    let b: [u8; 2] = data.get(pos..pos.checked_add(2)?)?.try_into().ok()?;
    Some(if big {
        u16::from_be_bytes(b)
    } else {
        u16::from_le_bytes(b)
    })
}

fn u32_at(data: &[u8], pos: usize, big: bool) -> Option<u32> {
    let b: [u8; 4] = data.get(pos..pos.checked_add(4)?)?.try_into().ok()?;
    Some(if big {
        u32::from_be_bytes(b)
    } else {
        u32::from_le_bytes(b)
    })
}

fn tag_at(data: &[u8], pos: usize, big: bool) -> Option<u32> {
    let g = u16_at(data, pos, big)?;
    let e = u16_at(data, pos.checked_add(2)?, big)?;
    Some(((g as u32) << 16) | e as u32)
}

fn truncated(data: &[u8], offset: usize, tag: Option<u32>, needed: u64) -> Error {
    Error::Truncated {
        offset,
        tag: tag.map(Tag),
        needed,
        available: data.len().saturating_sub(offset) as u64,
    }
}

fn malformed(offset: usize, tag: Option<u32>, reason: impl Into<String>) -> Error {
    Error::Malformed {
        offset,
        tag: tag.map(Tag),
        reason: reason.into(),
    }
}

/// Find the preamble and File Meta, if any.
///
/// Without the `DICM` magic, File Meta at offset 0 is recognised only when
/// `bare_meta` is set (no source syntax given): a raw big-endian dataset can
/// start with bytes that look like a group 0002 element.
fn parse_meta(data: &[u8], bare_meta: bool) -> Result<Parsed<'_>> {
    let (preamble, start) = if data.len() >= 132 && &data[128..132] == b"DICM" {
        (Some(&data[..128]), 132)
    } else if data.len() >= 4 && &data[..4] == b"DICM" {
        (None, 4)
    } else if bare_meta
        && data.len() >= 6
        && u16_at(data, 0, false) == Some(0x0002)
        && Vr::from_bytes([data[4], data[5]]).is_some()
    {
        (None, 0) // File Meta without preamble
    } else {
        return Ok(Parsed {
            preamble: None,
            meta: None,
            dataset_offset: 0,
        });
    };
    let mut meta = BTreeMap::new();
    let mut pos = start;
    // File Meta is always explicit VR little endian (PS3.10 7.1).
    // (0002,0000) bounds the group when present: a big-endian dataset can
    // start with bytes that read as group 0002 in little endian.
    let mut meta_end: Option<usize> = None;
    while pos + 4 <= data.len()
        && u16_at(data, pos, false) == Some(0x0002)
        && !matches!(meta_end, Some(e) if pos >= e)
    {
        let tag = tag_at(data, pos, false).ok_or_else(|| truncated(data, pos, None, 4))?;
        let hdr = data
            .get(pos + 4..pos + 8)
            .ok_or_else(|| truncated(data, pos, Some(tag), 8))?;
        let vr = Vr::from_bytes([hdr[0], hdr[1]]).ok_or_else(|| {
            malformed(
                pos,
                Some(tag),
                format!(
                    "File Meta element has invalid VR bytes {:02X} {:02X}",
                    hdr[0], hdr[1]
                ),
            )
        })?;
        let (len, value_pos) = if vr.has_long_length() {
            let l =
                u32_at(data, pos + 8, false).ok_or_else(|| truncated(data, pos, Some(tag), 12))?;
            (l, pos + 12)
        } else {
            (u16_at(data, pos + 6, false).unwrap_or(0) as u32, pos + 8)
        };
        if len == UNDEFINED {
            return Err(malformed(pos, Some(tag), "undefined length in File Meta"));
        }
        let end = value_pos
            .checked_add(len as usize)
            .filter(|e| *e <= data.len())
            .ok_or_else(|| {
                truncated(data, pos, Some(tag), (value_pos - pos) as u64 + len as u64)
            })?;
        meta.insert(tag, (vr, &data[value_pos..end]));
        if tag == 0x0002_0000 && meta_end.is_none() {
            meta_end = u32_at(data, value_pos, false).and_then(|l| end.checked_add(l as usize));
        }
        pos = end;
    }
    Ok(Parsed {
        preamble,
        meta: Some(meta),
        dataset_offset: pos,
    })
}

fn trim_value(v: &[u8]) -> &[u8] {
    let end = v
        .iter()
        .rposition(|b| *b != 0 && *b != b' ')
        .map_or(0, |e| e + 1);
    &v[..end]
}

/// Transcode a whole encoded object (with or without File Meta) held in memory.
pub fn transcode(input: &[u8], opts: &Options) -> Result<Vec<u8>> {
    let parsed = if opts.src_raw && opts.src.is_some() {
        Parsed { preamble: None, meta: None, dataset_offset: 0 }
    } else {
        parse_meta(input, opts.src.is_none())?
    };
    let src = match (opts.src, &parsed.meta) {
        (Some(s), _) => s,
        (None, Some(meta)) => {
            let uid = meta
                .get(&0x0002_0010)
                .map(|(_, v)| trim_value(v))
                .ok_or_else(|| {
                    malformed(
                        parsed.dataset_offset,
                        Some(0x0002_0010),
                        "File Meta has no Transfer Syntax UID",
                    )
                })?;
            let uid = String::from_utf8_lossy(uid).into_owned();
            Syntax::parse(&uid).map_err(|_| Error::Unsupported {
                offset: None,
                tag: None,
                reason: format!(
                    "source transfer syntax {uid} is not one of Implicit VR LE, Explicit VR LE, \
                     Explicit VR BE (compressed and deflated syntaxes are not transcoded)"
                ),
            })?
        }
        (None, None) => return Err(Error::NoSourceSyntax),
    };
    let data = input;
    let mut w = Walker {
        data,
        dst: opts.dst,
        out: Vec::with_capacity(data.len() + 1024),
        sop_class: None,
        sop_instance: None,
    };
    // Usually the File Meta can be written first (no extra copy); only when
    // the input has no SOP Class/Instance in its File Meta are they taken from
    // the dataset, and the File Meta is put in front afterwards.
    let meta_first = opts.file_meta
        && parsed
            .meta
            .as_ref()
            .is_some_and(|m| m.contains_key(&0x0002_0002) && m.contains_key(&0x0002_0003));
    if meta_first {
        let meta = build_meta(&parsed, &w, opts);
        w.out
            .extend_from_slice(parsed.preamble.unwrap_or(&[0u8; 128]));
        w.out.extend_from_slice(b"DICM");
        w.out.extend_from_slice(&meta);
    }
    let top = Ctx::default();
    w.dataset(parsed.dataset_offset, End::Eof, src, top, 0)?;
    if !opts.file_meta || meta_first {
        return Ok(w.out);
    }
    let meta = build_meta(&parsed, &w, opts);
    let mut out = Vec::with_capacity(132 + meta.len() + w.out.len());
    out.extend_from_slice(parsed.preamble.unwrap_or(&[0u8; 128]));
    out.extend_from_slice(b"DICM");
    out.extend_from_slice(&meta);
    out.extend_from_slice(&w.out);
    Ok(out)
}

fn pad_value(v: &[u8], pad: u8) -> Vec<u8> {
    let mut v = v.to_vec();
    if v.len() % 2 == 1 {
        v.push(pad);
    }
    v
}

/// The new File Meta group, explicit VR LE, (0002,0000) first.
fn build_meta(parsed: &Parsed<'_>, w: &Walker<'_>, opts: &Options) -> Vec<u8> {
    let mut els: BTreeMap<u32, (Vr, Vec<u8>)> = BTreeMap::new();
    if let Some(meta) = &parsed.meta {
        for (tag, (vr, v)) in meta {
            if *tag != 0x0002_0000 {
                els.insert(*tag, (*vr, v.to_vec()));
            }
        }
    }
    els.entry(0x0002_0001).or_insert((Vr::Ob, vec![0, 1]));
    if let Some(v) = &w.sop_class {
        els.entry(0x0002_0002).or_insert((Vr::Ui, pad_value(v, 0)));
    }
    if let Some(v) = &w.sop_instance {
        els.entry(0x0002_0003).or_insert((Vr::Ui, pad_value(v, 0)));
    }
    els.insert(
        0x0002_0010,
        (Vr::Ui, pad_value(opts.dst.uid().as_bytes(), 0)),
    );
    els.insert(
        0x0002_0012,
        (
            Vr::Ui,
            pad_value(opts.implementation_class_uid.as_bytes(), 0),
        ),
    );
    if opts.implementation_version_name.is_empty() {
        els.remove(&0x0002_0013);
    } else {
        els.insert(
            0x0002_0013,
            (
                Vr::Sh,
                pad_value(opts.implementation_version_name.as_bytes(), b' '),
            ),
        );
    }
    let mut body = Vec::new();
    for (tag, (vr, v)) in &els {
        body.extend_from_slice(&((tag >> 16) as u16).to_le_bytes());
        body.extend_from_slice(&(*tag as u16).to_le_bytes());
        body.extend_from_slice(&vr.to_bytes());
        if vr.has_long_length() {
            body.extend_from_slice(&[0, 0]);
            body.extend_from_slice(&(v.len() as u32).to_le_bytes());
        } else {
            body.extend_from_slice(&(v.len().min(0xFFFF) as u16).to_le_bytes());
        }
        body.extend_from_slice(v);
    }
    let mut out = Vec::with_capacity(body.len() + 12);
    out.extend_from_slice(&[0x02, 0x00, 0x00, 0x00, b'U', b'L', 4, 0]);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// Read `path`, transcode, write `dst` through a temporary file in the same
/// directory that is renamed into place only on success.
pub fn transcode_file(src: &Path, dst: &Path, opts: &Options) -> Result<()> {
    let input = std::fs::read(src).map_err(|e| Error::Io {
        path: src.into(),
        op: "read",
        source: e,
    })?;
    let out = transcode(&input, opts)?;
    write_atomic(dst, &out)
}

/// Write `bytes` to `path` atomically (temp file, fsync, rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let tmp = dir.join(format!(".{name}.{}.{nanos}.tmp", std::process::id()));
    fn io(op: &'static str, p: &Path) -> impl FnOnce(std::io::Error) -> Error {
        let path = p.to_path_buf();
        move |e| Error::Io {
            path,
            op,
            source: e,
        }
    }
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(io("create", &tmp))?;
        f.write_all(bytes).map_err(io("write", &tmp))?;
        f.sync_all().map_err(io("sync", &tmp))?;
        drop(f);
        std::fs::rename(&tmp, path).map_err(io("rename into", path))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Where a dataset ends.
#[derive(Clone, Copy)]
enum End {
    /// Top level: the end of the input.
    Eof,
    /// An item of defined length ending at this offset.
    At(usize),
    /// An item of undefined length, ended by an Item Delimitation Item.
    Delimited,
}

/// Per dataset (or item) state the dictionary and the swapper need.
#[derive(Clone, Default)]
struct Ctx {
    /// (group, block, creator) from (gggg,00xx) of this dataset/item.
    creators: Vec<(u16, u8, String)>,
    /// (0028,0100), inherited into items that do not set it.
    bits_allocated: Option<u16>,
    /// (0028,0103), inherited likewise.
    pixel_representation: Option<u16>,
    /// (50xx,0103) Data Value Representation per curve group.
    curve_dvr: Vec<(u16, u16)>,
}

impl Ctx {
    fn child(&self) -> Ctx {
        Ctx {
            creators: Vec::new(),
            bits_allocated: self.bits_allocated,
            pixel_representation: self.pixel_representation,
            curve_dvr: Vec::new(),
        }
    }

    /// The VR for implicit VR input (None: unknown, i.e. UN).
    fn lookup(&self, tag: u32) -> Option<Vr> {
        let group = (tag >> 16) as u16;
        let element = tag as u16;
        if element == 0 {
            return Some(Vr::Ul); // group length
        }
        if group % 2 == 1 {
            return match element {
                0x0001..=0x000F => None,
                0x0010..=0x00FF => Some(Vr::Lo), // private creator
                _ => {
                    let block = (element >> 8) as u8;
                    let creator = self
                        .creators
                        .iter()
                        .find(|c| c.0 == group && c.1 == block)?;
                    private_vr(&creator.2, group, element)
                }
            };
        }
        standard_vr(tag)
    }

    /// Resolve "US or SS", "OB or OW", ... from this dataset's context.
    fn resolve(&self, tag: u32, vr: Vr, len: u32) -> Vr {
        match vr {
            Vr::UsOrSs => {
                if self.pixel_representation == Some(1) {
                    Vr::Ss
                } else {
                    Vr::Us
                }
            }
            Vr::ObOrOw => {
                if tag == PIXEL_DATA {
                    // PS3.5 A.1: implicit VR pixel data is OW, but 8-bit data
                    // written explicit is OB (what the corpus and pydicom do).
                    match self.bits_allocated {
                        Some(b) if b <= 8 => Vr::Ob,
                        _ => Vr::Ow,
                    }
                } else if is_curve_data(tag) {
                    Vr::Ob // curve data holds typed values, swapped by (50xx,0103)
                } else {
                    Vr::Ow // overlay data (60xx,3000), audio, palettes
                }
            }
            Vr::UsOrSsOrOw | Vr::UsOrOw => {
                if len > 0xFFFF {
                    Vr::Ow
                } else {
                    Vr::Us
                }
            }
            v => v,
        }
    }

    /// Width of the numbers to swap in a value whose real VR is `vr`.
    fn swap_width(&self, tag: u32, vr: Vr) -> usize {
        if tag == PIXEL_DATA && vr == Vr::Ow {
            // PS3.5 Table 6.2-1 (OW: a stream of 16-bit words) and 8.2 (native
            // pixel data is OW for Bits Allocated > 8): the byte order of OW is
            // that of 16-bit words whatever Bits Allocated is, so 32- and 64-bit
            // pixels (RT Dose, parametric maps) swap in 16-bit words, as DCMTK
            // and dcm4che do; swapping whole pixels corrupts them for every
            // standard toolkit (issue 15 item 5).
            return 2;
        }
        if is_curve_data(tag) {
            let group = (tag >> 16) as u16;
            if let Some(&(_, dvr)) = self.curve_dvr.iter().find(|c| c.0 == group) {
                // PS3.3-2004 C.10.2.1.2: 0000H US, 0001H SS, 0002H FL, 0003H FD, 0004H SL
                return match dvr {
                    0 | 1 => 2,
                    2 | 4 => 4,
                    3 => 8,
                    _ => vr.swap_width(),
                };
            }
        }
        vr.swap_width()
    }
}

/// The padding byte of a value of this VR (PS3.5 6.2): UI and binary values
/// take NUL, character strings a space.
fn pad_byte(vr: Vr) -> u8 {
    match vr {
        Vr::Ae
        | Vr::As
        | Vr::Cs
        | Vr::Da
        | Vr::Ds
        | Vr::Dt
        | Vr::Is
        | Vr::Lo
        | Vr::Lt
        | Vr::Pn
        | Vr::Sh
        | Vr::St
        | Vr::Tm
        | Vr::Uc
        | Vr::Ur
        | Vr::Ut => b' ',
        _ => 0,
    }
}

/// (50xx,3000) Curve Data, even group 5000..501E (retired repeating group).
fn is_curve_data(tag: u32) -> bool {
    tag & 0xFF01_FFFF == 0x5000_3000
}

struct Walker<'a> {
    data: &'a [u8],
    dst: Syntax,
    out: Vec<u8>,
    sop_class: Option<Vec<u8>>,
    sop_instance: Option<Vec<u8>>,
}

impl<'a> Walker<'a> {
    fn put_u16(&mut self, v: u16) {
        if self.dst.is_big() {
            self.out.extend_from_slice(&v.to_be_bytes())
        } else {
            self.out.extend_from_slice(&v.to_le_bytes())
        }
    }

    fn put_u32(&mut self, v: u32) {
        if self.dst.is_big() {
            self.out.extend_from_slice(&v.to_be_bytes())
        } else {
            self.out.extend_from_slice(&v.to_le_bytes())
        }
    }

    fn put_tag(&mut self, tag: u32) {
        self.put_u16((tag >> 16) as u16);
        self.put_u16(tag as u16);
    }

    fn patch_u32(&mut self, at: usize, v: u32) {
        let b = if self.dst.is_big() {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        };
        self.out[at..at + 4].copy_from_slice(&b);
    }

    /// Element header; returns the offset of the length field when it is 32
    /// bits (for back-patching).
    fn put_header(&mut self, tag: u32, vr: Vr, len: u32) -> usize {
        self.put_tag(tag);
        if self.dst.is_explicit() {
            self.out.extend_from_slice(&vr.to_bytes());
            if vr.has_long_length() {
                self.out.extend_from_slice(&[0, 0]);
            } else {
                self.put_u16(len as u16);
                return usize::MAX;
            }
        }
        let at = self.out.len();
        self.put_u32(len);
        at
    }

    /// Patch a defined length: bytes written since `content_start`.
    fn patch_len(
        &mut self,
        len_at: usize,
        content_start: usize,
        offset: usize,
        tag: u32,
    ) -> Result<()> {
        let len = self.out.len() - content_start;
        let len = u32::try_from(len)
            .ok()
            .filter(|l| *l != UNDEFINED)
            .ok_or_else(|| {
                malformed(
                    offset,
                    Some(tag),
                    "converted value does not fit a 32-bit length",
                )
            })?;
        self.patch_u32(len_at, len);
        Ok(())
    }

    /// Walk one dataset (top level or item) starting at `pos`; returns the
    /// offset after it (after the Item Delimitation Item for `End::Delimited`).
    fn dataset(
        &mut self,
        mut pos: usize,
        end: End,
        src: Syntax,
        mut ctx: Ctx,
        depth: usize,
    ) -> Result<usize> {
        let data = self.data;
        let big = src.is_big();
        let limit = match end {
            End::At(e) => e,
            _ => data.len(),
        };
        // Pending group length: (group, offset of its value in out, start of group content).
        let mut group_len: Option<(u16, usize, usize)> = None;
        loop {
            if pos == limit {
                match end {
                    End::Delimited => {
                        return Err(malformed(
                            pos,
                            None,
                            "input ends inside an item of undefined length (no Item Delimitation Item)",
                        ));
                    }
                    _ => break,
                }
            }
            if pos > limit {
                return Err(malformed(
                    pos,
                    None,
                    format!("element overruns its item, which ends at offset {limit}"),
                ));
            }
            let tag = tag_at(data, pos, big).ok_or_else(|| truncated(data, pos, None, 4))?;
            if let Some((g, at, start)) = group_len {
                if (tag >> 16) as u16 != g || tag == ITEM_DELIM {
                    let v = (self.out.len() - start) as u32;
                    self.patch_u32(at, v);
                    group_len = None;
                }
            }
            if tag == ITEM_DELIM {
                if let End::Delimited = end {
                    if pos + 8 > data.len() {
                        return Err(truncated(data, pos, Some(tag), 8));
                    }
                    return Ok(pos + 8);
                }
                return Err(malformed(
                    pos,
                    Some(tag),
                    "Item Delimitation Item outside an item of undefined length",
                ));
            }
            if tag >> 16 == 0xFFFE {
                return Err(malformed(
                    pos,
                    Some(tag),
                    "item or delimiter tag where a data element was expected",
                ));
            }
            // Element header.
            let (in_vr, len, value_pos) = if src.is_explicit() {
                let hdr = data
                    .get(pos..pos + 8)
                    .ok_or_else(|| truncated(data, pos, Some(tag), 8))?;
                let vr = Vr::from_bytes([hdr[4], hdr[5]]).ok_or_else(|| {
                    malformed(
                        pos,
                        Some(tag),
                        format!(
                            "invalid VR bytes {:02X} {:02X} in explicit VR",
                            hdr[4], hdr[5]
                        ),
                    )
                })?;
                if vr.has_long_length() {
                    let l = u32_at(data, pos + 8, big)
                        .ok_or_else(|| truncated(data, pos, Some(tag), 12))?;
                    (Some(vr), l, pos + 12)
                } else {
                    (
                        Some(vr),
                        u16_at(data, pos + 6, big).unwrap_or(0) as u32,
                        pos + 8,
                    )
                }
            } else {
                let l =
                    u32_at(data, pos + 4, big).ok_or_else(|| truncated(data, pos, Some(tag), 8))?;
                (None, l, pos + 8)
            };
            let group = (tag >> 16) as u16;
            let element = tag as u16;

            // File Meta elements inside the dataset are not part of it
            // (PS3.10 7.1); they are dropped, the File Meta is rebuilt.
            let stray_meta = depth == 0 && group == 0x0002;
            if len == UNDEFINED {
                if stray_meta {
                    return Err(malformed(
                        pos,
                        Some(tag),
                        "File Meta element of undefined length inside the dataset",
                    ));
                }
                let explicit_vr = in_vr;
                let is_encapsulated =
                    // UN pixel data of undefined length: fragments too, not a sequence.
                    tag == PIXEL_DATA && matches!(explicit_vr, None | Some(Vr::Ob) | Some(Vr::Ow) | Some(Vr::Un));
                pos = if is_encapsulated {
                    self.encapsulated(pos, value_pos, src)?
                } else {
                    let inner = match explicit_vr {
                        None | Some(Vr::Sq) => src,
                        // PS3.5 6.2.2: UN of undefined length is an implicit VR LE sequence.
                        Some(Vr::Un) => Syntax::ImplicitLittle,
                        Some(v) => {
                            return Err(malformed(
                                pos,
                                Some(tag),
                                format!("undefined length is not allowed for VR {}", v.name()),
                            ))
                        }
                    };
                    self.sequence(tag, pos, value_pos, None, inner, &ctx, depth)?
                };
                continue;
            }

            let value_end = value_pos
                .checked_add(len as usize)
                .filter(|e| *e <= data.len())
                .ok_or_else(|| {
                    truncated(data, pos, Some(tag), (value_pos - pos) as u64 + len as u64)
                })?;
            if value_end > limit {
                return Err(malformed(
                    pos,
                    Some(tag),
                    format!(
                        "element of {len} bytes overruns its item, which ends at offset {limit}"
                    ),
                ));
            }
            let value = &data[value_pos..value_end];
            if stray_meta {
                pos = value_end;
                continue;
            }

            // Real VR: explicit from the stream, implicit from the dictionary.
            let real = match in_vr {
                Some(v) => v,
                None => ctx.lookup(tag).map_or(Vr::Un, |v| ctx.resolve(tag, v, len)),
            };

            if element == 0x0000 {
                // Group length: recomputed once the group ends (never left wrong).
                if let Some((_, at, start)) = group_len.take() {
                    let v = (self.out.len() - start) as u32;
                    self.patch_u32(at, v); // a second one in the same group
                }
                self.put_header(tag, Vr::Ul, 4);
                let at = self.out.len();
                self.put_u32(0);
                group_len = Some((group, at, self.out.len()));
                pos = value_end;
                continue;
            }

            if real == Vr::Sq {
                let mark = self.out.len();
                match self.sequence(tag, pos, value_pos, Some(value_end), src, &ctx, depth) {
                    Ok(p) => {
                        pos = p;
                        continue;
                    }
                    // Implicit VR: the dictionary says SQ but the bytes are no
                    // sequence. Keep them as UN rather than refuse the object.
                    Err(_) if in_vr.is_none() => self.out.truncate(mark),
                    Err(e) => return Err(e),
                }
                let out_vr = if self.dst.is_explicit() {
                    Vr::Un
                } else {
                    Vr::Sq
                };
                self.put_header(tag, out_vr, len);
                self.out.extend_from_slice(value);
                pos = value_end;
                continue;
            }

            // State later elements depend on.
            let le_value = |v: &[u8]| -> Option<u16> {
                let b: [u8; 2] = v.get(..2)?.try_into().ok()?;
                let in_big = big && real != Vr::Un;
                Some(if in_big {
                    u16::from_be_bytes(b)
                } else {
                    u16::from_le_bytes(b)
                })
            };
            if group % 2 == 1 && (0x0010..=0x00FF).contains(&element) {
                let creator = String::from_utf8_lossy(trim_creator(value)).into_owned();
                let block = element as u8;
                ctx.creators.retain(|c| !(c.0 == group && c.1 == block));
                ctx.creators.push((group, block, creator));
            } else if tag == 0x0028_0100 {
                ctx.bits_allocated = le_value(value);
            } else if tag == 0x0028_0103 {
                ctx.pixel_representation = le_value(value);
            } else if tag & 0xFF01_FFFF == 0x5000_0103 {
                if let Some(v) = le_value(value) {
                    ctx.curve_dvr.retain(|c| c.0 != group);
                    ctx.curve_dvr.push((group, v));
                }
            } else if depth == 0 && tag == 0x0008_0016 {
                self.sop_class = Some(trim_value(value).to_vec());
            } else if depth == 0 && tag == 0x0008_0018 {
                self.sop_instance = Some(trim_value(value).to_vec());
            }

            // Output VR: a value too long for a 16-bit length becomes UN (DAT-2).
            let mut out_vr = real;
            if self.dst.is_explicit() && !real.has_long_length() && len > 0xFFFF {
                out_vr = Vr::Un;
            }
            // UN values are little endian in every syntax (PS3.5 6.2.2).
            let in_le = !(big && real != Vr::Un);
            let out_le = !(self.dst.is_big() && out_vr != Vr::Un);
            let width = if in_le != out_le {
                ctx.swap_width(tag, real)
            } else {
                0
            };
            // PS3.5 7.1.1: value lengths are even. A broken sender's odd-length
            // value is padded on output (space for text, NUL otherwise, 6.2).
            let odd = len % 2 == 1 && len != u32::MAX;
            self.put_header(tag, out_vr, if odd { len + 1 } else { len });
            extend_swapped(&mut self.out, value, width);
            if odd {
                self.out.push(pad_byte(out_vr));
            }
            pos = value_end;
        }
        if let Some((_, at, start)) = group_len {
            let v = (self.out.len() - start) as u32;
            self.patch_u32(at, v);
        }
        Ok(pos)
    }

    /// A sequence starting at `pos` (its header), value at `value_pos`,
    /// `value_end` for a defined length. Items are in `inner` syntax.
    #[allow(clippy::too_many_arguments)]
    fn sequence(
        &mut self,
        tag: u32,
        pos: usize,
        value_pos: usize,
        value_end: Option<usize>,
        inner: Syntax,
        ctx: &Ctx,
        depth: usize,
    ) -> Result<usize> {
        if depth >= MAX_DEPTH {
            return Err(malformed(
                pos,
                Some(tag),
                format!("sequences nested deeper than {MAX_DEPTH}"),
            ));
        }
        let data = self.data;
        let big = inner.is_big();
        let len_at = self.put_header(tag, Vr::Sq, if value_end.is_some() { 0 } else { UNDEFINED });
        let content_start = self.out.len();
        let limit = value_end.unwrap_or(data.len());
        let mut p = value_pos;
        loop {
            if Some(p) == value_end {
                break;
            }
            let itag = tag_at(data, p, big).ok_or_else(|| truncated(data, p, Some(tag), 8))?;
            let ilen = u32_at(data, p + 4, big).ok_or_else(|| truncated(data, p, Some(tag), 8))?;
            if itag == SEQ_DELIM {
                if value_end.is_none() {
                    p += 8;
                    break;
                }
                return Err(malformed(
                    p,
                    Some(tag),
                    "Sequence Delimitation Item in a sequence of defined length",
                ));
            }
            if itag != ITEM {
                return Err(malformed(
                    p,
                    Some(tag),
                    format!(
                        "expected an Item (FFFE,E000) in the sequence, found {}",
                        Tag(itag)
                    ),
                ));
            }
            self.put_tag(ITEM);
            let item_len_at = self.out.len();
            let item_start = item_len_at + 4;
            if ilen == UNDEFINED {
                self.put_u32(UNDEFINED);
                p = self.dataset(p + 8, End::Delimited, inner, ctx.child(), depth + 1)?;
                self.put_tag(ITEM_DELIM);
                self.put_u32(0);
            } else {
                self.put_u32(0);
                let iend = (p + 8)
                    .checked_add(ilen as usize)
                    .filter(|e| *e <= data.len())
                    .ok_or_else(|| truncated(data, p, Some(tag), 8 + ilen as u64))?;
                if iend > limit {
                    return Err(malformed(
                        p,
                        Some(tag),
                        format!("item of {ilen} bytes overruns its sequence"),
                    ));
                }
                p = self.dataset(p + 8, End::At(iend), inner, ctx.child(), depth + 1)?;
                self.patch_len(item_len_at, item_start, p, tag)?;
            }
            if p > limit {
                return Err(malformed(p, Some(tag), "item overruns its sequence"));
            }
        }
        if value_end.is_some() {
            self.patch_len(len_at, content_start, pos, tag)?;
        } else {
            self.put_tag(SEQ_DELIM);
            self.put_u32(0);
        }
        Ok(p)
    }

    /// Encapsulated pixel data: fragments copied unchanged (little endian only).
    fn encapsulated(&mut self, pos: usize, value_pos: usize, src: Syntax) -> Result<usize> {
        if src.is_big() || self.dst.is_big() {
            return Err(Error::Unsupported {
                offset: Some(pos),
                tag: Some(Tag(PIXEL_DATA)),
                reason: "encapsulated (compressed) pixel data cannot be converted to or from \
                         Explicit VR Big Endian; decompress it first"
                    .into(),
            });
        }
        let data = self.data;
        self.put_header(PIXEL_DATA, Vr::Ob, UNDEFINED);
        let mut p = value_pos;
        loop {
            let itag =
                tag_at(data, p, false).ok_or_else(|| truncated(data, p, Some(PIXEL_DATA), 8))?;
            let ilen = u32_at(data, p + 4, false)
                .ok_or_else(|| truncated(data, p, Some(PIXEL_DATA), 8))?;
            if itag == SEQ_DELIM {
                self.out.extend_from_slice(&data[p..p + 8]);
                return Ok(p + 8);
            }
            if itag != ITEM || ilen == UNDEFINED {
                return Err(malformed(
                    p,
                    Some(PIXEL_DATA),
                    format!(
                        "expected a pixel data fragment item, found {} with length {ilen:#X}",
                        Tag(itag)
                    ),
                ));
            }
            let end = (p + 8)
                .checked_add(ilen as usize)
                .filter(|e| *e <= data.len())
                .ok_or_else(|| truncated(data, p, Some(PIXEL_DATA), 8 + ilen as u64))?;
            self.out.extend_from_slice(&data[p..end]);
            p = end;
        }
    }
}
