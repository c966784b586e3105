//! Inputs of the dataset functions: bytes-like or a path, owned before the GIL is released.

use std::path::PathBuf;

use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::{PyByteArray, PyBytes};

/// Input: bytes-like or a path. `PyBackedBytes` owns a reference to an
/// immutable `bytes` (a bytearray is copied), so it is safe to read with the
/// GIL released.
pub(crate) enum Source {
    Bytes(PyBackedBytes),
    Path(PathBuf),
}

pub(crate) fn source(src: &Bound<'_, PyAny>) -> PyResult<Source> {
    if src.is_instance_of::<PyBytes>() || src.is_instance_of::<PyByteArray>() {
        return Ok(Source::Bytes(src.extract::<PyBackedBytes>()?));
    }
    if let Ok(p) = src.extract::<PathBuf>() {
        return Ok(Source::Path(p));
    }
    // memoryview and other buffers: copy into a bytes object.
    let bytes = src
        .py()
        .import("builtins")?
        .getattr("bytes")?
        .call1((src,))?;
    Ok(Source::Bytes(bytes.extract::<PyBackedBytes>()?))
}
