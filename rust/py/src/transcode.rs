//! `gateway._rust` transcoder functions: thin wrappers over `dicom-gateway-dataset`.
//!
//! Inputs are copied into owned Rust values, the work runs with the GIL
//! released (`gil::detached`), and `dicom_gateway_dataset::Error` becomes
//! `TranscodeError` (a `ValueError`).

use std::path::PathBuf;

use dicom_gateway_dataset as ds;
use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::PyBytes;

use crate::gil;
use crate::input::{source, Source};

create_exception!(
    _rust,
    TranscodeError,
    PyValueError,
    "A dataset could not be transcoded (malformed, truncated or unsupported input, or an I/O error)."
);

fn err(e: ds::Error) -> PyErr {
    TranscodeError::new_err(e.to_string())
}

fn syntax(s: &str) -> PyResult<ds::Syntax> {
    ds::Syntax::parse(s).map_err(err)
}

/// transcode(src, dst_syntax, *, src_syntax=None, file_meta=True, out=None,
///           implementation_class_uid, implementation_version_name, src_raw=False) -> bytes | None
///
/// Convert a whole encoded object between Implicit VR LE, Explicit VR LE and
/// Explicit VR BE. `src` is bytes-like or a path; with `out` the result is
/// written there atomically and None is returned.
#[pyfunction]
#[pyo3(signature = (src, dst_syntax, *, src_syntax=None, file_meta=true, out=None,
                    implementation_class_uid, implementation_version_name, src_raw=false))]
#[allow(clippy::too_many_arguments)]
fn transcode(
    py: Python<'_>,
    src: &Bound<'_, PyAny>,
    dst_syntax: &str,
    src_syntax: Option<&str>,
    file_meta: bool,
    out: Option<PathBuf>,
    implementation_class_uid: String,
    implementation_version_name: String,
    src_raw: bool,
) -> PyResult<Option<PyObject>> {
    let opts = ds::Options {
        dst: syntax(dst_syntax)?,
        src: src_syntax.map(syntax).transpose()?,
        file_meta,
        src_raw,
        implementation_class_uid,
        implementation_version_name,
    };
    let input = source(src)?;
    let result: Result<Option<Vec<u8>>, ds::Error> = gil::detached(py, move || {
        let owned;
        let data: &[u8] = match &input {
            Source::Bytes(b) => &b[..],
            Source::Path(p) => {
                owned = std::fs::read(p).map_err(|e| ds::Error::Io {
                    path: p.clone(),
                    op: "read",
                    source: e,
                })?;
                &owned
            }
        };
        let converted = ds::transcode(data, &opts)?;
        match out {
            Some(path) => ds::write_atomic(&path, &converted).map(|_| None),
            None => Ok(Some(converted)),
        }
    });
    match result.map_err(err)? {
        Some(v) => Ok(Some(PyBytes::new(py, &v).into_any().unbind())),
        None => Ok(None),
    }
}

/// swap_bytes(buf, width) -> bytes: the transcoder's byte-swap kernel alone
/// (width 2, 4 or 8; other widths copy), for benchmarks and tests.
#[pyfunction]
fn swap_bytes(py: Python<'_>, buf: PyBackedBytes, width: usize) -> PyResult<PyObject> {
    // Swap straight into the new bytes object. It is not visible to any other
    // thread until returned, so writing it with the GIL released is sound.
    let out = PyBytes::new_with(py, buf.len(), |dst| {
        gil::detached(py, || ds::swap::swap_copy(&buf, dst, width));
        Ok(())
    })?;
    Ok(out.into_any().unbind())
}

/// swap_bytes_timed(buf, width, repeat) -> float: best seconds per pass of
/// the swap kernel alone (copy-swap into a preallocated, warm buffer).
#[pyfunction]
fn swap_bytes_timed(
    py: Python<'_>,
    buf: PyBackedBytes,
    width: usize,
    repeat: usize,
) -> PyResult<f64> {
    let src = buf;
    let secs = gil::detached(py, move || {
        let mut dst = vec![0u8; src.len()];
        ds::swap::swap_copy(&src, &mut dst, width); // fault the pages in first
        let mut best = f64::INFINITY;
        for _ in 0..repeat.max(1) {
            let t = std::time::Instant::now();
            ds::swap::swap_copy(std::hint::black_box(&src), &mut dst, width);
            std::hint::black_box(&mut dst);
            best = best.min(t.elapsed().as_secs_f64());
        }
        best
    });
    Ok(secs)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("TranscodeError", m.py().get_type::<TranscodeError>())?;
    m.add_function(wrap_pyfunction!(transcode, m)?)?;
    m.add_function(wrap_pyfunction!(swap_bytes, m)?)?;
    m.add_function(wrap_pyfunction!(swap_bytes_timed, m)?)?;
    m.add("DICTIONARY_PYDICOM_VERSION", ds::DICTIONARY_PYDICOM_VERSION)?;
    Ok(())
}
