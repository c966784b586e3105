//! `gateway._rust`: thin pyo3 wrappers over the pure-Rust crates.
//!
//! Logic lives in `rust/codec`, `rust/dataset` and `rust/imaging`; this crate only converts
//! arguments, releases the GIL around real work (see `gil.rs`) and maps typed
//! errors to Python exceptions. Python imports it only through `gateway`.

use pyo3::prelude::*;

mod gil;
mod imaging;
mod input;
mod net;
mod scan;
mod transcode;

#[pymodule]
fn _rust(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    net::register(m)?;
    transcode::register(m)?;
    scan::register(m)?;
    imaging::register(m)?;
    Ok(())
}
