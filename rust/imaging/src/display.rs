//! Stored samples → 8-bit display pixels (PS3.3 C.11.1 Modality LUT, C.11.2 VOI LUT).

use crate::{checked_len, Error, Image};

/// Stored pixel samples, little-endian bytes as in the Pixel Data element.
#[derive(Clone, Copy, Debug)]
pub enum Samples<'a> {
    /// Bits Allocated 8, grayscale.
    U8(&'a [u8]),
    /// Bits Allocated 16, Pixel Representation 0.
    U16(&'a [u8]),
    /// Bits Allocated 16, Pixel Representation 1 (two's complement).
    I16(&'a [u8]),
    /// 8-bit RGB, interleaved (Planar Configuration 0).
    Rgb8(&'a [u8]),
}

/// One frame of a stored image.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    pub rows: usize,
    pub columns: usize,
    pub samples: Samples<'a>,
    /// Bits Stored of 16-bit samples (1..=16); bits above it are masked off
    /// (and the sign extended for I16). `None`: all 16.
    pub bits_stored: Option<u8>,
}

/// A VOI window: explicit center/width (PS3.3 C.11.2.1.2), or automatic from the frame's min/max.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Window {
    Explicit {
        center: f64,
        width: f64,
    },
    /// Linear from the smallest rescaled value (0) to the largest (255); a constant frame is 0.
    MinMax,
}

/// How grayscale samples become display values.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GrayParams {
    pub rescale_slope: f64,
    pub rescale_intercept: f64,
    pub window: Window,
    /// Photometric Interpretation MONOCHROME1: the minimum sample is white.
    pub monochrome1: bool,
    /// Polarity REVERSE: invert once more (applied to RGB too).
    pub reverse: bool,
}

impl Default for GrayParams {
    fn default() -> Self {
        GrayParams {
            rescale_slope: 1.0,
            rescale_intercept: 0.0,
            window: Window::MinMax,
            monochrome1: false,
            reverse: false,
        }
    }
}

/// Render a frame to 8-bit display pixels at its own size: MONOCHROME2 gray
/// (0 = black) or RGB. Grayscale: value = VOI(slope × stored + intercept),
/// inverted for MONOCHROME1, inverted for REVERSE.
pub fn display(frame: &Frame<'_>, params: &GrayParams) -> Result<Image, Error> {
    let (rows, cols) = (frame.rows, frame.columns);
    let channels = if matches!(frame.samples, Samples::Rgb8(_)) {
        3
    } else {
        1
    };
    let len = checked_len(cols, rows, channels)?;
    let invert = params.monochrome1 != params.reverse;
    if let Samples::Rgb8(b) = frame.samples {
        let data = b.get(..len).ok_or(Error::Size {
            expected: len,
            got: b.len(),
        })?;
        let data = if params.reverse {
            data.iter().map(|v| 255 - v).collect()
        } else {
            data.to_vec()
        };
        return Image::from_raw(cols, rows, 3, data);
    }
    if !params.rescale_slope.is_finite() || !params.rescale_intercept.is_finite() {
        return Err(Error::Invalid(
            "rescale slope and intercept must be finite".into(),
        ));
    }
    let stored = stored_values(frame)?;
    // The VOI function of a stored value, through a lookup table over the stored range.
    let (lo, hi) = stored
        .iter()
        .fold((i32::MAX, i32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    let (slope, icpt) = (params.rescale_slope, params.rescale_intercept);
    let modality = |v: i32| slope * v as f64 + icpt;
    let voi: Box<dyn Fn(f64) -> u8> = match params.window {
        Window::Explicit { center, width } => {
            if !center.is_finite() || !width.is_finite() || width < 1.0 {
                return Err(Error::Invalid(format!(
                    "window width must be >= 1 (got {width}) and center finite"
                )));
            }
            Box::new(move |x: f64| {
                let c = center - 0.5;
                let w = width - 1.0;
                if x <= c - w / 2.0 {
                    0
                } else if x > c + w / 2.0 || w <= 0.0 {
                    255
                } else {
                    (((x - c) / w + 0.5) * 255.0).round().clamp(0.0, 255.0) as u8
                }
            })
        }
        Window::MinMax => {
            let (a, b) = (modality(lo), modality(hi));
            let (min, max) = if a <= b { (a, b) } else { (b, a) };
            Box::new(move |x: f64| {
                if max <= min {
                    0
                } else {
                    ((x - min) / (max - min) * 255.0).round().clamp(0.0, 255.0) as u8
                }
            })
        }
    };
    let range = (hi as i64 - lo as i64 + 1) as usize;
    let data: Vec<u8> = if range <= 65536 * 2 {
        let lut: Vec<u8> = (0..range)
            .map(|i| {
                let v = voi(modality(lo + i as i32));
                if invert {
                    255 - v
                } else {
                    v
                }
            })
            .collect();
        stored
            .iter()
            .map(|&v| lut.get((v - lo) as usize).copied().unwrap_or(0))
            .collect()
    } else {
        return Err(Error::Invalid("sample range too wide".into())); // 16-bit samples span at most 65536 values
    };
    Image::from_raw(cols, rows, 1, data)
}

/// The stored values of a grayscale (or palette index) frame as integers: Bits Stored
/// masked, two's complement sign-extended for I16 (PS3.3 C.7.6.3.1: Pixel Representation).
pub(crate) fn stored_values(frame: &Frame<'_>) -> Result<Vec<i32>, Error> {
    let n = checked_len(frame.columns, frame.rows, 1)?;
    let bits = frame.bits_stored.unwrap_or(16);
    if !(1..=16).contains(&bits) {
        return Err(Error::Invalid(format!(
            "bits stored must be 1..16, got {bits}"
        )));
    }
    let stored: Vec<i32> = match frame.samples {
        Samples::U8(b) => b
            .get(..n)
            .ok_or(Error::Size {
                expected: n,
                got: b.len(),
            })?
            .iter()
            .map(|&v| v as i32)
            .collect(),
        Samples::U16(b) | Samples::I16(b) => {
            let b = b.get(..n * 2).ok_or(Error::Size {
                expected: n * 2,
                got: b.len(),
            })?;
            let signed = matches!(frame.samples, Samples::I16(_));
            let mask: u32 = if bits == 16 {
                0xFFFF
            } else {
                (1u32 << bits) - 1
            };
            b.chunks_exact(2)
                .map(|p| {
                    let v = u16::from_le_bytes([p[0], p[1]]) as u32 & mask;
                    if signed && v & (1 << (bits - 1)) != 0 {
                        v as i32 - (1i32 << bits)
                    } else {
                        v as i32
                    }
                })
                .collect()
        }
        Samples::Rgb8(_) => {
            return Err(Error::Invalid(
                "RGB samples have no single stored value".into(),
            ))
        }
    };
    Ok(stored)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u16le(v: &[u16]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn min_max_window_spans_0_to_255() {
        let px = u16le(&[100, 200, 300, 400]);
        let f = Frame {
            rows: 2,
            columns: 2,
            samples: Samples::U16(&px),
            bits_stored: None,
        };
        let img = display(&f, &GrayParams::default()).unwrap();
        assert_eq!(img.data, vec![0, 85, 170, 255]);
    }

    #[test]
    fn explicit_window_follows_ps3_3_formula() {
        // CT: slope 1, intercept -1024; window 40/400: -160 → 0, 240 → 255, 40 → 128.
        let px = u16le(&[1024 - 160, 1024 + 240, 1024 + 40, 0]);
        let f = Frame {
            rows: 1,
            columns: 4,
            samples: Samples::U16(&px),
            bits_stored: Some(12),
        };
        let p = GrayParams {
            rescale_intercept: -1024.0,
            window: Window::Explicit {
                center: 40.0,
                width: 400.0,
            },
            ..Default::default()
        };
        let img = display(&f, &p).unwrap();
        // x=40: ((40-39.5)/399 + 0.5)*255 = 127.82 → 128; x=240 > 39.5+199.5=239 → 255
        assert_eq!(img.data, vec![0, 255, 128, 0]);
    }

    #[test]
    fn monochrome1_and_reverse_invert() {
        let px = [0u8, 255];
        let f = Frame {
            rows: 1,
            columns: 2,
            samples: Samples::U8(&px),
            bits_stored: None,
        };
        let m1 = GrayParams {
            monochrome1: true,
            ..Default::default()
        };
        assert_eq!(display(&f, &m1).unwrap().data, vec![255, 0]);
        let both = GrayParams {
            monochrome1: true,
            reverse: true,
            ..Default::default()
        };
        assert_eq!(display(&f, &both).unwrap().data, vec![0, 255]);
        let rev = GrayParams {
            reverse: true,
            ..Default::default()
        };
        assert_eq!(display(&f, &rev).unwrap().data, vec![255, 0]);
    }

    #[test]
    fn signed_samples_with_bits_stored_are_sign_extended() {
        // 12 bits stored: 0x0FFF is -1, 0x0800 is -2048, upper bits ignored.
        let px = u16le(&[0xF800, 0x0FFF, 0x07FF]);
        let f = Frame {
            rows: 1,
            columns: 3,
            samples: Samples::I16(&px),
            bits_stored: Some(12),
        };
        let p = GrayParams {
            window: Window::Explicit {
                center: 0.0,
                width: 4096.0,
            },
            ..Default::default()
        };
        let img = display(&f, &p).unwrap();
        assert_eq!(img.data[0], 0);
        assert_eq!(img.data[1], 127); // -1 → ((-1+0.5)/4095+0.5)*255 = 127.47
        assert_eq!(img.data[2], 255);
    }

    #[test]
    fn short_buffer_is_an_error() {
        let px = [1u8, 2, 3];
        let f = Frame {
            rows: 2,
            columns: 2,
            samples: Samples::U8(&px),
            bits_stored: None,
        };
        assert_eq!(
            display(&f, &GrayParams::default()),
            Err(Error::Size {
                expected: 4,
                got: 3
            })
        );
        let f = Frame {
            rows: 0,
            columns: 2,
            samples: Samples::U8(&px),
            bits_stored: None,
        };
        assert!(matches!(
            display(&f, &GrayParams::default()),
            Err(Error::Dimensions(_))
        ));
    }

    #[test]
    fn rgb_passes_through() {
        let px = [1u8, 2, 3, 4, 5, 6];
        let f = Frame {
            rows: 1,
            columns: 2,
            samples: Samples::Rgb8(&px),
            bits_stored: None,
        };
        let img = display(&f, &GrayParams::default()).unwrap();
        assert_eq!((img.channels, img.data.clone()), (3, px.to_vec()));
    }
}
