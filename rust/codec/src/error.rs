//! Typed codec errors. Every error maps to the A-ABORT reason a peer should
//! hear (PS3.8 table 9-26), so the network layer never has to guess.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodecError {
    /// PDU type byte not one of the seven defined ones.
    UnknownPduType(u8),
    /// PDU length field beyond the configured limit.
    PduTooLarge { pdu_type: u8, length: u32, limit: u32 },
    /// A fixed-size PDU (RJ, release, abort) or a P-DATA-TF with an impossible length.
    BadPduLength { pdu_type: u8, length: u32 },
    /// The PDU ended inside a field.
    Truncated { what: &'static str, offset: usize },
    /// An item's length runs past its container or is impossible for its type.
    BadItemLength { item: u8, length: usize, offset: usize },
    /// An item type that may not appear where it does.
    UnknownItem { item: u8, offset: usize },
    /// A mandatory item is missing.
    MissingItem(&'static str),
    /// A field holds a value the standard does not allow.
    InvalidValue { what: &'static str, detail: String },
    /// A PDV item length that is < 2 or runs past the PDU.
    BadPdvLength { length: u32, remaining: u32 },
    /// Presentation context IDs are odd integers 1-255.
    BadContextId(u8),
    /// A PDV that cannot come now (dataset before command, command inside a dataset).
    UnexpectedFragment(&'static str),
    /// Dataset fragments on another presentation context than their command.
    ContextMismatch { command: u8, dataset: u8 },
    /// Command set larger than any real one (1 MiB).
    CommandTooLarge(usize),
    /// Dataset larger than the configured maximum message size.
    MessageTooLarge { limit: u64 },
    /// The command set could not be walked or lacks (0000,0800).
    BadCommand(String),
    /// Writing a spooled dataset failed.
    Io(String),
}

impl CodecError {
    /// The A-ABORT reason/diagnostic (source = service-provider) for this error.
    pub fn abort_reason(&self) -> u8 {
        use CodecError::*;
        match self {
            UnknownPduType(_) => 1,                             // unrecognized-PDU
            UnexpectedFragment(_) => 5,                         // unexpected-PDU-parameter
            UnknownItem { .. } => 4,                            // unrecognized-PDU-parameter
            Io(_) => 0,                                         // reason-not-specified
            PduTooLarge { .. }
            | BadPduLength { .. }
            | Truncated { .. }
            | BadItemLength { .. }
            | MissingItem(_)
            | InvalidValue { .. }
            | BadPdvLength { .. }
            | BadContextId(_)
            | ContextMismatch { .. }
            | CommandTooLarge(_)
            | MessageTooLarge { .. }
            | BadCommand(_) => 6, // invalid-PDU-parameter-value
        }
    }
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use CodecError::*;
        match self {
            UnknownPduType(t) => write!(f, "unknown PDU type 0x{t:02X}"),
            PduTooLarge { pdu_type, length, limit } => write!(
                f,
                "PDU type 0x{pdu_type:02X} of {length} bytes exceeds the limit of {limit} bytes"
            ),
            BadPduLength { pdu_type, length } => {
                write!(f, "PDU type 0x{pdu_type:02X} cannot be {length} bytes long")
            }
            Truncated { what, offset } => write!(f, "PDU ends inside {what} at offset {offset}"),
            BadItemLength { item, length, offset } => write!(
                f,
                "item 0x{item:02X} at offset {offset} has an invalid length {length}"
            ),
            UnknownItem { item, offset } => {
                write!(f, "unexpected item type 0x{item:02X} at offset {offset}")
            }
            MissingItem(what) => write!(f, "missing {what}"),
            InvalidValue { what, detail } => write!(f, "invalid {what}: {detail}"),
            BadPdvLength { length, remaining } => write!(
                f,
                "PDV item length {length} is invalid with {remaining} bytes left in the PDU"
            ),
            BadContextId(id) => write!(f, "presentation context ID {id} is not odd"),
            UnexpectedFragment(what) => write!(f, "unexpected PDV: {what}"),
            ContextMismatch { command, dataset } => write!(
                f,
                "dataset fragment on presentation context {dataset}, its command was on {command}"
            ),
            CommandTooLarge(n) => write!(f, "command set of {n} bytes is too large"),
            MessageTooLarge { limit } => {
                write!(f, "dataset exceeds the maximum message size of {limit} bytes")
            }
            BadCommand(why) => write!(f, "invalid command set: {why}"),
            Io(why) => write!(f, "spooling the dataset failed: {why}"),
        }
    }
}

impl std::error::Error for CodecError {}

pub type Result<T> = std::result::Result<T, CodecError>;
