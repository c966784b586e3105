//! dicom-gateway-dataset: DICOM element walker and transfer-syntax transcoder.
//!
//! Converts whole encoded objects (File Meta and dataset) between Implicit VR
//! Little Endian, Explicit VR Little Endian and Explicit VR Big Endian in one
//! pass over the bytes (DESIGN.md §5, STO-2, SND-2, DAT-1, DAT-2). Pure Rust:
//! `rust/py/src/transcode.rs` is the only pyo3 code that uses it.
//!
//! [`scan`] is the one-pass header scan of the C-STORE hot path (index values,
//! Pixel Data presence and SHA-256 in one read, STO-7).
//!
//! Never panics on any input: every read is bounds-checked and every failure is
//! a typed [`Error`] that names the offset and the tag.

pub mod dict;
#[rustfmt::skip]
mod dict_generated;
pub mod error;
pub mod scan;
pub mod swap;
pub mod syntax;
pub mod transcode;
pub mod vr;

pub use error::{Error, Result, Tag};
pub use scan::{scan, scan_file, scan_reader, Scan, ScanOptions};
pub use syntax::Syntax;
pub use transcode::{transcode, transcode_file, write_atomic, Options};

/// pydicom version the dictionary was generated from (`gen_dict.py`).
pub const DICTIONARY_PYDICOM_VERSION: &str = dict_generated::PYDICOM_VERSION;
