//! One-pass header scan for the C-STORE hot path (STO-7): the raw values of a
//! few top-level elements, whether Pixel Data is present, and the SHA-256 of
//! every byte, reading the dataset once.
//!
//! * Input: a slice, or a file read through a bounded buffer (never whole:
//!   spooled payloads can be gigabytes). Values that are not wanted are
//!   skipped; skipped bytes still go through the hash.
//! * Elements are walked like the transcoder walks them ([`crate::transcode`]):
//!   defined lengths are skipped, undefined lengths are item sequences ended by
//!   a Sequence Delimitation Item (SQ, UN, which is implicit VR LE inside
//!   (PS3.5 6.2.2), encapsulated pixel data in an item), items of undefined
//!   length are walked to their Item Delimitation Item. Private elements are
//!   skipped like any other unrequested element.
//! * Values are taken only up to the last requested group. After that only
//!   headers are read, until top-level (7FE0,0010) or the end of the data; a
//!   structural error there does not fail the scan (the values are complete)
//!   but is reported in [`Scan::tail_error`], and `has_pixel_data` is then
//!   false.
//! * Never panics, never allocates more than [`ScanOptions::max_value`] per
//!   requested value: every length is checked against the known input size
//!   before anything is read, and every failure is a typed [`Error`].

use std::fs::File;
use std::io::Read;
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::dict::standard_vr;
use crate::error::{Error, Result, Tag};
use crate::syntax::Syntax;
use crate::transcode::MAX_DEPTH;
use crate::vr::Vr;

const ITEM: u32 = 0xFFFE_E000;
const ITEM_DELIM: u32 = 0xFFFE_E00D;
const SEQ_DELIM: u32 = 0xFFFE_E0DD;
const PIXEL_DATA: u32 = 0x7FE0_0010;
const CHARSET: u32 = 0x0008_0005;
const UNDEFINED: u32 = 0xFFFF_FFFF;
/// Buffer of the file reader (and the chunk size of skips through it).
const BUF_SIZE: usize = 256 * 1024;

/// What to collect.
#[derive(Clone, Debug)]
pub struct ScanOptions {
    /// Top-level tags whose values are wanted (any order; (0008,0005) is
    /// always collected as well).
    pub tags: Vec<u32>,
    /// Requested values longer than this are not read; their tags are listed
    /// in [`Scan::oversized`] instead (bounded memory on hostile input).
    pub max_value: usize,
}

impl ScanOptions {
    pub fn new(tags: &[u32]) -> ScanOptions {
        ScanOptions {
            tags: tags.to_vec(),
            max_value: 1 << 20,
        }
    }
}

/// One requested top-level element as found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Value {
    pub tag: u32,
    /// The VR written in explicit VR; `None` in implicit VR (see [`Value::vr`]).
    pub explicit_vr: Option<Vr>,
    /// The value bytes exactly as encoded (byte order of the syntax, padding kept).
    pub bytes: Vec<u8>,
}

impl Value {
    /// The explicit VR, or in implicit VR the dictionary's (UN when unknown).
    pub fn vr(&self) -> Vr {
        self.explicit_vr
            .or_else(|| standard_vr(self.tag))
            .unwrap_or(Vr::Un)
    }
}

/// What a scan found.
#[derive(Debug)]
pub struct Scan {
    /// The requested elements present at top level, in the order found (a
    /// tag repeated in the data is kept once, with its last value).
    pub values: Vec<Value>,
    /// Requested elements present but longer than `max_value` (not read).
    pub oversized: Vec<u32>,
    /// Top-level (7FE0,0010) present.
    pub has_pixel_data: bool,
    /// A malformed or truncated element after the last requested group,
    /// before Pixel Data was found.
    pub tail_error: Option<Error>,
    /// SHA-256 of all the input bytes.
    pub sha256: [u8; 32],
    /// Number of input bytes.
    pub length: u64,
}

impl Scan {
    pub fn get(&self, tag: u32) -> Option<&Value> {
        self.values.iter().find(|v| v.tag == tag)
    }

    /// (0008,0005) Specific Character Set, raw.
    pub fn specific_character_set(&self) -> Option<&[u8]> {
        self.get(CHARSET).map(|v| &v.bytes[..])
    }

    pub fn sha256_hex(&self) -> String {
        let mut s = String::with_capacity(64);
        for b in self.sha256 {
            s.push(char::from_digit((b >> 4) as u32, 16).unwrap_or('0'));
            s.push(char::from_digit((b & 15) as u32, 16).unwrap_or('0'));
        }
        s
    }
}

/// Scan a dataset (no File Meta) held in memory.
pub fn scan(data: &[u8], syntax: Syntax, opts: &ScanOptions) -> Result<Scan> {
    let mut input = SliceInput { data, pos: 0 };
    let found = Scanner::new(&mut input, syntax, opts).run()?;
    let sha256 = Sha256::digest(data).into();
    Ok(found.finish(sha256, data.len() as u64))
}

/// Scan a dataset (no File Meta) in a file, reading it once through a bounded
/// buffer.
pub fn scan_file(path: &Path, syntax: Syntax, opts: &ScanOptions) -> Result<Scan> {
    let io = |op: &'static str| {
        let path = path.to_path_buf();
        move |e| Error::Io {
            path,
            op,
            source: e,
        }
    };
    let file = File::open(path).map_err(io("open"))?;
    let total = file.metadata().map_err(io("stat"))?.len();
    let mut input = StreamInput::new(file, total, path);
    let found = Scanner::new(&mut input, syntax, opts).run()?;
    input.drain()?;
    let sha256 = input.hasher.finalize().into();
    Ok(found.finish(sha256, total))
}

/// Scan a dataset from any reader that yields exactly `total` bytes (`what`
/// names it in errors).
pub fn scan_reader<R: Read>(
    reader: R,
    total: u64,
    what: &Path,
    syntax: Syntax,
    opts: &ScanOptions,
) -> Result<Scan> {
    let mut input = StreamInput::new(reader, total, what);
    let found = Scanner::new(&mut input, syntax, opts).run()?;
    input.drain()?;
    let sha256 = input.hasher.finalize().into();
    Ok(found.finish(sha256, total))
}

// ---- inputs --------------------------------------------------------------------------------

/// Where the scanner reads from. Lengths are checked against `total()` by the
/// scanner before `take`/`skip`, so an input only fails on I/O.
trait Input {
    fn total(&self) -> u64;
    fn pos(&self) -> u64;
    /// The next `n` (at most 12) bytes without consuming them; the caller has
    /// checked that they exist.
    fn peek(&mut self, n: usize) -> Result<&[u8]>;
    fn skip(&mut self, n: u64) -> Result<()>;
    fn take(&mut self, n: usize) -> Result<Vec<u8>>;
}

struct SliceInput<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Input for SliceInput<'_> {
    fn total(&self) -> u64 {
        self.data.len() as u64
    }
    fn pos(&self) -> u64 {
        self.pos as u64
    }
    fn peek(&mut self, n: usize) -> Result<&[u8]> {
        let end = self.pos.saturating_add(n);
        self.data
            .get(self.pos..end)
            .ok_or_else(|| truncated(self.pos as u64, self.data.len() as u64, None, n as u64))
    }
    fn skip(&mut self, n: u64) -> Result<()> {
        self.pos = usize::try_from(n)
            .ok()
            .and_then(|n| self.pos.checked_add(n))
            .filter(|p| *p <= self.data.len())
            .ok_or_else(|| truncated(self.pos as u64, self.data.len() as u64, None, n))?;
        Ok(())
    }
    fn take(&mut self, n: usize) -> Result<Vec<u8>> {
        let v = self.peek(n)?.to_vec();
        self.pos += n;
        Ok(v)
    }
}

/// A reader behind a fixed buffer. Every byte read from the reader goes
/// through the hash, in order, so the hash covers the whole input once
/// [`StreamInput::drain`] has read the rest.
struct StreamInput<'p, R> {
    reader: R,
    path: &'p Path,
    total: u64,
    /// Bytes read from the reader so far.
    read: u64,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    hasher: Sha256,
}

impl<'p, R: Read> StreamInput<'p, R> {
    fn new(reader: R, total: u64, path: &'p Path) -> Self {
        let size = usize::try_from(total).map_or(BUF_SIZE, |t| t.clamp(64, BUF_SIZE));
        StreamInput {
            reader,
            path,
            total,
            read: 0,
            buf: vec![0u8; size].into_boxed_slice(),
            start: 0,
            end: 0,
            hasher: Sha256::new(),
        }
    }

    /// Read more into the buffer (after what is buffered); false at EOF.
    fn fill(&mut self) -> Result<bool> {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        } else if self.end == self.buf.len() {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        loop {
            match self.reader.read(&mut self.buf[self.end..]) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.hasher.update(&self.buf[self.end..self.end + n]);
                    self.end += n;
                    self.read += n as u64;
                    if self.read > self.total {
                        return Err(self.changed());
                    }
                    return Ok(true);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    return Err(Error::Io {
                        path: self.path.to_path_buf(),
                        op: "read",
                        source: e,
                    })
                }
            }
        }
    }

    fn changed(&self) -> Error {
        Error::Io {
            path: self.path.to_path_buf(),
            op: "read",
            source: std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!(
                    "the input changed while it was read (expected {} bytes, got {})",
                    self.total, self.read
                ),
            ),
        }
    }

    fn ensure(&mut self, n: usize) -> Result<()> {
        while self.end - self.start < n {
            if !self.fill()? {
                return Err(self.changed());
            }
        }
        Ok(())
    }

    /// Read (and hash) the rest of the input.
    fn drain(&mut self) -> Result<()> {
        self.start = 0;
        self.end = 0;
        while self.fill()? {
            self.start = 0;
            self.end = 0;
        }
        if self.read != self.total {
            return Err(self.changed());
        }
        Ok(())
    }
}

impl<R: Read> Input for StreamInput<'_, R> {
    fn total(&self) -> u64 {
        self.total
    }
    fn pos(&self) -> u64 {
        self.read - (self.end - self.start) as u64
    }
    fn peek(&mut self, n: usize) -> Result<&[u8]> {
        self.ensure(n)?;
        Ok(&self.buf[self.start..self.start + n])
    }
    fn skip(&mut self, mut n: u64) -> Result<()> {
        loop {
            let have = (self.end - self.start) as u64;
            if n <= have {
                self.start += n as usize;
                return Ok(());
            }
            n -= have;
            self.start = self.end;
            if !self.fill()? {
                return Err(self.changed());
            }
        }
    }
    fn take(&mut self, n: usize) -> Result<Vec<u8>> {
        let mut v = Vec::with_capacity(n);
        while v.len() < n {
            if self.start == self.end && !self.fill()? {
                return Err(self.changed());
            }
            let k = (n - v.len()).min(self.end - self.start);
            v.extend_from_slice(&self.buf[self.start..self.start + k]);
            self.start += k;
        }
        Ok(v)
    }
}

// ---- the walk ------------------------------------------------------------------------------

fn truncated(offset: u64, total: u64, tag: Option<u32>, needed: u64) -> Error {
    Error::Truncated {
        offset: offset as usize,
        tag: tag.map(Tag),
        needed,
        available: total.saturating_sub(offset),
    }
}

fn malformed(offset: u64, tag: Option<u32>, reason: impl Into<String>) -> Error {
    Error::Malformed {
        offset: offset as usize,
        tag: tag.map(Tag),
        reason: reason.into(),
    }
}

struct Found {
    values: Vec<Value>,
    oversized: Vec<u32>,
    has_pixel_data: bool,
    tail_error: Option<Error>,
}

impl Found {
    fn finish(self, sha256: [u8; 32], length: u64) -> Scan {
        Scan {
            values: self.values,
            oversized: self.oversized,
            has_pixel_data: self.has_pixel_data,
            tail_error: self.tail_error,
            sha256,
            length,
        }
    }
}

/// An element header.
struct Header {
    tag: u32,
    vr: Option<Vr>,
    len: u32,
    /// Offset of the header.
    at: u64,
}

struct Scanner<'i, I> {
    input: &'i mut I,
    syntax: Syntax,
    tags: Vec<u32>,
    last_group: u16,
    max_value: usize,
    found: Found,
}

fn u16_of(b: &[u8], big: bool) -> u16 {
    let b = [b[0], b[1]];
    if big {
        u16::from_be_bytes(b)
    } else {
        u16::from_le_bytes(b)
    }
}

fn u32_of(b: &[u8], big: bool) -> u32 {
    let b = [b[0], b[1], b[2], b[3]];
    if big {
        u32::from_be_bytes(b)
    } else {
        u32::from_le_bytes(b)
    }
}

fn tag_of(b: &[u8], big: bool) -> u32 {
    ((u16_of(b, big) as u32) << 16) | u16_of(&b[2..], big) as u32
}

impl<'i, I: Input> Scanner<'i, I> {
    fn new(input: &'i mut I, syntax: Syntax, opts: &ScanOptions) -> Self {
        let mut tags = opts.tags.clone();
        tags.push(CHARSET);
        tags.sort_unstable();
        tags.dedup();
        let last_group = tags.iter().map(|t| (t >> 16) as u16).max().unwrap_or(0);
        Scanner {
            input,
            syntax,
            tags,
            last_group,
            max_value: opts.max_value,
            found: Found {
                values: Vec::new(),
                oversized: Vec::new(),
                has_pixel_data: false,
                tail_error: None,
            },
        }
    }

    fn remaining(&self) -> u64 {
        self.input.total() - self.input.pos()
    }

    /// Check that `n` bytes remain, for the element at `at`.
    fn need(&self, at: u64, tag: Option<u32>, n: u64) -> Result<()> {
        if self.remaining() < n {
            let pos = self.input.pos();
            return Err(truncated(
                at,
                self.input.total(),
                tag,
                (pos - at).saturating_add(n),
            ));
        }
        Ok(())
    }

    /// The top-level walk; returns what was found. Only errors up to the last
    /// requested group are errors of the scan.
    fn run(mut self) -> Result<Found> {
        let mut in_tail = false;
        let result = self.top(&mut in_tail);
        match result {
            Ok(()) => {}
            Err(e @ Error::Io { .. }) => return Err(e),
            Err(e) if in_tail => self.found.tail_error = Some(e),
            Err(e) => return Err(e),
        }
        Ok(self.found)
    }

    fn top(&mut self, in_tail: &mut bool) -> Result<()> {
        let syntax = self.syntax;
        while self.remaining() > 0 {
            let at = self.input.pos();
            self.need(at, None, 4)?;
            let tag = tag_of(self.input.peek(4)?, syntax.is_big());
            if (tag >> 16) as u16 > self.last_group {
                *in_tail = true;
            }
            if tag >> 16 == 0xFFFE {
                return Err(malformed(
                    at,
                    Some(tag),
                    "item or delimiter tag where a data element was expected",
                ));
            }
            let h = self.header(syntax)?;
            if tag == PIXEL_DATA {
                // Only the header: the value (or fragments) is hashed, not walked.
                self.found.has_pixel_data = true;
                return Ok(());
            }
            if h.len == UNDEFINED {
                let inner = self.inner_syntax(&h, syntax)?;
                self.items(&h, inner, 1)?;
                continue;
            }
            let len = h.len as u64;
            self.need(h.at, Some(tag), len)?;
            if !*in_tail && self.tags.binary_search(&tag).is_ok() {
                if h.len as usize > self.max_value {
                    self.input.skip(len)?;
                    self.found.values.retain(|v| v.tag != tag);
                    if !self.found.oversized.contains(&tag) {
                        self.found.oversized.push(tag);
                    }
                } else {
                    let bytes = self.input.take(h.len as usize)?;
                    self.found.oversized.retain(|t| *t != tag);
                    let value = Value {
                        tag,
                        explicit_vr: h.vr,
                        bytes,
                    };
                    match self.found.values.iter_mut().find(|v| v.tag == tag) {
                        Some(v) => *v = value,
                        None => self.found.values.push(value),
                    }
                }
            } else {
                self.input.skip(len)?;
            }
        }
        Ok(())
    }

    /// Read an element header (tag already known to be there).
    fn header(&mut self, syntax: Syntax) -> Result<Header> {
        let at = self.input.pos();
        let big = syntax.is_big();
        if syntax.is_explicit() {
            self.need(at, None, 8)?;
            let b = self.input.peek(8)?;
            let tag = tag_of(b, big);
            let vr = Vr::from_bytes([b[4], b[5]]).ok_or_else(|| {
                malformed(
                    at,
                    Some(tag),
                    format!("invalid VR bytes {:02X} {:02X} in explicit VR", b[4], b[5]),
                )
            })?;
            if vr.has_long_length() {
                self.need(at, Some(tag), 12)?;
                let len = u32_of(&self.input.peek(12)?[8..], big);
                self.input.skip(12)?;
                Ok(Header {
                    tag,
                    vr: Some(vr),
                    len,
                    at,
                })
            } else {
                let len = u16_of(&b[6..], big) as u32;
                self.input.skip(8)?;
                Ok(Header {
                    tag,
                    vr: Some(vr),
                    len,
                    at,
                })
            }
        } else {
            self.need(at, None, 8)?;
            let b = self.input.peek(8)?;
            let tag = tag_of(b, big);
            let len = u32_of(&b[4..], big);
            self.input.skip(8)?;
            Ok(Header {
                tag,
                vr: None,
                len,
                at,
            })
        }
    }

    /// Syntax of the items of an element of undefined length (as the transcoder).
    fn inner_syntax(&self, h: &Header, syntax: Syntax) -> Result<Syntax> {
        match h.vr {
            None | Some(Vr::Sq) => Ok(syntax),
            // PS3.5 6.2.2: UN of undefined length is an implicit VR LE sequence.
            Some(Vr::Un) => Ok(Syntax::ImplicitLittle),
            // Encapsulated pixel data (in an item, e.g. an icon): fragments.
            Some(Vr::Ob) | Some(Vr::Ow) if h.tag == PIXEL_DATA => Ok(syntax),
            Some(v) => Err(malformed(
                h.at,
                Some(h.tag),
                format!("undefined length is not allowed for VR {}", v.name()),
            )),
        }
    }

    /// The items of a value of undefined length, up to and including its
    /// Sequence Delimitation Item.
    fn items(&mut self, seq: &Header, syntax: Syntax, depth: usize) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(malformed(
                seq.at,
                Some(seq.tag),
                format!("sequences nested deeper than {MAX_DEPTH}"),
            ));
        }
        let big = syntax.is_big();
        loop {
            let at = self.input.pos();
            self.need(at, Some(seq.tag), 8)?;
            let b = self.input.peek(8)?;
            let itag = tag_of(b, big);
            let ilen = u32_of(&b[4..], big);
            self.input.skip(8)?;
            match itag {
                SEQ_DELIM => return Ok(()),
                ITEM if ilen == UNDEFINED => self.item(seq, syntax, depth)?,
                ITEM => {
                    self.need(at, Some(seq.tag), ilen as u64)?;
                    self.input.skip(ilen as u64)?;
                }
                _ => {
                    return Err(malformed(
                        at,
                        Some(seq.tag),
                        format!(
                        "expected an Item (FFFE,E000) or a Sequence Delimitation Item, found {}",
                        Tag(itag)
                    ),
                    ))
                }
            }
        }
    }

    /// The elements of an item of undefined length, up to and including its
    /// Item Delimitation Item.
    fn item(&mut self, seq: &Header, syntax: Syntax, depth: usize) -> Result<()> {
        let big = syntax.is_big();
        loop {
            let at = self.input.pos();
            if self.remaining() == 0 {
                return Err(malformed(
                    at,
                    Some(seq.tag),
                    "input ends inside an item of undefined length (no Item Delimitation Item)",
                ));
            }
            self.need(at, Some(seq.tag), 4)?;
            let tag = tag_of(self.input.peek(4)?, big);
            if tag == ITEM_DELIM {
                self.need(at, Some(seq.tag), 8)?;
                self.input.skip(8)?;
                return Ok(());
            }
            if tag >> 16 == 0xFFFE {
                return Err(malformed(
                    at,
                    Some(tag),
                    "item or delimiter tag where a data element was expected",
                ));
            }
            let h = self.header(syntax)?;
            if h.len == UNDEFINED {
                let inner = self.inner_syntax(&h, syntax)?;
                self.items(&h, inner, depth + 1)?;
            } else {
                self.need(h.at, Some(h.tag), h.len as u64)?;
                self.input.skip(h.len as u64)?;
            }
        }
    }
}
