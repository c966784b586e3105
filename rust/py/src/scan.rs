//! `gateway._rust.scan_header`: the one-pass header scan of the C-STORE hot
//! path (`dicom_gateway_dataset::scan`), a thin wrapper.
//!
//! The input is owned (`PyBackedBytes` or a path) before the GIL is released
//! through `gil::detached`; typed errors become `ScanError` (a `ValueError`).

use dicom_gateway_dataset as ds;
use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use crate::gil;
use crate::input::{source, Source};

create_exception!(
    _rust,
    ScanError,
    PyValueError,
    "A dataset could not be scanned (malformed or truncated before the last requested group, or an I/O error)."
);

/// (values, oversized, has_pixel_data, sha256, tail_error)
type ScanTuple = (PyObject, Vec<u32>, bool, String, Option<String>);

/// scan_header(src, syntax, tags, *, max_value=1048576)
///     -> (values, oversized, has_pixel_data, sha256, tail_error)
///
/// One read of a dataset without File Meta (bytes-like, or a path read in
/// chunks): `values` maps each requested top-level tag found (and (0008,0005))
/// to (explicit VR or None in implicit VR, raw value bytes); `oversized` lists
/// requested tags whose value is longer than `max_value` (not read);
/// `has_pixel_data` is top-level (7FE0,0010); `sha256` is the hex digest of
/// all the bytes; `tail_error` describes a malformed element after the last
/// requested group (the values are complete; `has_pixel_data` is then False).
#[pyfunction]
#[pyo3(signature = (src, syntax, tags, *, max_value=1 << 20))]
fn scan_header(
    py: Python<'_>,
    src: &Bound<'_, PyAny>,
    syntax: &str,
    tags: Vec<u32>,
    max_value: usize,
) -> PyResult<ScanTuple> {
    let syntax = ds::Syntax::parse(syntax).map_err(|e| ScanError::new_err(e.to_string()))?;
    let input = source(src)?;
    let opts = ds::ScanOptions { tags, max_value };
    let result = gil::detached(py, move || match &input {
        Source::Bytes(b) => ds::scan(b, syntax, &opts),
        Source::Path(p) => ds::scan_file(p, syntax, &opts),
    });
    let r = result.map_err(|e| ScanError::new_err(e.to_string()))?;
    let values = PyDict::new(py);
    for v in &r.values {
        let vr = v.explicit_vr.map(|vr| vr.name());
        values.set_item(v.tag, (vr, PyBytes::new(py, &v.bytes)))?;
    }
    let hex = r.sha256_hex();
    let tail = r.tail_error.as_ref().map(|e| e.to_string());
    Ok((
        values.into_any().unbind(),
        r.oversized,
        r.has_pixel_data,
        hex,
        tail,
    ))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("ScanError", m.py().get_type::<ScanError>())?;
    m.add_function(wrap_pyfunction!(scan_header, m)?)?;
    Ok(())
}
