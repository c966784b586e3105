//! dicom-gateway-dataset: DICOM element walker and transfer-syntax transcoder.
//!
//! Converts whole encoded objects (File Meta and dataset) between Implicit VR
//! Little Endian, Explicit VR Little Endian and Explicit VR Big Endian in one
//! pass over the bytes (DESIGN.md §5, STO-2, SND-2, DAT-1, DAT-2). Pure Rust:
//! `rust/py/src/transcode.rs` is the only pyo3 code that uses it.
//!
//! Never panics on any input: every read is bounds-checked and every failure is
//! a typed [`Error`] that names the offset and the tag.

pub mod dict;
#[rustfmt::skip]
mod dict_generated;
pub mod error;
pub mod swap;
pub mod syntax;
pub mod transcode;
pub mod vr;

pub use error::{Error, Result, Tag};
pub use syntax::Syntax;
pub use transcode::{transcode, transcode_file, write_atomic, Options};

/// pydicom version the dictionary was generated from (`gen_dict.py`).
pub const DICTIONARY_PYDICOM_VERSION: &str = dict_generated::PYDICOM_VERSION;
