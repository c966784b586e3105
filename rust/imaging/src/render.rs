//! One stored frame to the 8-bit image that goes into its box, in the order a print
//! formatter applies the viewing transformations (seed 003 Appendix B; PS3.4 N.2 for the
//! softcopy equivalent): pixels → display values (grayscale Modality/VOI, RGB, palette or
//! YBR to RGB) → overlays burned in → polarity → rotation.

use crate::color::{palette_to_rgb, ybr_to_rgb, Palette, Ybr};
use crate::display::display;
use crate::overlay::{burn_overlays, rotate, Overlay};
use crate::{Error, Frame, GrayParams, Image};

/// What a frame's pixels are.
#[derive(Clone, Copy, Debug)]
pub enum Source<'a> {
    /// MONOCHROME1/2 or RGB samples, through [`display`].
    Display(Frame<'a>),
    /// PALETTE COLOR: indices in the frame, mapped through the palette.
    Palette(Frame<'a>, Palette<'a>),
    /// YBR_FULL / YBR_FULL_422, 8 bits, interleaved.
    Ybr {
        rows: usize,
        columns: usize,
        data: &'a [u8],
        kind: Ybr,
    },
}

/// The value overlay pixels are burned in with: white (PS3.3 C.9.2 leaves the display value
/// to the application; white before polarity is what viewers show, and REVERSE then inverts it
/// with the rest of the film, as a printer inverting the film would).
pub const OVERLAY_VALUE: u8 = 255;

/// Render a frame: display values, `overlays` burned in (white), `params.reverse` applied
/// after the overlays, then rotated clockwise by `rotation` degrees (0, 90, 180, 270).
pub fn render(
    src: &Source<'_>,
    params: &GrayParams,
    overlays: &[Overlay<'_>],
    rotation: u32,
) -> Result<Image, Error> {
    if !matches!(rotation, 0 | 90 | 180 | 270) {
        return Err(Error::Invalid(format!(
            "rotation {rotation}: expected 0, 90, 180 or 270 degrees"
        )));
    }
    let unreversed = GrayParams {
        reverse: false,
        ..*params
    };
    let mut img = match src {
        Source::Display(frame) => display(frame, &unreversed)?,
        Source::Palette(frame, palette) => palette_to_rgb(frame, palette)?,
        Source::Ybr {
            rows,
            columns,
            data,
            kind,
        } => ybr_to_rgb(*rows, *columns, data, *kind)?,
    };
    burn_overlays(&mut img, overlays, OVERLAY_VALUE)?;
    if params.reverse {
        img.data.iter_mut().for_each(|v| *v = 255 - *v);
    }
    rotate(img, rotation)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Samples;

    #[test]
    fn overlay_then_reverse_then_rotate() {
        let px = [0u8, 100, 200, 255];
        let frame = Frame {
            rows: 2,
            columns: 2,
            samples: Samples::U8(&px),
            bits_stored: None,
        };
        let bits = [0b0000_0001u8]; // top-left pixel
        let ov = Overlay {
            rows: 1,
            columns: 1,
            origin_row: 1,
            origin_column: 1,
            bits_allocated: 1,
            bit_position: 0,
            data: &bits,
            first_pixel: 0,
        };
        let p = GrayParams {
            reverse: true,
            ..Default::default()
        };
        let img = render(&Source::Display(frame), &p, &[ov], 90).unwrap();
        // min/max: 0 100 200 255 → overlay 255 at (0,0) → reversed 0 155 55 0 → rotated
        // clockwise: [55, 0, 0, 155]
        assert_eq!(img.data, vec![55, 0, 0, 155]);
        // the same without overlays and rotation equals display() with reverse
        let plain = render(&Source::Display(frame), &p, &[], 0).unwrap();
        assert_eq!(plain, display(&frame, &p).unwrap());
        assert!(render(&Source::Display(frame), &p, &[], 45).is_err());
    }

    #[test]
    fn colour_sources() {
        let ybr = [128u8, 128, 128];
        let src = Source::Ybr {
            rows: 1,
            columns: 1,
            data: &ybr,
            kind: Ybr::Full,
        };
        let img = render(&src, &GrayParams::default(), &[], 180).unwrap();
        assert_eq!((img.channels, img.data.clone()), (3, vec![128, 128, 128]));
    }
}
