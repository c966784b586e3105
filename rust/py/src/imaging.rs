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

fn lut(t: &PyLut) -> im::PaletteLut<'_> {
    im::PaletteLut {
        entries: t.0,
        first_mapped: t.1,
        bits: t.2,
        data: &t.3,
    }
}

fn err(e: im::Error) -> PyErr {
    ImagingError::new_err(e.to_string())
}

/// A palette table from Python: (entries, first_mapped, bits, data) — the Palette Color
/// Lookup Table Descriptor's three values and the table's data (little-endian).
type PyLut = (u32, i32, u8, PyBackedBytes);

/// An overlay from Python: (rows, columns, origin_row, origin_column, bits_allocated,
/// bit_position, data, first_pixel), as `dicom_gateway_imaging::Overlay`.
type PyOverlay = (usize, usize, i64, i64, u8, u8, PyBackedBytes, usize);

/// render_frame(pixels, rows, columns, *, samples, bits_stored=None, rescale_slope=1.0,
///              rescale_intercept=0.0, window_center=None, window_width=None,
///              monochrome1=False, reverse=False, palette=None, overlays=None, rotate=0) -> bytes
///
/// One stored frame (`samples`: "u8", "u16", "i16" little-endian, "rgb8" interleaved, or
/// "ybr_full" / "ybr_full_422" 8-bit interleaved) to 8-bit display pixels: rows × columns
/// bytes (MONOCHROME2) or × 3 (RGB; palette and YBR give RGB). Without a window: automatic
/// min/max. `palette`: [red, green, blue] tables (entries, first_mapped, bits, data) — the
/// u8/u16/i16 samples are then PALETTE COLOR indices. `overlays` are burned in white before
/// `reverse`; `rotate` (clockwise degrees: 0, 90, 180, 270) comes last and swaps rows and
/// columns for 90 and 270.
#[pyfunction]
#[pyo3(signature = (pixels, rows, columns, *, samples, bits_stored=None, rescale_slope=1.0,
                    rescale_intercept=0.0, window_center=None, window_width=None,
                    monochrome1=false, reverse=false, palette=None, overlays=None, rotate=0))]
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
    palette: Option<Vec<PyLut>>,
    overlays: Option<Vec<PyOverlay>>,
    rotate: u32,
) -> PyResult<PyObject> {
    let kind = match samples {
        "u8" => 0,
        "u16" => 1,
        "i16" => 2,
        "rgb8" => 3,
        "ybr_full" => 4,
        "ybr_full_422" => 5,
        other => {
            return Err(ImagingError::new_err(format!(
                "samples {other:?}: expected u8, u16, i16, rgb8, ybr_full or ybr_full_422"
            )))
        }
    };
    if let Some(p) = &palette {
        if p.len() != 3 {
            return Err(ImagingError::new_err(format!(
                "palette: expected 3 tables (red, green, blue), got {}",
                p.len()
            )));
        }
        if kind > 2 {
            return Err(ImagingError::new_err(
                "palette: the samples must be u8, u16 or i16 indices",
            ));
        }
    }
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
    let overlays = overlays.unwrap_or_default();
    let out = gil::detached(py, move || {
        let b: &[u8] = &pixels;
        let frame = |samples| im::Frame {
            rows,
            columns,
            samples,
            bits_stored,
        };
        let index = match kind {
            0 => im::Samples::U8(b),
            1 => im::Samples::U16(b),
            2 => im::Samples::I16(b),
            _ => im::Samples::Rgb8(b),
        };
        let src = match (kind, &palette) {
            (4, _) | (5, _) => im::Source::Ybr {
                rows,
                columns,
                data: b,
                kind: if kind == 4 {
                    im::Ybr::Full
                } else {
                    im::Ybr::Full422
                },
            },
            (_, Some(p)) => im::Source::Palette(
                frame(index),
                im::Palette {
                    red: lut(&p[0]),
                    green: lut(&p[1]),
                    blue: lut(&p[2]),
                },
            ),
            (_, None) => im::Source::Display(frame(index)),
        };
        let planes: Vec<im::Overlay<'_>> = overlays
            .iter()
            .map(|o| im::Overlay {
                rows: o.0,
                columns: o.1,
                origin_row: o.2,
                origin_column: o.3,
                bits_allocated: o.4,
                bit_position: o.5,
                data: &o.6,
                first_pixel: o.7,
            })
            .collect();
        im::render(&src, &params, &planes, rotate)
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
