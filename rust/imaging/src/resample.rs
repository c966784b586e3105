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

/// The source pixel under each output centre along one axis (REPLICATE / NONE).
fn nearest(src: usize, dst: usize) -> Vec<usize> {
    let scale = src as f64 / dst as f64;
    let last = src as i64 - 1;
    (0..dst)
        .map(|d| {
            let centre = (d as f64 + 0.5) * scale; // in source pixel units, 0 = left edge
            (centre.floor() as i64).clamp(0, last) as usize
        })
        .collect()
}

/// A flat filter table: `n` taps per output coordinate, `idx[d * n + k]` / `w[d * n + k]`.
struct Taps {
    n: usize,
    idx: Vec<usize>,
    w: Vec<f32>,
}

/// Taps (source index, weight) of each output coordinate along one axis (BILINEAR / CUBIC).
fn taps(src: usize, dst: usize, method: Magnification) -> Taps {
    let scale = src as f64 / dst as f64;
    let last = src as i64 - 1;
    let clamp = |i: i64| i.clamp(0, last) as usize;
    let n = if method == Magnification::Cubic { 4 } else { 2 };
    let mut idx = Vec::with_capacity(dst * n);
    let mut w = Vec::with_capacity(dst * n);
    for d in 0..dst {
        let centre = (d as f64 + 0.5) * scale; // in source pixel units, 0 = left edge
        if method == Magnification::Cubic {
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
            for j in -1..=2i64 {
                idx.push(clamp(i0 + j));
                w.push(k(t - j as f64));
            }
        } else {
            let s = (centre - 0.5).clamp(0.0, last as f64);
            let i0 = s.floor() as i64;
            let f = (s - i0 as f64) as f32;
            idx.push(clamp(i0));
            w.push(1.0 - f);
            idx.push(clamp(i0 + 1));
            w.push(f);
        }
    }
    Taps { n, idx, w }
}

/// Borrowed 8-bit pixels (`channels` interleaved), length already checked.
#[derive(Clone, Copy)]
pub(crate) struct View<'a> {
    pub width: usize,
    pub height: usize,
    pub channels: usize,
    pub data: &'a [u8],
}

impl<'a> View<'a> {
    /// Check the buffer length (and sizes) and wrap it.
    pub(crate) fn new(
        width: usize,
        height: usize,
        channels: usize,
        data: &'a [u8],
    ) -> Result<Self, Error> {
        crate::check_buffer(width, height, channels, data.len())?;
        Ok(View {
            width,
            height,
            channels,
            data,
        })
    }
}

/// Horizontal pass of one row: `N` taps, `C` channels, u8 -> f32.
fn hrow<const N: usize, const C: usize>(row: &[u8], t: &Taps, out: &mut [f32]) {
    for ((o, idx), w) in out
        .chunks_exact_mut(C)
        .zip(t.idx.chunks_exact(N))
        .zip(t.w.chunks_exact(N))
    {
        for c in 0..C {
            let mut s = 0f32;
            for k in 0..N {
                s += row[idx[k] * C + c] as f32 * w[k];
            }
            o[c] = s;
        }
    }
}

/// Vertical pass of one output row: `N` rows of `mid` (each `rb` floats) weighted into `dst`.
fn vrow<const N: usize>(mid: &[f32], rb: usize, idx: &[usize], w: &[f32], dst: &mut [u8]) {
    let rows: [&[f32]; N] = std::array::from_fn(|k| &mid[idx[k] * rb..idx[k] * rb + rb]);
    let ws: [f32; N] = std::array::from_fn(|k| w[k]);
    let dst = &mut dst[..rb];
    for (i, d) in dst.iter_mut().enumerate() {
        let mut s = 0f32;
        for k in 0..N {
            s += rows[k][i] * ws[k];
        }
        // == (s + 0.5).floor().clamp(0.0, 255.0) as u8 (the cast truncates and saturates)
        *d = (s + 0.5).clamp(0.0, 255.0) as u8;
    }
}

/// Resample `src` to `dw`×`dh` into `out`, whose rows start every `stride` bytes
/// (the first at 0). Errors if `out` is too short; never panics.
pub(crate) fn resample_into(
    src: View<'_>,
    dw: usize,
    dh: usize,
    method: Magnification,
    out: &mut [u8],
    stride: usize,
) -> Result<(), Error> {
    let ch = src.channels;
    checked_len(dw, dh, ch)?;
    let rb = dw * ch;
    let need = (dh - 1)
        .checked_mul(stride)
        .and_then(|n| n.checked_add(rb))
        .filter(|&n| n <= out.len() && rb <= stride)
        .ok_or_else(|| Error::Dimensions("output buffer too small".into()))?;
    let out = &mut out[..need];
    let sb = src.width * ch;
    if (dw, dh) == (src.width, src.height) {
        for (y, row) in src.data.chunks_exact(sb).enumerate() {
            out[y * stride..y * stride + rb].copy_from_slice(row);
        }
        return Ok(());
    }
    if method == Magnification::Replicate || method == Magnification::None {
        let xs = nearest(src.width, dw);
        let ys = nearest(src.height, dh);
        let mut prev: Option<usize> = None;
        for (y, &sy) in ys.iter().enumerate() {
            let o = y * stride;
            if prev == Some(sy) {
                out.copy_within(o - stride..o - stride + rb, o);
                continue;
            }
            prev = Some(sy);
            let row = &src.data[sy * sb..sy * sb + sb];
            let dst = &mut out[o..o + rb];
            if ch == 1 {
                for (d, &x) in dst.iter_mut().zip(&xs) {
                    *d = row[x];
                }
            } else {
                for (d, &x) in dst.chunks_exact_mut(3).zip(&xs) {
                    d.copy_from_slice(&row[x * 3..x * 3 + 3]);
                }
            }
        }
        return Ok(());
    }
    // Separable: horizontal pass into f32 (only the source rows used), then vertical.
    let xt = taps(src.width, dw, method);
    let yt = taps(src.height, dh, method);
    let mut used = vec![false; src.height];
    for &r in &yt.idx {
        used[r] = true;
    }
    let mut mid = vec![0f32; checked_len(dw, src.height, ch)?];
    for (y, (row, m)) in src
        .data
        .chunks_exact(sb)
        .zip(mid.chunks_exact_mut(rb))
        .enumerate()
    {
        if !used[y] {
            continue;
        }
        match (xt.n, ch) {
            (2, 1) => hrow::<2, 1>(row, &xt, m),
            (2, _) => hrow::<2, 3>(row, &xt, m),
            (_, 1) => hrow::<4, 1>(row, &xt, m),
            _ => hrow::<4, 3>(row, &xt, m),
        }
    }
    let n = yt.n;
    for y in 0..dh {
        let dst = &mut out[y * stride..y * stride + rb];
        let (idx, w) = (&yt.idx[y * n..y * n + n], &yt.w[y * n..y * n + n]);
        if n == 2 {
            vrow::<2>(&mid, rb, idx, w, dst);
        } else {
            vrow::<4>(&mid, rb, idx, w, dst);
        }
    }
    Ok(())
}

/// Resample `img` to exactly `dw`×`dh` (no aspect handling; see [`fit`]).
pub fn resample(img: &Image, dw: usize, dh: usize, method: Magnification) -> Result<Image, Error> {
    let ch = img.channels;
    let len = checked_len(dw, dh, ch)?;
    let src = View::new(img.width, img.height, ch, &img.data)?;
    let mut out = vec![0u8; len];
    resample_into(src, dw, dh, method, &mut out, dw * ch)?;
    Image::from_raw(dw, dh, ch, out)
}

/// Draw `src` fitted into the `bw`×`bh` box at byte offset 0 of `out` (rows every `stride`
/// bytes): the box filled with `fill`, the image resampled (NONE: centred, cropped) on it.
pub(crate) fn fit_into(
    src: View<'_>,
    bw: usize,
    bh: usize,
    method: Magnification,
    fill: u8,
    out: &mut [u8],
    stride: usize,
) -> Result<(), Error> {
    let ch = src.channels;
    checked_len(bw, bh, ch)?;
    let rb = bw * ch;
    let need = (bh - 1)
        .checked_mul(stride)
        .and_then(|n| n.checked_add(rb))
        .filter(|&n| n <= out.len() && rb <= stride)
        .ok_or_else(|| Error::Dimensions("output buffer too small".into()))?;
    let out = &mut out[..need];
    let (dw, dh) = if method == Magnification::None {
        (src.width.min(bw), src.height.min(bh))
    } else {
        fitted_size(src.width, src.height, bw, bh)
    };
    let (dx, dy) = ((bw - dw) / 2, (bh - dh) / 2);
    // letterbox only: the rows above and below, and the sides of the image rows
    for y in 0..bh {
        let row = &mut out[y * stride..y * stride + rb];
        if y < dy || y >= dy + dh {
            row.fill(fill);
        } else {
            row[..dx * ch].fill(fill);
            row[(dx + dw) * ch..].fill(fill);
        }
    }
    let off = dy * stride + dx * ch;
    if method == Magnification::None {
        let (sx, sy) = ((src.width - dw) / 2, (src.height - dh) / 2);
        let sb = src.width * ch;
        for r in 0..dh {
            let s = (sy + r) * sb + sx * ch;
            let d = off + r * stride;
            out[d..d + dw * ch].copy_from_slice(&src.data[s..s + dw * ch]);
        }
        return Ok(());
    }
    resample_into(src, dw, dh, method, &mut out[off..], stride)
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
    let len = checked_len(bw, bh, img.channels)?;
    let src = View::new(img.width, img.height, img.channels, &img.data)?;
    let mut out = vec![0u8; len];
    fit_into(src, bw, bh, method, fill, &mut out, bw * img.channels)?;
    Image::from_raw(bw, bh, img.channels, out)
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
