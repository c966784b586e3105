//! Film sheet composition: each image fitted into its box, empty boxes and borders filled.

use std::borrow::Cow;

use crate::layout::{layout, Rect};
use crate::resample::{fit_into, Magnification, View};
use crate::{checked_len, Error, Image};

/// A film sheet to compose.
#[derive(Clone, Debug)]
pub struct Sheet {
    pub width: usize,
    pub height: usize,
    /// 1: grayscale sheet (RGB images converted to luma); 3: RGB sheet.
    pub channels: usize,
    /// Image Display Format, e.g. `STANDARD\2,3`.
    pub format: String,
    /// Pixels around and between image boxes.
    pub border: usize,
    /// Pixel value of the border (Border Density rendered to 8 bits).
    pub border_value: u8,
    /// Pixel value of empty boxes and of the letterbox around an image (Empty Image Density).
    pub empty_value: u8,
    pub magnification: Magnification,
}

/// An image to place: (width, height, channels, pixels), borrowed.
pub type ImageRef<'a> = (usize, usize, usize, &'a [u8]);

/// The sheet's size in bytes (width × height × channels), checked.
pub fn sheet_len(sheet: &Sheet) -> Result<usize, Error> {
    if sheet.channels != 1 && sheet.channels != 3 {
        return Err(Error::Invalid(format!(
            "sheet channels must be 1 or 3, got {}",
            sheet.channels
        )));
    }
    checked_len(sheet.width, sheet.height, sheet.channels)
}

/// Compose `images` (in image position order; `None` leaves a box empty) onto the sheet.
/// More images than boxes is an error.
pub fn compose(images: &[Option<Image>], sheet: &Sheet) -> Result<Image, Error> {
    let len = sheet_len(sheet)?;
    let refs: Vec<Option<ImageRef<'_>>> = images
        .iter()
        .map(|o| {
            o.as_ref()
                .map(|i| (i.width, i.height, i.channels, &i.data[..]))
        })
        .collect();
    let mut out = vec![0u8; len];
    compose_into(&refs, sheet, &mut out)?;
    Image::from_raw(sheet.width, sheet.height, sheet.channels, out)
}

/// One box to draw: its rectangle and its image (already in the sheet's channels).
struct Job<'a> {
    rect: Rect,
    img: Option<(usize, usize, Cow<'a, [u8]>)>,
}

fn convert<'a>(img: ImageRef<'a>, channels: usize) -> Result<(usize, usize, Cow<'a, [u8]>), Error> {
    let (w, h, c, data) = img;
    View::new(w, h, c, data)?;
    if c == channels {
        return Ok((w, h, Cow::Borrowed(data)));
    }
    let conv = Image::from_raw(w, h, c, data.to_vec())?.with_channels(channels)?;
    Ok((w, h, Cow::Owned(conv.data)))
}

/// Compose into `out` (exactly width × height × channels bytes, any contents) in place.
/// Bands of boxes that share no sheet rows are drawn in parallel.
pub fn compose_into(
    images: &[Option<ImageRef<'_>>],
    sheet: &Sheet,
    out: &mut [u8],
) -> Result<(), Error> {
    let len = sheet_len(sheet)?;
    if out.len() != len {
        return Err(Error::Size {
            expected: len,
            got: out.len(),
        });
    }
    let boxes = layout(&sheet.format, sheet.width, sheet.height, sheet.border)?;
    if images.len() > boxes.len() {
        return Err(Error::Invalid(format!(
            "{} images do not fit the {} boxes of {}",
            images.len(),
            boxes.len(),
            sheet.format
        )));
    }
    let mut jobs = Vec::with_capacity(boxes.len());
    for (i, rect) in boxes.iter().enumerate() {
        let img = match images.get(i).copied().flatten() {
            Some(img) => Some(convert(img, sheet.channels)?),
            None => None,
        };
        jobs.push(Job { rect: *rect, img });
    }
    // bands: runs of boxes (by top edge) whose row ranges do not overlap the next run
    jobs.sort_by_key(|j| j.rect.y);
    let mut bands: Vec<(usize, usize, Vec<Job<'_>>)> = Vec::new(); // (y0, y1, jobs)
    for job in jobs {
        let (y0, y1) = (job.rect.y, job.rect.y + job.rect.height);
        match bands.last_mut() {
            Some(b) if y0 < b.1 => {
                b.1 = b.1.max(y1);
                b.2.push(job);
            }
            _ => bands.push((y0, y1, vec![job])),
        }
    }
    let stride = sheet.width * sheet.channels;
    // split the sheet into one slice per band
    let mut slices = Vec::with_capacity(bands.len());
    let mut rest: &mut [u8] = out;
    let mut at = 0usize; // sheet row where `rest` starts
    for (y0, y1, jobs) in &bands {
        let skip = (y0 - at) * stride;
        let take = (y1 - y0) * stride;
        if skip + take > rest.len() {
            return Err(Error::Dimensions("image box outside the sheet".into()));
        }
        let (gap, tail) = std::mem::take(&mut rest).split_at_mut(skip);
        gap.fill(sheet.border_value);
        let (band, tail) = tail.split_at_mut(take);
        rest = tail;
        at = *y1;
        slices.push((*y0, band, jobs));
    }
    rest.fill(sheet.border_value);
    // each band is filled (border) and drawn by the thread that owns it
    let draw = |y0: usize, band: &mut [u8], jobs: &[Job<'_>]| -> Result<(), Error> {
        band.fill(sheet.border_value);
        for job in jobs {
            let r = job.rect;
            if r.x + r.width > sheet.width {
                return Err(Error::Dimensions("image box outside the sheet".into()));
            }
            let off = (r.y - y0) * stride + r.x * sheet.channels;
            let dst = &mut band[off..];
            match &job.img {
                Some((w, h, data)) => {
                    let src = View::new(*w, *h, sheet.channels, data)?;
                    fit_into(
                        src,
                        r.width,
                        r.height,
                        sheet.magnification,
                        sheet.empty_value,
                        dst,
                        stride,
                    )?;
                }
                None => {
                    let rb = r.width * sheet.channels;
                    for y in 0..r.height {
                        if let Some(row) = dst.get_mut(y * stride..y * stride + rb) {
                            row.fill(sheet.empty_value);
                        }
                    }
                }
            }
        }
        Ok(())
    };
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(slices.len())
        .max(1);
    if threads == 1 {
        for (y0, band, jobs) in slices {
            draw(y0, band, jobs)?;
        }
        return Ok(());
    }
    // deal bands out round-robin to the threads
    type Group<'s, 'j> = Vec<(usize, &'s mut [u8], &'s Vec<Job<'j>>)>;
    let mut groups: Vec<Group<'_, '_>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, s) in slices.into_iter().enumerate() {
        groups[i % threads].push(s);
    }
    let draw = &draw;
    let first = groups.swap_remove(0);
    std::thread::scope(|scope| {
        let mut handles = Vec::new();
        let mut res = Ok(());
        for group in groups {
            let run = move || -> Result<(), Error> {
                for (y0, band, jobs) in group {
                    draw(y0, band, jobs)?;
                }
                Ok(())
            };
            match std::thread::Builder::new().spawn_scoped(scope, run) {
                Ok(h) => handles.push(h),
                Err(e) => {
                    res = Err(Error::Invalid(format!(
                        "could not start a renderer thread: {e}"
                    )))
                }
            }
        }
        for (y0, band, jobs) in first {
            if res.is_ok() {
                res = draw(y0, band, jobs);
            }
        }
        for h in handles {
            let r = h
                .join()
                .unwrap_or_else(|_| Err(Error::Invalid("renderer thread failed".into())));
            if res.is_ok() {
                res = r;
            }
        }
        res
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sheet(format: &str, w: usize, h: usize, border: usize) -> Sheet {
        Sheet {
            width: w,
            height: h,
            channels: 1,
            format: format.into(),
            border,
            border_value: 9,
            empty_value: 1,
            magnification: Magnification::Replicate,
        }
    }

    #[test]
    fn two_by_one_with_border_and_empty_box() {
        let img = Image::from_raw(1, 1, 1, vec![200]).unwrap();
        let out = compose(&[Some(img), None], &sheet("STANDARD\\2,1", 5, 3, 1)).unwrap();
        #[rustfmt::skip]
        assert_eq!(out.data, vec![
            9, 9, 9, 9, 9,
            9, 200, 9, 1, 9,
            9, 9, 9, 9, 9]);
    }

    #[test]
    fn letterbox_uses_empty_value() {
        let img = Image::from_raw(2, 1, 1, vec![10, 20]).unwrap();
        let out = compose(&[Some(img)], &sheet("STANDARD\\1,1", 2, 2, 0)).unwrap();
        // 2x1 in a 2x2 box: fitted 2x1, centred at row 0 ((2-1)/2 = 0), row 1 empty
        assert_eq!(out.data, vec![10, 20, 1, 1]);
    }

    #[test]
    fn rgb_sheet_and_gray_to_rgb() {
        let gray = Image::from_raw(1, 1, 1, vec![50]).unwrap();
        let rgb = Image::from_raw(1, 1, 3, vec![255, 0, 0]).unwrap();
        let mut s = sheet("STANDARD\\2,1", 2, 1, 0);
        s.channels = 3;
        let out = compose(&[Some(gray), Some(rgb.clone())], &s).unwrap();
        assert_eq!(out.data, vec![50, 50, 50, 255, 0, 0]);
        s.channels = 1;
        let out = compose(&[None, Some(rgb)], &s).unwrap();
        assert_eq!(out.data, vec![1, 76]); // luma of pure red
    }

    #[test]
    fn too_many_images() {
        let img = Image::from_raw(1, 1, 1, vec![0]).unwrap();
        assert!(compose(
            &[Some(img.clone()), Some(img)],
            &sheet("STANDARD\\1,1", 4, 4, 0)
        )
        .is_err());
    }

    #[test]
    fn bands_match_boxes_fitted_alone() {
        // several bands (drawn in parallel) give the same pixels as each box fitted alone
        let img = Image::from_raw(3, 2, 1, vec![10, 20, 30, 40, 50, 60]).unwrap();
        for m in [
            Magnification::Replicate,
            Magnification::Bilinear,
            Magnification::Cubic,
            Magnification::None,
        ] {
            let mut s = sheet("STANDARD\\2,3", 23, 31, 2);
            s.magnification = m;
            let imgs = vec![
                Some(img.clone()),
                None,
                Some(img.clone()),
                Some(img.clone()),
            ];
            let out = compose(&imgs, &s).unwrap();
            let rects = layout(&s.format, 23, 31, 2).unwrap();
            let mut want = vec![9u8; 23 * 31];
            for (i, r) in rects.iter().enumerate() {
                let cell = match imgs.get(i).cloned().flatten() {
                    Some(im) => crate::fit(&im, r.width, r.height, m, 1).unwrap(),
                    None => Image::filled(r.width, r.height, 1, 1).unwrap(),
                };
                for y in 0..r.height {
                    let d = (r.y + y) * 23 + r.x;
                    want[d..d + r.width]
                        .copy_from_slice(&cell.data[y * r.width..(y + 1) * r.width]);
                }
            }
            assert_eq!(out.data, want, "{m:?}");
        }
    }
}
