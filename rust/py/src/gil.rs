//! The one place that releases the GIL.
//!
//! Callers must own (or copy) every input before calling `detached`: nothing
//! borrowed from a Python object may be touched while the GIL is released.

use pyo3::marker::Ungil;
use pyo3::prelude::*;

/// Run `f` with the GIL released. `f` must capture only owned data.
pub fn detached<T, F>(py: Python<'_>, f: F) -> T
where
    F: Ungil + FnOnce() -> T,
    T: Ungil,
{
    py.allow_threads(f)
}
