//! Properties: arbitrary frames and sheets never panic, and sizes are what was asked.

use dicom_gateway_imaging::*;
use proptest::prelude::*;

proptest! {
    #[test]
    fn render_any_frame(rows in 1usize..12, cols in 1usize..12, kind in 0u8..4, data in proptest::collection::vec(any::<u8>(), 0..600),
                        slope in -4.0f64..4.0, icpt in -2000.0f64..2000.0, win in proptest::option::of((-3000.0f64..3000.0, 0.5f64..5000.0)),
                        bits in proptest::option::of(0u8..18), mono1: bool, reverse: bool) {
        let samples = match kind { 0 => Samples::U8(&data), 1 => Samples::U16(&data), 2 => Samples::I16(&data), _ => Samples::Rgb8(&data) };
        let window = win.map(|(c, w)| Window::Explicit { center: c, width: w }).unwrap_or(Window::MinMax);
        let f = Frame { rows, columns: cols, samples, bits_stored: bits };
        let p = GrayParams { rescale_slope: slope, rescale_intercept: icpt, window, monochrome1: mono1, reverse };
        if let Ok(img) = display(&f, &p) {
            prop_assert_eq!(img.data.len(), rows * cols * img.channels);
        }
    }

    #[test]
    fn compose_any_sheet(w in 1usize..80, h in 1usize..80, c in 1usize..5, r in 1usize..5, border in 0usize..6,
                         n in 0usize..8, iw in 1usize..20, ih in 1usize..20, ch in prop_oneof![Just(1usize), Just(3usize)],
                         m in 0u8..4, rgb_sheet: bool) {
        let mag = [Magnification::Replicate, Magnification::Bilinear, Magnification::Cubic, Magnification::None][m as usize];
        let img = Image::filled(iw, ih, ch, 128).unwrap();
        let images: Vec<Option<Image>> = (0..n).map(|i| if i % 3 == 2 { None } else { Some(img.clone()) }).collect();
        let sheet = Sheet { width: w, height: h, channels: if rgb_sheet { 3 } else { 1 }, format: format!("STANDARD\\{c},{r}"),
                            border, border_value: 0, empty_value: 255, magnification: mag };
        if let Ok(out) = compose(&images, &sheet) {
            prop_assert_eq!(out.data.len(), w * h * sheet.channels);
            prop_assert!(n <= c * r);
        }
    }
}

proptest! {
    #[test]
    fn render_any_colour_overlay_rotation(rows in 1usize..10, cols in 1usize..10, kind in 0u8..4,
                                          data in proptest::collection::vec(any::<u8>(), 0..400),
                                          lut in proptest::collection::vec(any::<u8>(), 0..40),
                                          entries in 0u32..24, first in -20i32..20, bits in prop_oneof![Just(8u8), Just(16u8), Just(12u8)],
                                          ov in proptest::collection::vec((0usize..12, 0usize..12, -12i64..12, -12i64..12,
                                                                          prop_oneof![Just(1u8), Just(8u8), Just(16u8), Just(4u8)], 0u8..17, 0usize..40), 0..3),
                                          rotation in prop_oneof![Just(0u32), Just(90u32), Just(180u32), Just(270u32), Just(45u32)],
                                          reverse: bool) {
        let l = PaletteLut { entries, first_mapped: first, bits, data: &lut };
        let palette = Palette { red: l, green: l, blue: l };
        let frame = |samples| Frame { rows, columns: cols, samples, bits_stored: None };
        let src = match kind {
            0 => Source::Palette(frame(Samples::U8(&data)), palette),
            1 => Source::Palette(frame(Samples::I16(&data)), palette),
            2 => Source::Ybr { rows, columns: cols, data: &data, kind: Ybr::Full },
            _ => Source::Ybr { rows, columns: cols, data: &data, kind: Ybr::Full422 },
        };
        let overlays: Vec<Overlay<'_>> = ov.iter().map(|&(r, c, orow, ocol, ba, bp, first_pixel)| Overlay {
            rows: r, columns: c, origin_row: orow, origin_column: ocol, bits_allocated: ba, bit_position: bp,
            data: &data, first_pixel }).collect();
        let p = GrayParams { reverse, ..Default::default() };
        if let Ok(img) = render(&src, &p, &overlays, rotation) {
            prop_assert_eq!(img.data.len(), rows * cols * 3);
            let (w, h) = if rotation % 180 == 90 { (rows, cols) } else { (cols, rows) };
            prop_assert_eq!((img.width, img.height), (w, h));
        }
    }
}
