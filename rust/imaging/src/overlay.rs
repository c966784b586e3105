//! Overlay planes (PS3.3 C.9.2) burned into a rendered frame, and rotation of the frame.

use crate::{checked_len, Error, Image};

/// One overlay plane as it applies to one frame.
#[derive(Clone, Copy, Debug)]
pub struct Overlay<'a> {
    /// Overlay Rows / Columns (60xx,0010 / 0011).
    pub rows: usize,
    pub columns: usize,
    /// Overlay Origin (60xx,0050): row and column of the overlay's first pixel in the image,
    /// 1-based (1\1 is the image's top-left pixel); may be negative or outside the image,
    /// pixels off the image are skipped (C.9.2.1.1).
    pub origin_row: i64,
    pub origin_column: i64,
    /// Overlay Bits Allocated (60xx,0100): 1 for Overlay Data (60xx,3000) packed bits; 8 or 16
    /// when each overlay pixel is a word of `data` (the retired form, also an overlay in the
    /// unused high bits of Pixel Data — pass the frame's samples as `data`).
    pub bits_allocated: u8,
    /// Overlay Bit Position (60xx,0102): which bit of each word (0 for packed bits).
    pub bit_position: u8,
    /// The overlay bits, little-endian; packed bits go least significant bit first
    /// (PS3.5 8.1.2: bit 0 of the first byte is the first overlay pixel).
    pub data: &'a [u8],
    /// Index of this frame's first overlay pixel in `data`: frame × rows × columns for a
    /// multi-frame overlay (60xx,0015 / 0051), else 0. Packed frames need not start on a byte.
    pub first_pixel: usize,
}

impl Overlay<'_> {
    fn bit(&self, i: usize) -> bool {
        let i = self.first_pixel + i;
        match self.bits_allocated {
            1 => self.data[i / 8] >> (i % 8) & 1 == 1,
            8 => self.data[i] >> self.bit_position & 1 == 1,
            _ => {
                u16::from_le_bytes([self.data[2 * i], self.data[2 * i + 1]]) >> self.bit_position
                    & 1
                    == 1
            }
        }
    }

    fn check(&self) -> Result<(), Error> {
        let n = checked_len(self.columns, self.rows, 1)?;
        let ok_bits = match self.bits_allocated {
            1 => self.bit_position == 0,
            8 => self.bit_position < 8,
            16 => self.bit_position < 16,
            _ => false,
        };
        if !ok_bits {
            return Err(Error::Invalid(format!(
                "overlay bits allocated {} with bit position {}: expected 1 with position 0 (Overlay Data), \
                 or 8/16 with a position inside the word (PS3.3 C.9.2.1.3)",
                self.bits_allocated, self.bit_position
            )));
        }
        let last = self
            .first_pixel
            .checked_add(n)
            .ok_or_else(|| Error::Dimensions("overlay too large".into()))?;
        let need = match self.bits_allocated {
            1 => last.div_ceil(8),
            8 => last,
            _ => last * 2,
        };
        if self.data.len() < need {
            return Err(Error::Invalid(format!(
                "overlay data holds {} bytes, a {}×{} overlay{} needs {need}",
                self.data.len(),
                self.columns,
                self.rows,
                if self.first_pixel > 0 {
                    format!(" from pixel {}", self.first_pixel)
                } else {
                    String::new()
                }
            )));
        }
        Ok(())
    }
}

/// Burn `overlays` into `img`: every pixel under a set overlay bit becomes `value` (in every
/// channel). Overlay pixels outside the image are clipped. All overlays are checked first, so
/// an error leaves `img` untouched.
pub fn burn_overlays(img: &mut Image, overlays: &[Overlay<'_>], value: u8) -> Result<(), Error> {
    for o in overlays {
        o.check()?;
    }
    let (w, h, ch) = (img.width as i64, img.height as i64, img.channels);
    for o in overlays {
        for r in 0..o.rows {
            let y = o.origin_row - 1 + r as i64;
            if y < 0 || y >= h {
                continue;
            }
            for c in 0..o.columns {
                let x = o.origin_column - 1 + c as i64;
                if x < 0 || x >= w || !o.bit(r * o.columns + c) {
                    continue;
                }
                let at = (y as usize * img.width + x as usize) * ch;
                if let Some(px) = img.data.get_mut(at..at + ch) {
                    px.fill(value);
                }
            }
        }
    }
    Ok(())
}

/// `img` rotated clockwise by `degrees` (0, 90, 180 or 270); 90 and 270 swap width and height.
pub fn rotate(img: Image, degrees: u32) -> Result<Image, Error> {
    let (w, h, ch) = (img.width, img.height, img.channels);
    crate::check_buffer(w, h, ch, img.data.len())?;
    let src = &img.data;
    if degrees == 0 {
        return Ok(img);
    }
    let mut out = vec![0u8; src.len()];
    match degrees {
        180 => {
            for (d, s) in out.chunks_exact_mut(ch).zip(src.chunks_exact(ch).rev()) {
                d.copy_from_slice(s);
            }
            Image::from_raw(w, h, ch, out)
        }
        // Output (h wide, w high). 90 clockwise: out(x', y') = in(x = y', y = h - 1 - x');
        // 270: out(x', y') = in(x = w - 1 - y', y = x').
        90 | 270 => {
            for yo in 0..w {
                for xo in 0..h {
                    let (x, y) = if degrees == 90 {
                        (yo, h - 1 - xo)
                    } else {
                        (w - 1 - yo, xo)
                    };
                    let s = (y * w + x) * ch;
                    let d = (yo * h + xo) * ch;
                    out[d..d + ch].copy_from_slice(&src[s..s + ch]);
                }
            }
            Image::from_raw(h, w, ch, out)
        }
        other => Err(Error::Invalid(format!(
            "rotation {other}: expected 0, 90, 180 or 270 degrees"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ov(rows: usize, columns: usize, origin: (i64, i64), data: &[u8]) -> Overlay<'_> {
        Overlay {
            rows,
            columns,
            origin_row: origin.0,
            origin_column: origin.1,
            bits_allocated: 1,
            bit_position: 0,
            data,
            first_pixel: 0,
        }
    }

    #[test]
    fn packed_bits_lsb_first_at_the_origin() {
        let mut img = Image::filled(4, 3, 1, 7).unwrap();
        // 2×3 overlay at row 2, column 2: bits 1, 2, 4 set (pixel 0 = bit 0) → overlay (0,1) (0,2)
        // (1,1) → image (1,2) (1,3) (2,2)
        let data = [0b0001_0110u8];
        burn_overlays(&mut img, &[ov(2, 3, (2, 2), &data)], 255).unwrap();
        #[rustfmt::skip]
        assert_eq!(img.data, vec![
            7, 7, 7, 7,
            7, 7, 255, 255,
            7, 7, 255, 7]);
    }

    #[test]
    fn clipped_outside_and_rgb_all_channels() {
        let mut img = Image::filled(2, 2, 3, 0).unwrap();
        // 3×3 all-set overlay at origin 0\0: only its bottom-right 2×2 lands on the image … minus
        // the rows/cols at -1; pixel (0,0) of the image is overlay (1,1)
        let data = [0xFF, 0x01];
        burn_overlays(&mut img, &[ov(3, 3, (0, 0), &data)], 200).unwrap();
        assert_eq!(img.data, vec![200; 12]);
        let mut img = Image::filled(2, 2, 1, 0).unwrap();
        burn_overlays(&mut img, &[ov(1, 1, (5, -3), &data)], 200).unwrap();
        assert_eq!(img.data, vec![0; 4]);
    }

    #[test]
    fn word_overlays_and_frame_offset() {
        // 16-bit words, bit 12 (an overlay in the high bits of Pixel Data)
        let words: Vec<u8> = [0x1000u16, 0x0FFF, 0x1001, 0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let mut img = Image::filled(2, 2, 1, 1).unwrap();
        let o = Overlay {
            bits_allocated: 16,
            bit_position: 12,
            ..ov(2, 2, (1, 1), &words)
        };
        burn_overlays(&mut img, &[o], 9).unwrap();
        assert_eq!(img.data, vec![9, 1, 9, 1]);
        // packed, second frame of a 2×2 multi-frame overlay starts at bit 4
        let mut img = Image::filled(2, 2, 1, 0).unwrap();
        let data = [0b1001_0000u8];
        let o = Overlay {
            first_pixel: 4,
            ..ov(2, 2, (1, 1), &data)
        };
        burn_overlays(&mut img, &[o], 1).unwrap();
        assert_eq!(img.data, vec![1, 0, 0, 1]);
    }

    #[test]
    fn bad_overlays_are_errors_and_leave_the_image() {
        let mut img = Image::filled(2, 2, 1, 3).unwrap();
        let good = [0xFFu8];
        let short = ov(3, 3, (1, 1), &good); // 9 bits need 2 bytes
        let e = burn_overlays(&mut img, &[ov(1, 1, (1, 1), &good), short], 0).unwrap_err();
        assert!(e.to_string().contains("needs 2"), "{e}");
        assert_eq!(img.data, vec![3; 4]);
        let bad_pos = Overlay {
            bit_position: 3,
            ..ov(1, 1, (1, 1), &good)
        };
        assert!(burn_overlays(&mut img, &[bad_pos], 0).is_err());
        let bad_bits = Overlay {
            bits_allocated: 12,
            ..ov(1, 1, (1, 1), &good)
        };
        assert!(burn_overlays(&mut img, &[bad_bits], 0).is_err());
        assert!(burn_overlays(&mut img, &[ov(0, 4, (1, 1), &good)], 0).is_err());
        let huge = Overlay {
            first_pixel: usize::MAX,
            ..ov(1, 1, (1, 1), &good)
        };
        assert!(burn_overlays(&mut img, &[huge], 0).is_err());
    }

    #[test]
    fn rotations() {
        // 3 wide, 2 high:  1 2 3 / 4 5 6
        let img = Image::from_raw(3, 2, 1, vec![1, 2, 3, 4, 5, 6]).unwrap();
        let r90 = rotate(img.clone(), 90).unwrap();
        assert_eq!(
            (r90.width, r90.height, r90.data.clone()),
            (2, 3, vec![4, 1, 5, 2, 6, 3])
        );
        let r180 = rotate(img.clone(), 180).unwrap();
        assert_eq!(r180.data, vec![6, 5, 4, 3, 2, 1]);
        let r270 = rotate(img.clone(), 270).unwrap();
        assert_eq!(
            (r270.width, r270.height, r270.data.clone()),
            (2, 3, vec![3, 6, 2, 5, 1, 4])
        );
        assert_eq!(rotate(rotate(r90, 90).unwrap(), 180).unwrap(), img);
        assert_eq!(rotate(img.clone(), 0).unwrap(), img);
        let rgb = Image::from_raw(2, 1, 3, vec![1, 2, 3, 4, 5, 6]).unwrap();
        assert_eq!(rotate(rgb, 90).unwrap().data, vec![1, 2, 3, 4, 5, 6]);
        assert!(rotate(img, 45).is_err());
    }
}
