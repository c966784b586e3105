//! The one-pass header scan on hand-built datasets in the three syntaxes:
//! known values, sequences of defined and undefined length (nested, UN,
//! private), the tail after the last requested group, SHA-256 of slices and
//! files, and typed errors (never a panic) for every truncation.

use std::io::Write;

mod common;

use common::Enc;

use dicom_gateway_dataset::scan::Value;
use dicom_gateway_dataset::vr::Vr;
use dicom_gateway_dataset::{
    scan, scan_file, scan_reader, transcode, Error, Options, ScanOptions, Syntax,
};
use sha2::{Digest, Sha256};

const IMPL: Syntax = Syntax::ImplicitLittle;
const ELE: Syntax = Syntax::ExplicitLittle;
const EBE: Syntax = Syntax::ExplicitBig;

const SOP_CLASS: u32 = 0x0008_0016;
const SOP_INSTANCE: u32 = 0x0008_0018;
const PATIENT_NAME: u32 = 0x0010_0010;
const PATIENT_ID: u32 = 0x0010_0020;
const ROWS: u32 = 0x0028_0010;
const IMAGE_ID: u32 = 0x0054_0400;
const CHARSET: u32 = 0x0008_0005;

fn opts() -> ScanOptions {
    ScanOptions::new(&[
        SOP_CLASS,
        SOP_INSTANCE,
        PATIENT_NAME,
        PATIENT_ID,
        ROWS,
        IMAGE_ID,
    ])
}

/// A small image: charset, UIDs, a private block with a private sequence,
/// nested sequences of undefined length, patient name, rows, image id, an
/// overlay, pixel data.
fn image(s: Syntax, defined: bool) -> Vec<u8> {
    let e = Enc(s);
    let inner = e.item(
        &[
            e.text(0x0008_0100, "SH", "CODE01"),
            e.text(0x0008_0102, "SH", "DCM "),
        ]
        .concat(),
        defined,
    );
    let nested = e.sq(0x0040_A043, &[inner], defined);
    let item = e.item(
        &[e.text(0x0008_1150, "UI", "1.2.3\0"), nested].concat(),
        defined,
    );
    let private_item = e.item(&e.text(0x0029_1010, "LO", "private text"), defined);
    [
        e.text(CHARSET, "CS", "ISO_IR 100"),
        e.text(SOP_CLASS, "UI", "1.2.840.10008.5.1.4.1.1.2\0"),
        e.text(SOP_INSTANCE, "UI", "1.2.3.4.5\0"),
        e.sq(0x0008_1140, &[item.clone(), item], defined),
        e.text(0x0009_0010, "LO", "ACME 1.0"),
        e.text(0x0009_1001, "LO", "skip me!"),
        e.sq(0x0009_1002, &[private_item], defined),
        e.text(PATIENT_NAME, "PN", "M\u{fc}ller^J\u{fc}rgen "),
        e.text(PATIENT_ID, "LO", "ID7"), // odd length: kept as is
        e.us(ROWS, 2),
        e.text(IMAGE_ID, "SH", "IMG "),
        e.raw(0x6000_3000, "OW", &[1, 2, 3, 4]),
        e.raw(0x7FE0_0010, "OW", &[0, 1, 2, 3, 4, 5, 6, 7]),
    ]
    .concat()
}

fn value(values: &[Value], tag: u32) -> &[u8] {
    &values
        .iter()
        .find(|v| v.tag == tag)
        .unwrap_or_else(|| panic!("{tag:08X} missing"))
        .bytes
}

#[test]
fn known_values_in_all_syntaxes() {
    for s in Syntax::ALL {
        for defined in [true, false] {
            let data = image(s, defined);
            let r = scan(&data, s, &opts()).unwrap_or_else(|e| panic!("{s:?} {defined}: {e}"));
            assert!(r.has_pixel_data, "{s:?}");
            assert!(r.tail_error.is_none());
            assert_eq!(r.specific_character_set(), Some(&b"ISO_IR 100"[..]));
            assert_eq!(value(&r.values, SOP_CLASS), b"1.2.840.10008.5.1.4.1.1.2\0");
            assert_eq!(value(&r.values, SOP_INSTANCE), b"1.2.3.4.5\0");
            assert_eq!(
                value(&r.values, PATIENT_NAME),
                "M\u{fc}ller^J\u{fc}rgen ".as_bytes()
            );
            assert_eq!(value(&r.values, PATIENT_ID), b"ID7");
            assert_eq!(value(&r.values, IMAGE_ID), b"IMG ");
            let rows = value(&r.values, ROWS);
            assert_eq!(rows, if s.is_big() { [0, 2] } else { [2, 0] });
            // Nothing from inside sequences or private blocks.
            assert_eq!(r.values.len(), 7);
            let vr = r.get(PATIENT_NAME).unwrap();
            assert_eq!(vr.vr(), Vr::Pn);
            assert_eq!(
                vr.explicit_vr,
                if s.is_explicit() { Some(Vr::Pn) } else { None }
            );
            assert_eq!(r.sha256, <[u8; 32]>::from(Sha256::digest(&data)));
            assert_eq!(r.length, data.len() as u64);
        }
    }
}

#[test]
fn sha256_known_vector_and_hex() {
    let r = scan(b"", ELE, &opts()).unwrap();
    assert_eq!(
        r.sha256_hex(),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    assert!(!r.has_pixel_data);
    assert!(r.values.is_empty());
}

#[test]
fn agrees_with_the_transcoder() {
    // The same object converted by the transcoder scans to the same logical values.
    let src = image(ELE, false);
    for dst in Syntax::ALL {
        let mut o = Options::new(dst);
        o.src = Some(ELE);
        o.src_raw = true;
        o.file_meta = false;
        let out = transcode(&src, &o).unwrap();
        let r = scan(&out, dst, &opts()).unwrap();
        assert!(r.has_pixel_data);
        assert_eq!(value(&r.values, SOP_INSTANCE), b"1.2.3.4.5\0");
        // The transcoder pads a broken sender's odd-length value (PS3.5 7.1.1).
        assert_eq!(value(&r.values, PATIENT_ID), b"ID7 ");
    }
}

#[test]
fn file_input_equals_slice_input() {
    let dir = std::env::temp_dir().join(format!("scan-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for s in Syntax::ALL {
        // Large pixel data and a large skipped value: several buffer refills.
        let e = Enc(s);
        let mut data = image(s, false);
        let big = vec![7u8; 3 * 1024 * 1024 + 5];
        let pos = data.len() - e.raw(0x7FE0_0010, "OW", &[0; 8]).len();
        data.truncate(pos);
        data.extend(e.raw(0x5000_3000, "OB", &big));
        data.extend(e.raw(0x7FE0_0010, "OB", &big));
        let path = dir.join(format!("{}.raw", s.name()));
        std::fs::File::create(&path)
            .unwrap()
            .write_all(&data)
            .unwrap();
        let a = scan(&data, s, &opts()).unwrap();
        let b = scan_file(&path, s, &opts()).unwrap();
        assert_eq!(a.values, b.values);
        assert_eq!(a.sha256, b.sha256);
        assert_eq!(b.sha256, <[u8; 32]>::from(Sha256::digest(&data)));
        assert!(b.has_pixel_data);
        // A reader that hands out a few bytes at a time.
        struct Trickle<'a>(&'a [u8]);
        impl std::io::Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = buf.len().min(self.0.len()).min(3);
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let c = scan_reader(Trickle(&data), data.len() as u64, &path, s, &opts()).unwrap();
        assert_eq!(a.values, c.values);
        assert_eq!(a.sha256, c.sha256);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn reader_shorter_than_announced_is_an_io_error() {
    let data = image(ELE, true);
    let r = scan_reader(
        &data[..data.len() - 3],
        data.len() as u64,
        "x".as_ref(),
        ELE,
        &opts(),
    );
    assert!(matches!(r, Err(Error::Io { .. })), "{r:?}");
    let r = scan_file("/nonexistent/scan".as_ref(), ELE, &opts());
    assert!(matches!(r, Err(Error::Io { .. })));
}

#[test]
fn un_of_undefined_length_is_implicit_le_inside() {
    for s in [ELE, EBE] {
        let e = Enc(s);
        let le = Enc(IMPL);
        let item = le.item(&le.text(0x0008_0100, "SH", "CODE"), false);
        let mut un = e.header(0x0009_1010, "UN", 0xFFFF_FFFF);
        un.extend(item);
        un.extend(le.tag(0xFFFE_E0DD));
        un.extend(le.u32(0));
        let data = [
            e.text(0x0009_0010, "LO", "X "),
            un,
            e.text(SOP_INSTANCE, "UI", "9\0"),
        ]
        .concat();
        let r = scan(&data, s, &opts()).unwrap();
        assert_eq!(value(&r.values, SOP_INSTANCE), b"9\0");
        assert!(!r.has_pixel_data);
    }
}

#[test]
fn encapsulated_icon_in_an_item() {
    let e = Enc(ELE);
    let mut pix = e.header(0x7FE0_0010, "OB", 0xFFFF_FFFF);
    pix.extend(e.item(b"", true));
    pix.extend(e.item(b"frag", true));
    pix.extend(e.tag(0xFFFE_E0DD));
    pix.extend(e.u32(0));
    let icon = e.item(&[e.us(ROWS, 1), pix].concat(), false);
    let data = [
        e.sq(0x0088_0200, &[icon], false),
        e.text(0x0088_0201, "SH", "x "),
    ]
    .concat();
    // Requested groups end at 0054, so the icon is in the tail: walked, no error.
    let r = scan(&data, ELE, &opts()).unwrap();
    assert!(r.tail_error.is_none(), "{:?}", r.tail_error);
    assert!(
        !r.has_pixel_data,
        "pixel data inside an item is not top-level pixel data"
    );
    // And the same before the last requested group.
    let o = ScanOptions::new(&[0x0088_0201]);
    let r = scan(&data, ELE, &o).unwrap();
    assert_eq!(value(&r.values, 0x0088_0201), b"x ");
}

#[test]
fn tail_errors_do_not_fail_the_scan() {
    let e = Enc(ELE);
    let head = [
        e.text(SOP_INSTANCE, "UI", "1\0"),
        e.text(IMAGE_ID, "SH", "A "),
    ]
    .concat();
    // A value length past the end in group 6000.
    let mut data = head.clone();
    data.extend(e.header(0x6000_3000, "OW", 1000));
    data.extend([0; 10]);
    let r = scan(&data, ELE, &opts()).unwrap();
    assert!(
        matches!(r.tail_error, Some(Error::Truncated { .. })),
        "{:?}",
        r.tail_error
    );
    assert!(!r.has_pixel_data);
    assert_eq!(value(&r.values, IMAGE_ID), b"A ");
    assert_eq!(r.sha256, <[u8; 32]>::from(Sha256::digest(&data)));
    // Bad VR bytes in the tail.
    let mut data = head.clone();
    data.extend(b"\x00\x60\x00\x30??\x00\x00");
    let r = scan(&data, ELE, &opts()).unwrap();
    assert!(matches!(r.tail_error, Some(Error::Malformed { .. })));
    // Requested values after a higher group are not taken (as pydicom's stop).
    let data = [
        e.text(0x0060_0001, "LO", "zz"),
        e.text(IMAGE_ID, "SH", "A "),
    ]
    .concat();
    let r = scan(&data, ELE, &opts()).unwrap();
    assert!(r.get(IMAGE_ID).is_none());
    // Pixel data: only its header is read; a short value is not an error.
    let mut data = head;
    data.extend(e.header(0x7FE0_0010, "OW", 1 << 30));
    let r = scan(&data, ELE, &opts()).unwrap();
    assert!(r.has_pixel_data && r.tail_error.is_none());
}

#[test]
fn malformed_inputs_are_typed_errors() {
    let e = Enc(ELE);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "length past the end",
            b"\x08\x00\x16\x00UI\xff\xff1.21.2".to_vec(),
        ),
        ("bad VR", b"\x08\x00\x16\x00ZZ\x02\x001\x00".to_vec()),
        (
            "undefined length LO",
            [e.header(PATIENT_ID, "UT", 0xFFFF_FFFF), vec![0; 8]].concat(),
        ),
        ("item at top level", e.item(b"", true)),
        ("bad item tag", {
            let mut v = e.header(0x0008_1140, "SQ", 0xFFFF_FFFF);
            v.extend(e.text(0x0008_1150, "UI", "1\0"));
            v
        }),
        ("item past its end", {
            let mut v = e.header(0x0008_1140, "SQ", 0xFFFF_FFFF);
            v.extend(e.tag(0xFFFE_E000));
            v.extend(e.u32(0xFFFF_FFF0));
            v
        }),
        ("overflowing length", {
            let mut v = e.header(0x0008_1140, "SQ", 0xFFFF_FFFF);
            v.extend(e.tag(0xFFFE_E000));
            v.extend(e.u32(0xFFFF_FFFF));
            v.extend(e.header(0x0008_1150, "UT", 0xFFFF_FFFE));
            v
        }),
        ("no item delimiter", {
            let mut v = e.header(0x0008_1140, "SQ", 0xFFFF_FFFF);
            v.extend(e.tag(0xFFFE_E000));
            v.extend(e.u32(0xFFFF_FFFF));
            v.extend(e.text(0x0008_1150, "UI", "1\0"));
            v
        }),
        ("stray sequence delimiter in item", {
            let mut v = e.header(0x0008_1140, "SQ", 0xFFFF_FFFF);
            v.extend(e.tag(0xFFFE_E000));
            v.extend(e.u32(0xFFFF_FFFF));
            v.extend(e.tag(0xFFFE_E0DD));
            v.extend(e.u32(0));
            v
        }),
        ("three bytes", vec![8, 0, 0x16]),
    ];
    for (name, data) in cases {
        for s in [ELE, IMPL] {
            if name == "bad VR" && s == IMPL {
                continue;
            }
            match scan(&data, s, &opts()) {
                Err(Error::Truncated { .. } | Error::Malformed { .. }) => {}
                // Group FFFE sorts after the last requested group: a tail error.
                Ok(r) if name == "item at top level" && r.tail_error.is_some() => {}
                other => panic!("{name} ({s:?}): {other:?}"),
            }
        }
    }
}

#[test]
fn deep_nesting_is_refused() {
    let e = Enc(IMPL);
    let mut inner = e.text(0x0008_0100, "SH", "X ");
    for _ in 0..200 {
        inner = e.sq(0x0008_1140, &[e.item(&inner, false)], false);
    }
    match scan(&inner, IMPL, &opts()) {
        Err(Error::Malformed { reason, .. }) => assert!(reason.contains("nested"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn oversized_values_are_not_read() {
    let e = Enc(ELE);
    let data = [
        e.text(SOP_INSTANCE, "UI", "1\0"),
        e.raw(PATIENT_NAME, "UC", &vec![b'A'; 5000]),
    ]
    .concat();
    let mut o = opts();
    o.max_value = 4096;
    let r = scan(&data, ELE, &o).unwrap();
    assert_eq!(r.oversized, vec![PATIENT_NAME]);
    assert!(r.get(PATIENT_NAME).is_none());
    assert_eq!(value(&r.values, SOP_INSTANCE), b"1\0");
}

#[test]
fn truncation_at_every_offset_is_an_error_or_a_prefix() {
    for s in Syntax::ALL {
        for defined in [true, false] {
            let data = image(s, defined);
            let full = scan(&data, s, &opts()).unwrap();
            // Offsets where an element of the top level ends: a truncation
            // there is a valid (shorter) dataset.
            for cut in 0..data.len() {
                let part = &data[..cut];
                let r = std::panic::catch_unwind(|| scan(part, s, &opts()))
                    .unwrap_or_else(|_| panic!("panic at {cut} ({s:?})"));
                match r {
                    Err(Error::Truncated { .. } | Error::Malformed { .. }) => {}
                    Err(e) => panic!("{s:?} cut {cut}: unexpected error {e}"),
                    Ok(r) => {
                        // Only at an element boundary, and then a prefix of the values.
                        assert!(
                            r.values.iter().all(|v| full.values.contains(v))
                                || r.tail_error.is_some(),
                            "{s:?} cut {cut}"
                        );
                        assert_eq!(r.sha256, <[u8; 32]>::from(Sha256::digest(part)));
                    }
                }
            }
            // Same through the file reader for a few offsets.
            let dir = std::env::temp_dir().join(format!("scan-trunc-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join("t.raw");
            for cut in (0..data.len()).step_by(7) {
                std::fs::write(&path, &data[..cut]).unwrap();
                let a = scan(&data[..cut], s, &opts());
                let b = scan_file(&path, s, &opts());
                assert_eq!(a.is_ok(), b.is_ok(), "{s:?} cut {cut}");
                if let (Ok(a), Ok(b)) = (a, b) {
                    assert_eq!(a.values, b.values);
                    assert_eq!(a.sha256, b.sha256);
                }
            }
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
}

#[test]
fn truncation_inside_the_header_region_is_an_error() {
    // Every cut strictly inside an element up to (0054,0400) fails.
    for s in Syntax::ALL {
        let data = image(s, false);
        let e = Enc(s);
        // Offset where group 6000 starts.
        let tail = data.len()
            - e.raw(0x6000_3000, "OW", &[0; 4]).len()
            - e.raw(0x7FE0_0010, "OW", &[0; 8]).len();
        let mut boundaries = vec![0usize];
        let mut r = 0;
        for el in [
            e.text(CHARSET, "CS", "ISO_IR 100").len(),
            e.text(SOP_CLASS, "UI", "1.2.840.10008.5.1.4.1.1.2\0").len(),
            e.text(SOP_INSTANCE, "UI", "1.2.3.4.5\0").len(),
        ] {
            r += el;
            boundaries.push(r);
        }
        for cut in 1..tail {
            if boundaries.contains(&cut) {
                continue;
            }
            // Between boundaries we only know the first three; beyond them the
            // cut is an error unless it lands on a later boundary, where the
            // values found must be a prefix.
            match scan(&data[..cut], s, &opts()) {
                Err(_) => {}
                Ok(r) => assert!(
                    cut > boundaries[3] && r.values.len() >= 3,
                    "{s:?} cut {cut}"
                ),
            }
        }
    }
}
