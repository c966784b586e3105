//! Film sheet composition: each image fitted into its box, empty boxes and borders filled.

use crate::layout::layout;
use crate::resample::{blit_into, fit, Magnification};
use crate::{Error, Image};

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

/// Compose `images` (in image position order; `None` leaves a box empty) onto the sheet.
/// More images than boxes is an error.
pub fn compose(images: &[Option<Image>], sheet: &Sheet) -> Result<Image, Error> {
    if sheet.channels != 1 && sheet.channels != 3 {
        return Err(Error::Invalid(format!(
            "sheet channels must be 1 or 3, got {}",
            sheet.channels
        )));
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
    let mut out = Image::filled(
        sheet.width,
        sheet.height,
        sheet.channels,
        sheet.border_value,
    )?;
    for (i, rect) in boxes.iter().enumerate() {
        let cell = match images.get(i).and_then(|o| o.as_ref()) {
            Some(img) => {
                let img = img.clone().with_channels(sheet.channels)?;
                fit(
                    &img,
                    rect.width,
                    rect.height,
                    sheet.magnification,
                    sheet.empty_value,
                )?
            }
            None => Image::filled(rect.width, rect.height, sheet.channels, sheet.empty_value)?,
        };
        blit_into(&cell, &mut out, rect.x, rect.y, rect.width, rect.height);
    }
    Ok(out)
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
}
