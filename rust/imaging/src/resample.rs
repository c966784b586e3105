//! Resampling into a box with the aspect ratio kept (Magnification Type, PS3.3 C.13.8).

use crate::{checked_len, Error, Image};

/// Magnification Type (2010,0060).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Magnification {
    /// Nearest neighbour: each output pixel copies the source pixel under its centre.
    Replicate,
    /// Linear interpolation between the 2×2 nearest source pixels (edges clamped).
    Bilinear,
    /// Catmull-Rom cubic convolution (a = −0.5) over 4×4 source pixels (edges clamped).
    Cubic,
    /// No resampling: the image is centred, and cropped if larger than the box.
    None,
}

impl Magnification {
    pub fn parse(s: &str) -> Result<Magnification, Error> {
        match s.trim().to_ascii_uppercase().as_str() {
            "REPLICATE" => Ok(Magnification::Replicate),
            "BILINEAR" => Ok(Magnification::Bilinear),
            "CUBIC" => Ok(Magnification::Cubic),
            "NONE" => Ok(Magnification::None),
            other => Err(Error::Invalid(format!(
                "magnification {other:?}: expected REPLICATE, BILINEAR, CUBIC or NONE"
            ))),
        }
    }
}

/// The size an image of `w`×`h` gets in a `bw`×`bh` box: as large as fits, aspect kept (rounded).
pub fn fitted_size(w: usize, h: usize, bw: usize, bh: usize) -> (usize, usize) {
    if w == 0 || h == 0 || bw == 0 || bh == 0 {
        return (0, 0);
    }
    let (w, h, bw, bh) = (w as u128, h as u128, bw as u128, bh as u128);
    if bw * h <= bh * w {
        let dh = ((2 * h * bw + w) / (2 * w)).clamp(1, bh);
        (bw as usize, dh as usize)
    } else {
        let dw = ((2 * w * bh + h) / (2 * h)).clamp(1, bw);
        (dw as usize, bh as usize)
    }
}

/// Taps (source index, weight) of each output coordinate along one axis.
fn taps(src: usize, dst: usize, method: Magnification) -> Vec<Vec<(usize, f32)>> {
    let scale = src as f64 / dst as f64;
    let last = src as i64 - 1;
    let clamp = |i: i64| i.clamp(0, last) as usize;
    (0..dst)
        .map(|d| {
            let centre = (d as f64 + 0.5) * scale; // in source pixel units, 0 = left edge
            match method {
                Magnification::Replicate | Magnification::None => {
                    vec![(clamp(centre.floor() as i64), 1.0)]
                }
                Magnification::Bilinear => {
                    let s = (centre - 0.5).clamp(0.0, last as f64);
                    let i0 = s.floor() as i64;
                    let f = (s - i0 as f64) as f32;
                    vec![(clamp(i0), 1.0 - f), (clamp(i0 + 1), f)]
                }
                Magnification::Cubic => {
                    let s = centre - 0.5;
                    let i0 = s.floor() as i64;
                    let t = s - i0 as f64;
                    let k = |x: f64| -> f32 {
                        // Keys' kernel, a = -0.5
                        let x = x.abs();
                        let a = -0.5;
                        (if x <= 1.0 {
                            (a + 2.0) * x * x * x - (a + 3.0) * x * x + 1.0
                        } else if x < 2.0 {
                            a * x * x * x - 5.0 * a * x * x + 8.0 * a * x - 4.0 * a
                        } else {
                            0.0
                        }) as f32
                    };
                    (-1..=2).map(|j| (clamp(i0 + j), k(t - j as f64))).collect()
                }
            }
        })
        .collect()
}

/// Resample `img` to exactly `dw`×`dh` (no aspect handling; see [`fit`]).
pub fn resample(img: &Image, dw: usize, dh: usize, method: Magnification) -> Result<Image, Error> {
    let ch = img.channels;
    let len = checked_len(dw, dh, ch)?;
    checked_len(img.width, img.height, ch)?;
    if img.data.len() != img.width * img.height * ch {
        return Err(Error::Size {
            expected: img.width * img.height * ch,
            got: img.data.len(),
        });
    }
    if (dw, dh) == (img.width, img.height) {
        return Ok(img.clone());
    }
    if method == Magnification::Replicate || method == Magnification::None {
        let xs: Vec<usize> = taps(img.width, dw, method)
            .into_iter()
            .map(|t| t[0].0)
            .collect();
        let ys: Vec<usize> = taps(img.height, dh, method)
            .into_iter()
            .map(|t| t[0].0)
            .collect();
        let mut out = Vec::with_capacity(len);
        for &y in &ys {
            let row = &img.data[y * img.width * ch..(y + 1) * img.width * ch];
            for &x in &xs {
                out.extend_from_slice(&row[x * ch..x * ch + ch]);
            }
        }
        return Image::from_raw(dw, dh, ch, out);
    }
    // Separable: horizontal pass into f32, then vertical.
    let xt = taps(img.width, dw, method);
    let yt = taps(img.height, dh, method);
    let mut mid = vec![0f32; checked_len(dw, img.height, ch)?];
    for y in 0..img.height {
        let row = &img.data[y * img.width * ch..(y + 1) * img.width * ch];
        let out = &mut mid[y * dw * ch..(y + 1) * dw * ch];
        for (x, t) in xt.iter().enumerate() {
            for c in 0..ch {
                out[x * ch + c] = t.iter().map(|&(i, w)| row[i * ch + c] as f32 * w).sum();
            }
        }
    }
    let mut out = vec![0u8; len];
    let stride = dw * ch;
    for (y, t) in yt.iter().enumerate() {
        let dst = &mut out[y * stride..(y + 1) * stride];
        for (i, v) in dst.iter_mut().enumerate() {
            let s: f32 = t.iter().map(|&(r, w)| mid[r * stride + i] * w).sum();
            *v = (s + 0.5).floor().clamp(0.0, 255.0) as u8;
        }
    }
    Image::from_raw(dw, dh, ch, out)
}

/// `img` resampled to the largest size that fits a `bw`×`bh` box (aspect kept;
/// NONE keeps its size and crops the centre), centred on a box filled with `fill`.
pub fn fit(
    img: &Image,
    bw: usize,
    bh: usize,
    method: Magnification,
    fill: u8,
) -> Result<Image, Error> {
    let mut boxed = Image::filled(bw, bh, img.channels, fill)?;
    let scaled = if method == Magnification::None {
        img.clone()
    } else {
        let (dw, dh) = fitted_size(img.width, img.height, bw, bh);
        resample(img, dw, dh, method)?
    };
    blit(&scaled, &mut boxed, 0, 0);
    Ok(boxed)
}

/// Copy `src` centred onto `dst` at the rectangle offset (x0, y0) of a box the size of `dst`
/// (cropping the centre of `src` when larger).
pub(crate) fn blit(src: &Image, dst: &mut Image, x0: usize, y0: usize) {
    blit_into(src, dst, x0, y0, dst.width, dst.height)
}

pub(crate) fn blit_into(src: &Image, dst: &mut Image, x0: usize, y0: usize, bw: usize, bh: usize) {
    let ch = dst.channels;
    if src.channels != ch {
        return;
    }
    let w = src.width.min(bw);
    let h = src.height.min(bh);
    let (sx, sy) = ((src.width - w) / 2, (src.height - h) / 2);
    let (dx, dy) = (x0 + (bw - w) / 2, y0 + (bh - h) / 2);
    for r in 0..h {
        let s = ((sy + r) * src.width + sx) * ch;
        let d = ((dy + r) * dst.width + dx) * ch;
        if let (Some(from), Some(to)) =
            (src.data.get(s..s + w * ch), dst.data.get_mut(d..d + w * ch))
        {
            to.copy_from_slice(from);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gray(w: usize, h: usize, d: &[u8]) -> Image {
        Image::from_raw(w, h, 1, d.to_vec()).unwrap()
    }

    #[test]
    fn replicate_doubles_pixels() {
        let img = gray(2, 2, &[1, 2, 3, 4]);
        let out = resample(&img, 4, 4, Magnification::Replicate).unwrap();
        assert_eq!(
            out.data,
            vec![1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4]
        );
    }

    #[test]
    fn bilinear_by_hand() {
        // centres of 4 outputs over 2 inputs: -0.25 (clamped 0), 0.25, 0.75, 1.25 (clamped 1)
        let img = gray(2, 1, &[0, 255]);
        let out = resample(&img, 4, 1, Magnification::Bilinear).unwrap();
        assert_eq!(out.data, vec![0, 64, 191, 255]);
    }

    #[test]
    fn cubic_keeps_constants_and_overshoots_clamped() {
        let img = gray(3, 3, &[7; 9]);
        let out = resample(&img, 7, 5, Magnification::Cubic).unwrap();
        assert!(out.data.iter().all(|&v| v == 7));
        // a step: Catmull-Rom overshoots, clamped to 0..255, and keeps the ends
        let img = gray(4, 1, &[0, 0, 255, 255]);
        let out = resample(&img, 8, 1, Magnification::Cubic).unwrap();
        assert_eq!(out.data[0], 0);
        assert_eq!(out.data[7], 255);
        assert!(out.data.windows(2).all(|p| p[0] <= p[1]), "{:?}", out.data);
    }

    #[test]
    fn fit_keeps_aspect_and_centres() {
        let img = gray(2, 1, &[10, 20]);
        let out = fit(&img, 4, 4, Magnification::Replicate, 99).unwrap();
        #[rustfmt::skip]
        assert_eq!(out.data, vec![
            99, 99, 99, 99,
            10, 10, 20, 20,
            10, 10, 20, 20,
            99, 99, 99, 99]);
        assert_eq!(fitted_size(512, 512, 300, 400), (300, 300));
        assert_eq!(fitted_size(3, 2, 10, 10), (10, 7));
    }

    #[test]
    fn none_centres_and_crops() {
        let img = gray(4, 1, &[1, 2, 3, 4]);
        let out = fit(&img, 2, 3, Magnification::None, 0).unwrap();
        assert_eq!(out.data, vec![0, 0, 2, 3, 0, 0]);
        let small = gray(1, 1, &[5]);
        assert_eq!(
            fit(&small, 3, 1, Magnification::None, 0).unwrap().data,
            vec![0, 5, 0]
        );
    }

    #[test]
    fn rgb_resamples_per_channel() {
        let img = Image::from_raw(1, 1, 3, vec![1, 2, 3]).unwrap();
        let out = resample(&img, 2, 1, Magnification::Bilinear).unwrap();
        assert_eq!(out.data, vec![1, 2, 3, 1, 2, 3]);
    }
}
