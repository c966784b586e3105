//! Colour inputs to 8-bit RGB: PALETTE COLOR (PS3.3 C.7.6.3.1.5/6) and YBR_FULL /
//! YBR_FULL_422 (PS3.3 C.7.6.3.1.2), uncompressed. A grayscale printer gets the luma of
//! the RGB result ([`Image::with_channels`], ITU-R BT.601 weights — for YBR_FULL that is
//! the stored Y again, within rounding, since YBR_FULL's Y is defined with the same weights).

use crate::display::stored_values;
use crate::{checked_len, Error, Frame, Image};

/// One Palette Color Lookup Table: its descriptor (0028,1101-1103) and data (0028,1201-1203).
#[derive(Clone, Copy, Debug)]
pub struct PaletteLut<'a> {
    /// First descriptor value: number of entries; 0 means 65536 (PS3.3 C.7.6.3.1.5).
    pub entries: u32,
    /// Second value: the first stored pixel value mapped (US, or SS when Pixel Representation is 1).
    pub first_mapped: i32,
    /// Third value: bits per entry, 8 or 16.
    pub bits: u8,
    /// The LUT data, little-endian: 16-bit entries as words; 8-bit entries as one byte each
    /// (padded to even length) or, as some writers do, one per 16-bit word.
    pub data: &'a [u8],
}

/// The three tables of a PALETTE COLOR image.
#[derive(Clone, Copy, Debug)]
pub struct Palette<'a> {
    pub red: PaletteLut<'a>,
    pub green: PaletteLut<'a>,
    pub blue: PaletteLut<'a>,
}

impl PaletteLut<'_> {
    /// The table as 8-bit display values, one per entry.
    fn table_8bit(&self, which: &str) -> Result<Vec<u8>, Error> {
        let n = if self.entries == 0 {
            65536
        } else {
            self.entries as usize
        };
        if n > 65536 {
            return Err(Error::Invalid(format!(
                "{which} palette descriptor: {n} entries, at most 65536"
            )));
        }
        let words = |d: &[u8]| -> Vec<u16> {
            d.chunks_exact(2)
                .take(n)
                .map(|p| u16::from_le_bytes([p[0], p[1]]))
                .collect()
        };
        match self.bits {
            // 16-bit entries span 0..65535: scaled to 0..255 by rounding v / 257 (65535 / 255).
            16 if self.data.len() == 2 * n => Ok(words(self.data)
                .into_iter()
                .map(|v| ((v as u32 + 128) / 257) as u8)
                .collect()),
            // 8-bit entries, one byte each (an odd count padded to even length, PS3.5 7.1.1).
            8 if self.data.len() == n || (n % 2 == 1 && self.data.len() == n + 1) => {
                Ok(self.data[..n].to_vec())
            }
            // 8-bit entries stored one per 16-bit word: the value is in the low byte, unless every
            // low byte is 0 and a high byte is not (writers that left-aligned them).
            8 if self.data.len() == 2 * n => {
                let w = words(self.data);
                let high = w.iter().all(|v| v & 0xFF == 0) && w.iter().any(|v| v >> 8 != 0);
                Ok(w.into_iter()
                    .map(|v| if high { (v >> 8) as u8 } else { (v & 0xFF) as u8 })
                    .collect())
            }
            8 | 16 => Err(Error::Invalid(format!(
                "{which} palette data holds {} bytes, a {n}-entry table of {}-bit entries needs {}",
                self.data.len(),
                self.bits,
                if self.bits == 16 { 2 * n } else { n }
            ))),
            b => Err(Error::Invalid(format!(
                "{which} palette descriptor: {b} bits per entry, expected 8 or 16 (PS3.3 C.7.6.3.1.5)"
            ))),
        }
    }
}

/// A PALETTE COLOR frame (indices as `frame.samples`, U8/U16/I16) to RGB. Values below the
/// first mapped value take the first entry, values past the table the last (PS3.3 C.7.6.3.1.5).
pub fn palette_to_rgb(frame: &Frame<'_>, palette: &Palette<'_>) -> Result<Image, Error> {
    let stored = stored_values(frame)?;
    let luts = [
        (palette.red, palette.red.table_8bit("red")?),
        (palette.green, palette.green.table_8bit("green")?),
        (palette.blue, palette.blue.table_8bit("blue")?),
    ];
    let len = checked_len(frame.columns, frame.rows, 3)?;
    let mut out = vec![0u8; len];
    for (c, (lut, table)) in luts.iter().enumerate() {
        let last = table.len() as i64 - 1; // >= 0: a table has at least one entry
        let first = lut.first_mapped as i64;
        for (px, &v) in out.chunks_exact_mut(3).zip(&stored) {
            let i = (v as i64 - first).clamp(0, last) as usize;
            px[c] = table[i];
        }
    }
    Image::from_raw(frame.columns, frame.rows, 3, out)
}

/// Which YBR photometric interpretation (PS3.3 C.7.6.3.1.2), 8 bits per sample.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ybr {
    /// YBR_FULL, interleaved Y Cb Cr per pixel (Planar Configuration 0).
    Full,
    /// YBR_FULL_422: per horizontal pair of pixels Y1 Y2 Cb Cr (chroma shared; Columns even).
    Full422,
}

/// YBR_FULL or YBR_FULL_422 (8 bits, full range) to RGB with the PS3.3 C.7.6.3.1.2 equations
/// (ITU-R BT.601 inverted, chroma centred on 128):
/// R = Y + 1.402 (Cr − 128), G = Y − 0.344136 (Cb − 128) − 0.714136 (Cr − 128),
/// B = Y + 1.772 (Cb − 128), rounded and clipped to 0..255.
pub fn ybr_to_rgb(rows: usize, columns: usize, data: &[u8], kind: Ybr) -> Result<Image, Error> {
    let len = checked_len(columns, rows, 3)?;
    let need = match kind {
        Ybr::Full => len,
        Ybr::Full422 => {
            if !columns.is_multiple_of(2) {
                return Err(Error::Invalid(format!(
                    "YBR_FULL_422 needs an even number of columns, got {columns} (PS3.3 C.7.6.3.1.2)"
                )));
            }
            len / 3 * 2
        }
    };
    let data = data.get(..need).ok_or(Error::Size {
        expected: need,
        got: data.len(),
    })?;
    let conv = |y: u8, cb: u8, cr: u8, px: &mut [u8]| {
        let (y, cb, cr) = (y as f32, cb as f32 - 128.0, cr as f32 - 128.0);
        let q = |v: f32| v.round().clamp(0.0, 255.0) as u8;
        px[0] = q(y + 1.402 * cr);
        px[1] = q(y - 0.344136 * cb - 0.714136 * cr);
        px[2] = q(y + 1.772 * cb);
    };
    let mut out = vec![0u8; len];
    match kind {
        Ybr::Full => {
            for (px, s) in out.chunks_exact_mut(3).zip(data.chunks_exact(3)) {
                conv(s[0], s[1], s[2], px);
            }
        }
        Ybr::Full422 => {
            for (pair, s) in out.chunks_exact_mut(6).zip(data.chunks_exact(4)) {
                let (a, b) = pair.split_at_mut(3);
                conv(s[0], s[2], s[3], a);
                conv(s[1], s[2], s[3], b);
            }
        }
    }
    Image::from_raw(columns, rows, 3, out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Samples;

    fn lut(entries: u32, first: i32, bits: u8, data: &[u8]) -> PaletteLut<'_> {
        PaletteLut {
            entries,
            first_mapped: first,
            bits,
            data,
        }
    }

    #[test]
    fn palette_8bit_maps_and_clamps_outside_the_table() {
        // 4 entries starting at stored value 10: 9 → entry 0, 10..13 → entries, 200 → entry 3.
        let r = [1u8, 2, 3, 4];
        let g = [10u8, 20, 30, 40];
        let b = [100u8, 110, 120, 130];
        let p = Palette {
            red: lut(4, 10, 8, &r),
            green: lut(4, 10, 8, &g),
            blue: lut(4, 10, 8, &b),
        };
        let px = [9u8, 10, 12, 200];
        let f = Frame {
            rows: 2,
            columns: 2,
            samples: Samples::U8(&px),
            bits_stored: None,
        };
        let img = palette_to_rgb(&f, &p).unwrap();
        #[rustfmt::skip]
        assert_eq!(img.data, vec![1, 10, 100,  1, 10, 100,  3, 30, 120,  4, 40, 130]);
    }

    #[test]
    fn palette_16bit_entries_scale_to_8_bits_and_signed_first_value() {
        let words = |v: &[u16]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let r = words(&[0, 65535, 257 * 100]);
        let g = words(&[128, 383, 65535]); // 128/257 = 0.498 → 0; 383/257 = 1.49 → 1
        let p = Palette {
            red: lut(3, -1, 16, &r),
            green: lut(3, -1, 16, &g),
            blue: lut(3, -1, 16, &r),
        };
        let px = words(&[0xFFFF, 0, 1]); // i16: -1, 0, 1
        let f = Frame {
            rows: 1,
            columns: 3,
            samples: Samples::I16(&px),
            bits_stored: None,
        };
        let img = palette_to_rgb(&f, &p).unwrap();
        assert_eq!(img.data, vec![0, 0, 0, 255, 1, 255, 100, 255, 100]);
    }

    #[test]
    fn palette_8bit_entries_in_words_and_65536_entries() {
        let r: Vec<u8> = [7u16, 8].iter().flat_map(|x| x.to_le_bytes()).collect();
        let hi: Vec<u8> = [0x0700u16, 0x0800]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let p = Palette {
            red: lut(2, 0, 8, &r),
            green: lut(2, 0, 8, &hi),
            blue: lut(2, 0, 8, &r),
        };
        let px = [0u8, 1];
        let f = Frame {
            rows: 1,
            columns: 2,
            samples: Samples::U8(&px),
            bits_stored: None,
        };
        assert_eq!(palette_to_rgb(&f, &p).unwrap().data, vec![7, 7, 7, 8, 8, 8]);
        // descriptor 0 = 65536 entries (PS3.3 C.7.6.3.1.5)
        let big: Vec<u8> = (0..65536u32)
            .flat_map(|v| (v as u16).to_le_bytes())
            .collect();
        let p = Palette {
            red: lut(0, 0, 16, &big),
            green: lut(0, 0, 16, &big),
            blue: lut(0, 0, 16, &big),
        };
        let px: Vec<u8> = [65535u16, 257]
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect();
        let f = Frame {
            rows: 1,
            columns: 2,
            samples: Samples::U16(&px),
            bits_stored: None,
        };
        assert_eq!(
            palette_to_rgb(&f, &p).unwrap().data,
            vec![255, 255, 255, 1, 1, 1]
        );
    }

    #[test]
    fn bad_palettes_are_errors() {
        let d = [0u8; 6];
        let px = [0u8];
        let f = Frame {
            rows: 1,
            columns: 1,
            samples: Samples::U8(&px),
            bits_stored: None,
        };
        for (red, msg) in [
            (lut(4, 0, 16, &d), "needs 8"),
            (lut(3, 0, 12, &d), "bits per entry"),
            (lut(2, 0, 8, &d[..3]), "holds 3 bytes"),
            (lut(0, 0, 8, &d), "65536"),
        ] {
            let p = Palette {
                red,
                green: lut(3, 0, 16, &d),
                blue: lut(3, 0, 16, &d),
            };
            let e = palette_to_rgb(&f, &p).unwrap_err().to_string();
            assert!(e.contains(msg), "{e}");
        }
        let rgb = [0u8; 3];
        let f = Frame {
            rows: 1,
            columns: 1,
            samples: Samples::Rgb8(&rgb),
            bits_stored: None,
        };
        let p = Palette {
            red: lut(3, 0, 16, &d),
            green: lut(3, 0, 16, &d),
            blue: lut(3, 0, 16, &d),
        };
        assert!(palette_to_rgb(&f, &p).is_err());
    }

    #[test]
    fn ybr_full_follows_ps3_3_equations() {
        // grays stay gray; pure red's BT.601 YCbCr (76, 85, 255) comes back as (254, 0, 0)
        let data = [128u8, 128, 128, 0, 128, 128, 76, 85, 255, 255, 255, 255];
        let img = ybr_to_rgb(2, 2, &data, Ybr::Full).unwrap();
        assert_eq!(&img.data[..6], &[128, 128, 128, 0, 0, 0]);
        // R = 76 + 1.402*127 = 254.05; G = 76 + 0.344136*43 - 0.714136*127 = 0.1 → 0;
        // B = 76 + 1.772*(-43) = -0.2 → 0
        assert_eq!(&img.data[6..9], &[254, 0, 0]);
        // Y 255 with Cb = Cr = 255: R = 433 → 255, G = 255 - 43.7 - 90.7 = 120.6 → 121, B = 480 → 255
        assert_eq!(&img.data[9..], &[255, 121, 255]);
    }

    #[test]
    fn ybr_full_422_shares_chroma_per_pair() {
        let data = [10u8, 200, 128, 128, 50, 60, 128, 228];
        let img = ybr_to_rgb(2, 2, &data, Ybr::Full422).unwrap();
        // Cr 228: R = Y + 140.2, G = Y - 71.41, B = Y
        assert_eq!(
            img.data,
            vec![10, 10, 10, 200, 200, 200, 190, 0, 50, 200, 0, 60]
        );
        assert!(ybr_to_rgb(1, 3, &[0; 6], Ybr::Full422)
            .unwrap_err()
            .to_string()
            .contains("even number of columns"));
        assert_eq!(
            ybr_to_rgb(2, 2, &data[..7], Ybr::Full422),
            Err(Error::Size {
                expected: 8,
                got: 7
            })
        );
    }
}
