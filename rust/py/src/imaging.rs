//! `gateway._rust` film renderer functions: thin wrappers over `dicom-gateway-imaging`.
//!
//! Pixel buffers are owned (`PyBackedBytes`) before the GIL is released; errors
//! become `ImagingError` (a `ValueError`).

use dicom_gateway_imaging as im;
use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::PyBytes;

use crate::gil;

create_exception!(
    _rust,
    ImagingError,
    PyValueError,
    "A frame or film sheet could not be rendered (bad size, format or parameter)."
);

fn err(e: im::Error) -> PyErr {
    ImagingError::new_err(e.to_string())
}

/// render_frame(pixels, rows, columns, *, samples, bits_stored=None, rescale_slope=1.0,
///              rescale_intercept=0.0, window_center=None, window_width=None,
///              monochrome1=False, reverse=False) -> bytes
///
/// One stored frame (`samples`: "u8", "u16", "i16" little-endian, or "rgb8"
/// interleaved) to 8-bit display pixels at its own size: rows × columns bytes
/// (MONOCHROME2) or × 3 (RGB). Without a window: automatic min/max.
#[pyfunction]
#[pyo3(signature = (pixels, rows, columns, *, samples, bits_stored=None, rescale_slope=1.0,
                    rescale_intercept=0.0, window_center=None, window_width=None,
                    monochrome1=false, reverse=false))]
#[allow(clippy::too_many_arguments)]
fn render_frame(
    py: Python<'_>,
    pixels: PyBackedBytes,
    rows: usize,
    columns: usize,
    samples: &str,
    bits_stored: Option<u8>,
    rescale_slope: f64,
    rescale_intercept: f64,
    window_center: Option<f64>,
    window_width: Option<f64>,
    monochrome1: bool,
    reverse: bool,
) -> PyResult<PyObject> {
    let kind = match samples {
        "u8" => 0,
        "u16" => 1,
        "i16" => 2,
        "rgb8" => 3,
        other => {
            return Err(ImagingError::new_err(format!(
                "samples {other:?}: expected u8, u16, i16 or rgb8"
            )))
        }
    };
    let window = match (window_center, window_width) {
        (Some(center), Some(width)) => im::Window::Explicit { center, width },
        (None, None) => im::Window::MinMax,
        _ => {
            return Err(ImagingError::new_err(
                "give both window_center and window_width, or neither",
            ))
        }
    };
    let params = im::GrayParams {
        rescale_slope,
        rescale_intercept,
        window,
        monochrome1,
        reverse,
    };
    let out = gil::detached(py, move || {
        let b: &[u8] = &pixels;
        let samples = match kind {
            0 => im::Samples::U8(b),
            1 => im::Samples::U16(b),
            2 => im::Samples::I16(b),
            _ => im::Samples::Rgb8(b),
        };
        im::display(
            &im::Frame {
                rows,
                columns,
                samples,
                bits_stored,
            },
            &params,
        )
    })
    .map_err(err)?;
    Ok(PyBytes::new(py, &out.data).into_any().unbind())
}

/// compose_sheet(images, *, width, height, channels, format, border=0, border_value=0,
///               empty_value=0, magnification="REPLICATE") -> bytes
///
/// `images`: (width, height, channels, pixels) or None per image position. Each
/// is resampled to fit its box (aspect kept, centred, letterboxed with
/// `empty_value`); the sheet is width × height × channels bytes.
#[pyfunction]
#[pyo3(signature = (images, *, width, height, channels, format, border=0, border_value=0,
                    empty_value=0, magnification="REPLICATE"))]
#[allow(clippy::too_many_arguments)]
fn compose_sheet(
    py: Python<'_>,
    images: Vec<Option<(usize, usize, usize, PyBackedBytes)>>,
    width: usize,
    height: usize,
    channels: usize,
    format: String,
    border: usize,
    border_value: u8,
    empty_value: u8,
    magnification: &str,
) -> PyResult<PyObject> {
    let magnification = im::Magnification::parse(magnification).map_err(err)?;
    let sheet = im::Sheet {
        width,
        height,
        channels,
        format,
        border,
        border_value,
        empty_value,
        magnification,
    };
    let len = im::sheet_len(&sheet).map_err(err)?;
    // the sheet is composed straight into the new bytes object, with the GIL released
    let bytes = PyBytes::new_with(py, len, |buf| {
        gil::detached(py, || {
            let refs: Vec<Option<im::ImageRef<'_>>> = images
                .iter()
                .map(|o| o.as_ref().map(|(w, h, c, b)| (*w, *h, *c, &b[..])))
                .collect();
            im::compose_into(&refs, &sheet, buf)
        })
        .map_err(err)
    })?;
    Ok(bytes.into_any().unbind())
}

/// layout_boxes(format, width, height, border=0) -> list[(x, y, width, height)]:
/// the image boxes of a display format on a sheet, in image position order.
#[pyfunction]
#[pyo3(signature = (format, width, height, border=0))]
fn layout_boxes(
    format: &str,
    width: usize,
    height: usize,
    border: usize,
) -> PyResult<Vec<(usize, usize, usize, usize)>> {
    Ok(im::layout(format, width, height, border)
        .map_err(err)?
        .into_iter()
        .map(|r| (r.x, r.y, r.width, r.height))
        .collect())
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("ImagingError", m.py().get_type::<ImagingError>())?;
    m.add_function(wrap_pyfunction!(render_frame, m)?)?;
    m.add_function(wrap_pyfunction!(compose_sheet, m)?)?;
    m.add_function(wrap_pyfunction!(layout_boxes, m)?)?;
    Ok(())
}
