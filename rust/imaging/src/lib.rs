//! Film renderer for DICOM print (PRN-5, PRN-6): pure Rust, no Python.
//!
//! A stored frame (grayscale `u8`/`u16`/`i16` samples, or 8-bit RGB) becomes
//! 8-bit display pixels ([`display`]: Modality rescale, VOI window, MONOCHROME1
//! inversion, polarity), is resampled into a box with the aspect ratio kept
//! ([`resample`]: REPLICATE, BILINEAR, CUBIC or NONE), and boxes are laid out
//! on a sheet ([`layout`], [`compose`]: STANDARD\c,r, ROW\…, COL\… with border
//! and empty-image values). Colour inputs ([`color`]: PALETTE COLOR, YBR_FULL,
//! YBR_FULL_422) become RGB; overlay planes are burned in and the frame rotated
//! ([`overlay`]); [`render`] chains them as a print formatter does. Every function
//! returns [`Error`] for bad input and never panics; sizes are bounded by [`MAX_PIXELS`].

mod color;
mod compose;
mod display;
mod layout;
mod overlay;
mod render;
mod resample;

pub use color::{palette_to_rgb, ybr_to_rgb, Palette, PaletteLut, Ybr};
pub use overlay::{burn_overlays, rotate, Overlay};
pub use render::{render, Source, OVERLAY_VALUE};

pub use compose::{compose, compose_into, sheet_len, ImageRef, Sheet};
pub use display::{display, Frame, GrayParams, Samples, Window};
pub use layout::{layout, Rect};
pub use resample::{fit, resample, Magnification};

/// The largest image or sheet (pixels per channel) any function builds:
/// 14×17 in at 600 dpi is about 86 M; 2^27 leaves room and bounds memory.
pub const MAX_PIXELS: usize = 1 << 27;

/// An 8-bit image, row-major, `channels` (1 = grayscale, 3 = RGB) interleaved samples per pixel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Image {
    pub width: usize,
    pub height: usize,
    pub channels: usize,
    pub data: Vec<u8>,
}

impl Image {
    /// An image of one value (every channel).
    pub fn filled(width: usize, height: usize, channels: usize, value: u8) -> Result<Image, Error> {
        let len = checked_len(width, height, channels)?;
        Ok(Image {
            width,
            height,
            channels,
            data: vec![value; len],
        })
    }

    /// Wrap owned bytes, checking the length.
    pub fn from_raw(
        width: usize,
        height: usize,
        channels: usize,
        data: Vec<u8>,
    ) -> Result<Image, Error> {
        check_buffer(width, height, channels, data.len())?;
        Ok(Image {
            width,
            height,
            channels,
            data,
        })
    }

    /// This image with 1 channel (luma, ITU-R BT.601 integer weights) or 3 (gray replicated).
    pub fn with_channels(self, channels: usize) -> Result<Image, Error> {
        match (self.channels, channels) {
            (a, b) if a == b => Ok(self),
            (1, 3) => {
                let mut data = Vec::with_capacity(self.data.len() * 3);
                for &v in &self.data {
                    data.extend_from_slice(&[v, v, v]);
                }
                Ok(Image {
                    channels: 3,
                    data,
                    ..self
                })
            }
            (3, 1) => {
                let data = self
                    .data
                    .chunks_exact(3)
                    .map(|p| {
                        ((299 * p[0] as u32 + 587 * p[1] as u32 + 114 * p[2] as u32 + 500) / 1000)
                            as u8
                    })
                    .collect();
                Ok(Image {
                    channels: 1,
                    data,
                    ..self
                })
            }
            (_, b) => Err(Error::Invalid(format!("channels must be 1 or 3, got {b}"))),
        }
    }
}

/// Why an image could not be rendered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// The pixel buffer does not hold rows × columns × samples.
    Size { expected: usize, got: usize },
    /// An image or sheet larger than [`MAX_PIXELS`], or empty.
    Dimensions(String),
    /// A display format, magnification or parameter that is not understood.
    Invalid(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Size { expected, got } => {
                write!(
                    f,
                    "pixel data holds {got} bytes, the image needs {expected}"
                )
            }
            Error::Dimensions(m) | Error::Invalid(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}

/// A buffer of `len` bytes holds exactly a `width`×`height` image of 1 or 3 channels.
pub(crate) fn check_buffer(
    width: usize,
    height: usize,
    channels: usize,
    len: usize,
) -> Result<(), Error> {
    if channels != 1 && channels != 3 {
        return Err(Error::Invalid(format!(
            "channels must be 1 or 3, got {channels}"
        )));
    }
    let expected = checked_len(width, height, channels)?;
    if len != expected {
        return Err(Error::Size { expected, got: len });
    }
    Ok(())
}

/// width × height × channels, refusing empty and oversized images.
pub(crate) fn checked_len(width: usize, height: usize, channels: usize) -> Result<usize, Error> {
    let px = width
        .checked_mul(height)
        .filter(|&p| p > 0 && p <= MAX_PIXELS)
        .ok_or_else(|| {
            Error::Dimensions(format!(
                "image size {width}×{height} is empty or larger than {MAX_PIXELS} pixels"
            ))
        })?;
    px.checked_mul(channels)
        .ok_or_else(|| Error::Dimensions("image too large".into()))
}
