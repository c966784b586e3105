//! Typed errors. Every message names the offset and, where known, the tag.

use std::fmt;
use std::path::PathBuf;

/// A DICOM tag, printed as `(GGGG,EEEE)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tag(pub u32);

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "({:04X},{:04X})", self.0 >> 16, self.0 & 0xFFFF)
    }
}

#[derive(Debug)]
pub enum Error {
    /// The input ends before the element (or header) at `offset` is complete.
    Truncated {
        offset: usize,
        tag: Option<Tag>,
        needed: u64,
        available: u64,
    },
    /// The bytes at `offset` are not a valid encoding.
    Malformed {
        offset: usize,
        tag: Option<Tag>,
        reason: String,
    },
    /// Valid input this transcoder does not convert (e.g. encapsulated pixel
    /// data to big endian, a compressed or deflated source syntax).
    Unsupported {
        offset: Option<usize>,
        tag: Option<Tag>,
        reason: String,
    },
    /// A raw dataset (no File Meta) was given without its transfer syntax.
    NoSourceSyntax,
    /// An unknown transfer syntax name or UID.
    UnknownSyntax(String),
    /// Reading the input or writing the output file failed.
    Io {
        path: PathBuf,
        op: &'static str,
        source: std::io::Error,
    },
}

fn at(f: &mut fmt::Formatter<'_>, offset: usize, tag: &Option<Tag>) -> fmt::Result {
    match tag {
        Some(t) => write!(f, "at offset {offset} (0x{offset:X}) in element {t}"),
        None => write!(f, "at offset {offset} (0x{offset:X})"),
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Truncated {
                offset,
                tag,
                needed,
                available,
            } => {
                write!(f, "truncated input ")?;
                at(f, *offset, tag)?;
                write!(f, ": needs {needed} bytes, only {available} remain")
            }
            Error::Malformed {
                offset,
                tag,
                reason,
            } => {
                write!(f, "malformed dataset ")?;
                at(f, *offset, tag)?;
                write!(f, ": {reason}")
            }
            Error::Unsupported {
                offset,
                tag,
                reason,
            } => {
                write!(f, "cannot convert")?;
                if let Some(o) = offset {
                    write!(f, " ")?;
                    at(f, *o, tag)?;
                }
                write!(f, ": {reason}")
            }
            Error::NoSourceSyntax => write!(
                f,
                "the input has no File Meta (no DICM prefix), so its transfer syntax is unknown; \
                 pass the source syntax (implicit, explicit-le or explicit-be)"
            ),
            Error::UnknownSyntax(s) => write!(
                f,
                "unknown transfer syntax {s:?}; expected implicit, explicit-le, explicit-be or \
                 one of the UIDs 1.2.840.10008.1.2, 1.2.840.10008.1.2.1, 1.2.840.10008.1.2.2"
            ),
            Error::Io { path, op, source } => write!(f, "cannot {op} {}: {source}", path.display()),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
