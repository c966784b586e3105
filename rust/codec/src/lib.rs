//! Sans-IO DICOM upper-layer codec (PS3.8): the seven PDUs with every
//! A-ASSOCIATE sub-item, a streaming receiver that coalesces the fragments
//! of each DIMSE message (spooling large datasets to a file), and PDV
//! fragmentation for sending. No I/O but the spool file, no panics on any
//! input, typed errors that map to A-ABORT reasons.

pub mod assemble;
pub mod error;
pub mod fragment;
pub mod framer;
pub mod pdu;

pub use assemble::{command_has_dataset, Dataset, Message, SpoolConfig};
pub use error::{CodecError, Result};
pub use fragment::fragment_message;
pub use framer::{Event, Limits, Receiver};
pub use pdu::{decode, encode, AssociateAc, AssociateRq, Pdu, Pdv, PresentationContextAc, PresentationContextRq, UserItem};
