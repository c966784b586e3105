//! Arbitrary frame headers, pixels, display formats and sheet parameters through
//! display → compose, and (same input) palette / YBR frames with overlays and rotation
//! through render: every input gives an image of the asked size or an Error, never a panic.
#![no_main]

use dicom_gateway_imaging::*;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 16 {
        return;
    }
    let (head, rest) = data.split_at(16);
    let rows = 1 + head[0] as usize % 64;
    let cols = 1 + head[1] as usize % 64;
    let samples = match head[2] % 4 {
        0 => Samples::U8(rest),
        1 => Samples::U16(rest),
        2 => Samples::I16(rest),
        _ => Samples::Rgb8(rest),
    };
    let bits = if head[3] & 0x80 != 0 {
        Some(head[3] & 0x1F)
    } else {
        None
    };
    let window = if head[4] & 1 == 1 {
        Window::Explicit {
            center: i16::from_le_bytes([head[5], head[6]]) as f64,
            width: u16::from_le_bytes([head[7], head[8]]) as f64 / 4.0,
        }
    } else {
        Window::MinMax
    };
    let params = GrayParams {
        rescale_slope: (head[9] as i8) as f64 / 16.0,
        rescale_intercept: (head[10] as i8) as f64 * 8.0,
        window,
        monochrome1: head[4] & 2 != 0,
        reverse: head[4] & 4 != 0,
    };
    let frame = Frame {
        rows,
        columns: cols,
        samples,
        bits_stored: bits,
    };
    colour_overlay_rotation(head, rest, rows, cols, &params);
    let Ok(img) = display(&frame, &params) else {
        return;
    };
    assert_eq!(img.data.len(), rows * cols * img.channels);
    let formats = [
        "STANDARD\\1,1",
        "STANDARD\\2,3",
        "ROW\\1,2,3",
        "COL\\3,1",
        "STANDARD\\7,1",
        "SLIDE",
        "STANDARD\\0,2",
    ];
    let format = formats[head[11] as usize % formats.len()];
    let mag = [
        Magnification::Replicate,
        Magnification::Bilinear,
        Magnification::Cubic,
        Magnification::None,
    ][head[12] as usize % 4];
    let sheet = Sheet {
        width: 1 + head[13] as usize,
        height: 1 + head[14] as usize,
        channels: if head[15] & 1 == 1 { 3 } else { 1 },
        format: format.into(),
        border: (head[15] >> 1) as usize % 9,
        border_value: head[5],
        empty_value: head[6],
        magnification: mag,
    };
    let n = (head[15] >> 5) as usize;
    let images: Vec<Option<Image>> = (0..n)
        .map(|i| if i == 1 { None } else { Some(img.clone()) })
        .collect();
    if let Ok(out) = compose(&images, &sheet) {
        assert_eq!(out.data.len(), sheet.width * sheet.height * sheet.channels);
    }
});

/// Palette (LUT descriptor and data from the input) and YBR frames, overlays read from the
/// same bytes at fuzzed origins, sizes, bit depths and positions, then rotation.
fn colour_overlay_rotation(head: &[u8], rest: &[u8], rows: usize, cols: usize, params: &GrayParams) {
    let split = (head[13] as usize).min(rest.len());
    let (lut, px) = rest.split_at(split);
    let l = PaletteLut {
        entries: u16::from_le_bytes([head[5], head[6]]) as u32 % 300,
        first_mapped: head[7] as i8 as i32,
        bits: [8, 16, 12][head[8] as usize % 3],
        data: lut,
    };
    let palette = Palette {
        red: l,
        green: l,
        blue: PaletteLut { data: &lut[..lut.len() / 2], ..l },
    };
    let frame = |samples| Frame {
        rows,
        columns: cols,
        samples,
        bits_stored: None,
    };
    let src = match head[12] % 5 {
        0 => Source::Palette(frame(Samples::U8(px)), palette),
        1 => Source::Palette(frame(Samples::U16(px)), palette),
        2 => Source::Palette(frame(Samples::I16(px)), palette),
        3 => Source::Ybr { rows, columns: cols, data: px, kind: Ybr::Full },
        _ => Source::Ybr { rows, columns: cols, data: px, kind: Ybr::Full422 },
    };
    let overlays: Vec<Overlay<'_>> = (0..(head[14] % 3) as usize)
        .map(|i| Overlay {
            rows: (head[9] as usize >> i) % 80,
            columns: (head[10] as usize >> i) % 80,
            origin_row: head[11] as i8 as i64,
            origin_column: head[15] as i8 as i64 - i as i64,
            bits_allocated: [1, 8, 16, 2][(head[3] >> (2 * i)) as usize % 4],
            bit_position: head[4] >> 3,
            data: rest,
            first_pixel: head[2] as usize * i,
        })
        .collect();
    let rotation = [0, 90, 180, 270, 1][head[0] as usize % 5];
    if let Ok(img) = render(&src, params, &overlays, rotation) {
        assert_eq!(img.data.len(), rows * cols * 3);
        assert_eq!(img.width * img.height, rows * cols);
    }
    // grayscale through render with overlays too (the print path's order)
    let mono = Source::Display(frame(Samples::U16(px)));
    if let Ok(img) = render(&mono, params, &overlays, rotation) {
        assert_eq!(img.data.len(), rows * cols);
    }
}
