//! Walker and swapper tests on hand-built datasets, including odd inputs.

mod common;

use common::Enc;
use dicom_gateway_dataset::{transcode, transcode_file, Error, Options, Syntax};

const IMPL: Syntax = Syntax::ImplicitLittle;
const ELE: Syntax = Syntax::ExplicitLittle;
const EBE: Syntax = Syntax::ExplicitBig;

fn raw(src: Syntax, dst: Syntax) -> Options {
    let mut o = Options::new(dst);
    o.src = Some(src);
    o.file_meta = false;
    o
}

fn conv(input: &[u8], src: Syntax, dst: Syntax) -> Vec<u8> {
    transcode(input, &raw(src, dst)).unwrap_or_else(|e| panic!("{src:?} -> {dst:?}: {e}"))
}

/// A dataset exercising numbers, text, AT, OB/OW pixel data, nested sequences.
fn sample(e: &Enc, defined: bool) -> Vec<u8> {
    let inner_item = [
        e.text(0x0008_0100, "SH", "CODE"),
        e.el(0x0018_1060, "DS", b"1.5 ", 0),
    ]
    .concat();
    let nested = e.sq(
        0x0040_A730,
        &[e.item(&inner_item, defined), e.item(&[], defined)],
        defined,
    );
    let item = [e.text(0x0008_1150, "UI", "1.2.3\0"), nested].concat();
    [
        e.text(0x0008_0016, "UI", "1.2.840.10008.5.1.4.1.1.2\0"),
        e.text(0x0008_0018, "UI", "1.2.3.4\0"),
        e.sq(0x0008_1140, &[e.item(&item, defined)], defined),
        e.text(0x0010_0010, "PN", "Doe^John"),
        e.el(0x0010_1030, "DS", b"", 0),   // zero-length value
        e.el(0x0018_1150, "IS", b"7 ", 0), // odd input: see odd_length_text_is_padded_with_a_space
        e.sq(0x0018_9346, &[], defined),   // empty sequence
        e.el(
            0x0018_9087,
            "FD",
            &[1.5f64.to_le_bytes(), (-2.25f64).to_le_bytes()].concat(),
            8,
        ),
        e.us(0x0028_0002, 1),
        e.us(0x0028_0010, 2),
        e.us(0x0028_0011, 2),
        e.us(0x0028_0100, 16),
        e.us(0x0028_0101, 12),
        e.us(0x0028_0103, 1),
        e.el(0x0028_0106, "SS", &(-5i16).to_le_bytes(), 2),
        e.el(0x0028_1052, "DS", b"-1024 ", 0),
        e.el(0x0028_9001, "UL", &7u32.to_le_bytes(), 4),
        e.el(0x0020_9165, "AT", &[0x28, 0x00, 0x10, 0x00], 2),
        e.el(0x7FE0_0010, "OW", &[1, 2, 3, 4, 5, 6, 7, 8], 2),
    ]
    .concat()
}

#[test]
fn all_directions_match_the_encoder() {
    for defined in [true, false] {
        for s in Syntax::ALL {
            for d in Syntax::ALL {
                let input = sample(&Enc(s), defined);
                let out = conv(&input, s, d);
                assert_eq!(
                    out,
                    sample(&Enc(d), defined),
                    "{s:?} -> {d:?} defined={defined}"
                );
            }
        }
    }
}

#[test]
fn undefined_sequences_inside_undefined_items() {
    for s in Syntax::ALL {
        let e = Enc(s);
        let deepest = e.sq(0x0008_1115, &[e.item(&e.us(0x0028_0010, 3), false)], false);
        let mid = e.sq(
            0x0008_1140,
            &[e.item(&deepest, false), e.item(&[], false)],
            false,
        );
        let top = e.sq(0x0040_0275, &[e.item(&mid, false)], false);
        for d in Syntax::ALL {
            let e2 = Enc(d);
            let deepest2 = e2.sq(
                0x0008_1115,
                &[e2.item(&e2.us(0x0028_0010, 3), false)],
                false,
            );
            let mid2 = e2.sq(
                0x0008_1140,
                &[e2.item(&deepest2, false), e2.item(&[], false)],
                false,
            );
            let top2 = e2.sq(0x0040_0275, &[e2.item(&mid2, false)], false);
            assert_eq!(conv(&top, s, d), top2);
        }
    }
}

#[test]
fn empty_sequences_and_zero_length_values() {
    for s in Syntax::ALL {
        let e = Enc(s);
        let input = [
            e.sq(0x0008_1140, &[], true),
            e.sq(0x0008_1115, &[], false),
            e.el(0x0010_0020, "LO", b"", 0),
        ]
        .concat();
        for d in Syntax::ALL {
            let e2 = Enc(d);
            let expect = [
                e2.sq(0x0008_1140, &[], true),
                e2.sq(0x0008_1115, &[], false),
                e2.el(0x0010_0020, "LO", b"", 0),
            ]
            .concat();
            assert_eq!(conv(&input, s, d), expect);
        }
    }
}

#[test]
fn odd_length_binary_value_does_not_panic() {
    let e = Enc(ELE);
    let input = e.el(0x0028_0010, "US", &[1, 2, 3], 0);
    let out = conv(&input, ELE, EBE);
    // two bytes swapped, the stray third byte kept, then padded to even
    // length (PS3.5 7.1.1) with the length in the header to match
    assert_eq!(&out[6..8], &[0, 4]);
    assert_eq!(&out[8..], &[2, 1, 3, 0]);
}

#[test]
fn odd_length_text_is_padded_with_a_space() {
    let e = Enc(ELE);
    let input = e.raw(0x0010_0020, "LO", b"ID7");
    for dst in [ELE, EBE, IMPL] {
        let out = conv(&input, ELE, dst);
        assert!(out.ends_with(b"ID7 "), "{dst:?}: {out:?}");
    }
}

#[test]
fn thirty_two_bit_ow_pixel_data_swaps_in_16_bit_words() {
    // PS3.5 Table 6.2-1 / 8.2: OW is 16-bit words whatever Bits Allocated is
    // (DCMTK dcmconv +tb does the same); issue 15 item 5.
    let le = Enc(ELE);
    let pixels = [1u8, 2, 3, 4, 5, 6, 7, 8];
    let input = [le.us(0x0028_0100, 32), le.raw(0x7FE0_0010, "OW", &pixels)].concat();
    let out = conv(&input, ELE, EBE);
    let be = Enc(EBE);
    let want = [
        be.us(0x0028_0100, 32),
        be.raw(0x7FE0_0010, "OW", &[2, 1, 4, 3, 6, 5, 8, 7]),
    ]
    .concat();
    assert_eq!(out, want);
    assert_eq!(conv(&out, EBE, ELE), input); // and back
    let input64 = [le.us(0x0028_0100, 64), le.raw(0x7FE0_0010, "OW", &pixels)].concat();
    assert!(conv(&input64, ELE, EBE).ends_with(&[2, 1, 4, 3, 6, 5, 8, 7]));
}

#[test]
fn explicit_un_of_undefined_length_is_an_implicit_sequence() {
    // PS3.5 6.2.2: the content of UN with undefined length is implicit VR LE.
    let imp = Enc(IMPL);
    let content = [imp.item(&imp.us(0x0028_0010, 0x0102), false)].concat();
    for s in [ELE, EBE] {
        let e = Enc(s);
        let mut input = e.header(0x0009_1010, "UN", 0xFFFF_FFFF);
        input.extend(&content);
        input.extend(imp.tag(0xFFFE_E0DD));
        input.extend([0, 0, 0, 0]);
        for d in Syntax::ALL {
            let e2 = Enc(d);
            let expect = e2.sq(
                0x0009_1010,
                &[e2.item(&e2.us(0x0028_0010, 0x0102), false)],
                false,
            );
            assert_eq!(conv(&input, s, d), expect, "{s:?} -> {d:?}");
        }
    }
}

#[test]
fn explicit_un_of_defined_length_is_never_swapped() {
    let e = Enc(ELE);
    let input = e.el(0x0033_101E, "UN", &[1, 2, 3, 4, 5, 6, 7, 8], 0);
    let be = conv(&input, ELE, EBE);
    assert_eq!(&be[12..], &[1, 2, 3, 4, 5, 6, 7, 8]);
    let imp = conv(&be, EBE, IMPL);
    assert_eq!(&imp[8..], &[1, 2, 3, 4, 5, 6, 7, 8]);
}

const GENIE: &str = "GEMS_GENIE_2";
const PHILIPS: &str = "Philips PET Private Group";

#[test]
fn private_creator_blocks_reused_across_groups() {
    // Block 0x10 is GENIE in group 0033 and Philips in 7053; block 0x11 in 0033
    // is someone unknown. Items have their own creators.
    let build = |e: &Enc, unknown_vr: &str| {
        let item = [
            e.text(0x0033_0010, "LO", "SOMEONE ELSE"),
            e.el(0x0033_101E, unknown_vr, &1.0f64.to_le_bytes(), 8),
        ]
        .concat();
        [
            e.text(0x0033_0010, "LO", GENIE),
            e.text(0x0033_0011, "LO", "UNKNOWN CO"),
            e.el(0x0033_101E, "FD", &2.0f64.to_le_bytes(), 8),
            e.el(
                0x0033_1110,
                "UL",
                &9u32.to_le_bytes(),
                if unknown_vr == "UN" { 0 } else { 4 },
            ),
            e.sq(0x0055_1064, &[e.item(&item, true)], true),
            e.text(0x0055_0010, "LO", GENIE),
            e.text(0x7053_0010, "LO", &format!("{PHILIPS}\0")),
            e.text(0x7053_1000, "DS", "0.5 "),
        ]
        .concat()
    };
    // (0055,1064) precedes its creator (0055,0010) above, so it is unknown
    // in implicit VR: it must become UN there. Build the implicit input and
    // check the explicit output element by element.
    let imp = Enc(IMPL);
    let input = build(&imp, "UN");
    let out = conv(&input, IMPL, ELE);
    let e = Enc(ELE);
    let expect = [
        e.text(0x0033_0010, "LO", GENIE),
        e.text(0x0033_0011, "LO", "UNKNOWN CO"),
        e.el(0x0033_101E, "FD", &2.0f64.to_le_bytes(), 8),
        e.el(0x0033_1110, "UN", &9u32.to_le_bytes(), 0),
        {
            let item = [
                imp.text(0x0033_0010, "LO", "SOMEONE ELSE"),
                imp.el(0x0033_101E, "UN", &1.0f64.to_le_bytes(), 0),
            ]
            .concat();
            let v = imp.item(&item, true);
            e.el(0x0055_1064, "UN", &v, 0)
        },
        e.text(0x0055_0010, "LO", GENIE),
        e.text(0x7053_0010, "LO", &format!("{PHILIPS}\0")),
        e.text(0x7053_1000, "DS", "0.5 "),
    ]
    .concat();
    assert_eq!(out, expect);
}

#[test]
fn private_sequence_items_use_their_own_creator() {
    let imp = Enc(IMPL);
    let item = [
        imp.text(0x0033_0010, "LO", GENIE),
        imp.el(0x0033_101E, "FD", &1.0f64.to_le_bytes(), 8),
    ]
    .concat();
    let input = [
        imp.text(0x0055_0010, "LO", GENIE),
        imp.sq(0x0055_1064, &[imp.item(&item, true)], true),
    ]
    .concat();
    let be = Enc(EBE);
    let item2 = [
        be.text(0x0033_0010, "LO", GENIE),
        be.el(0x0033_101E, "FD", &1.0f64.to_le_bytes(), 8),
    ]
    .concat();
    let expect = [
        be.text(0x0055_0010, "LO", GENIE),
        be.sq(0x0055_1064, &[be.item(&item2, true)], true),
    ]
    .concat();
    assert_eq!(conv(&input, IMPL, EBE), expect);
    assert_eq!(conv(&expect, EBE, IMPL), input);
}

#[test]
fn long_private_fd_becomes_little_endian_un() {
    // DAT-2: 9000 doubles do not fit a 16-bit length.
    let values: Vec<u8> = (0..9000u32)
        .flat_map(|i| (i as f64 * 0.5).to_le_bytes())
        .collect();
    let imp = Enc(IMPL);
    let input = [
        imp.text(0x0033_0010, "LO", GENIE),
        imp.el(0x0033_101E, "FD", &values, 8),
    ]
    .concat();
    for d in [ELE, EBE] {
        let e = Enc(d);
        let expect = [
            e.text(0x0033_0010, "LO", GENIE),
            e.el(0x0033_101E, "UN", &values, 0),
        ]
        .concat();
        let out = conv(&input, IMPL, d);
        assert_eq!(out, expect, "{d:?}");
        assert_eq!(conv(&out, d, IMPL), input, "back from {d:?}");
    }
}

#[test]
fn curve_data_swapped_by_data_value_representation() {
    let values: Vec<u8> = [1.0f64, 2.5, -3.0]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    let build = |e: &Enc| {
        let mut cd = values.clone();
        if e.0.is_big() {
            cd.chunks_exact_mut(8).for_each(|c| c.reverse());
        }
        [e.us(0x5002_0103, 3), e.el(0x5002_3000, "OB", &cd, 0)].concat()
    };
    for s in Syntax::ALL {
        for d in Syntax::ALL {
            assert_eq!(
                conv(&build(&Enc(s)), s, d),
                build(&Enc(d)),
                "{s:?} -> {d:?}"
            );
        }
    }
}

#[test]
fn eight_bit_pixel_data_is_ob_from_implicit() {
    let imp = Enc(IMPL);
    let input = [
        imp.us(0x0028_0100, 8),
        imp.el(0x7FE0_0010, "OW", &[1, 2, 3, 4], 0),
    ]
    .concat();
    let be = Enc(EBE);
    assert_eq!(
        conv(&input, IMPL, EBE),
        [
            be.us(0x0028_0100, 8),
            be.el(0x7FE0_0010, "OB", &[1, 2, 3, 4], 0)
        ]
        .concat()
    );
}

#[test]
fn overlay_data_is_ow_from_implicit_and_swapped() {
    let imp = Enc(IMPL);
    let input = imp.el(0x6002_3000, "OW", &[1, 2, 3, 4], 0);
    assert_eq!(
        conv(&input, IMPL, EBE),
        Enc(EBE).el(0x6002_3000, "OW", &[1, 2, 3, 4], 2)
    );
}

#[test]
fn group_lengths_are_recomputed() {
    let build = |e: &Enc| {
        let rest = [
            e.text(0x0010_0010, "PN", "A^B "),
            e.sq(
                0x0010_1002,
                &[e.item(&e.text(0x0010_0020, "LO", "ID"), true)],
                true,
            ),
        ]
        .concat();
        [
            e.el(0x0010_0000, "UL", &(rest.len() as u32).to_le_bytes(), 4),
            rest,
            e.us(0x0028_0010, 1),
        ]
        .concat()
    };
    for s in Syntax::ALL {
        for d in Syntax::ALL {
            assert_eq!(
                conv(&build(&Enc(s)), s, d),
                build(&Enc(d)),
                "{s:?} -> {d:?}"
            );
        }
    }
    // a wrong group length in the input is corrected
    let e = Enc(ELE);
    let mut bad = build(&e);
    bad[8] = 0xFF;
    assert_eq!(conv(&bad, ELE, ELE), build(&e));
}

#[test]
fn encapsulated_pixel_data_passes_between_little_endian_only() {
    let e = Enc(ELE);
    let mut input = e.header(0x7FE0_0010, "OB", 0xFFFF_FFFF);
    input.extend(e.tag(0xFFFE_E000));
    input.extend(0u32.to_le_bytes());
    input.extend(e.tag(0xFFFE_E000));
    input.extend(4u32.to_le_bytes());
    input.extend([0xFF, 0xD8, 0xFF, 0xD9]);
    input.extend(e.tag(0xFFFE_E0DD));
    input.extend(0u32.to_le_bytes());
    let imp = conv(&input, ELE, IMPL);
    assert_eq!(&imp[4..8], &[0xFF; 4]);
    assert_eq!(&imp[8..], &input[12..]);
    assert_eq!(conv(&imp, IMPL, ELE), input);
    let err = transcode(&input, &raw(ELE, EBE)).unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err}");
    assert!(err.to_string().contains("Big Endian"), "{err}");
}

fn with_meta(ts: &str, dataset: &[u8]) -> Vec<u8> {
    let le = Enc(ELE);
    let mut ts_v = ts.as_bytes().to_vec();
    if ts_v.len() % 2 == 1 {
        ts_v.push(0);
    }
    let body = [
        le.el(0x0002_0001, "OB", &[0, 1], 0),
        le.text(0x0002_0002, "UI", "1.2.840.10008.5.1.4.1.1.2\0"),
        le.text(0x0002_0003, "UI", "1.2.3.4\0"),
        le.el(0x0002_0010, "UI", &ts_v, 0),
        le.text(0x0002_0012, "UI", "1.2.3.4.5.6\0"),
        le.text(0x0002_0016, "AE", "SENDER"),
    ]
    .concat();
    let mut out = vec![0u8; 128];
    out.extend(b"DICM");
    out.extend(le.el(0x0002_0000, "UL", &(body.len() as u32).to_le_bytes(), 4));
    out.extend(body);
    out.extend(dataset);
    out
}

#[test]
fn file_meta_is_rewritten_and_kept() {
    let input = with_meta("1.2.840.10008.1.2", &sample(&Enc(IMPL), true));
    let mut o = Options::new(EBE);
    o.implementation_class_uid = "9.8.7".into();
    o.implementation_version_name = "TEST".into();
    let out = transcode(&input, &o).unwrap();
    assert_eq!(&out[128..132], b"DICM");
    let s = String::from_utf8_lossy(&out[132..400]).into_owned();
    assert!(s.contains("1.2.840.10008.1.2.2"), "{s}");
    assert!(
        s.contains("9.8.7") && s.contains("TEST") && s.contains("SENDER") && s.contains("1.2.3.4"),
        "{s}"
    );
    let meta_len = u32::from_le_bytes(out[140..144].try_into().unwrap()) as usize;
    assert_eq!(&out[144 + meta_len..], &sample(&Enc(EBE), true)[..]);
    // raw output for the network
    o.file_meta = false;
    assert_eq!(transcode(&input, &o).unwrap(), sample(&Enc(EBE), true));
    // raw input, meta output: SOP class/instance come from the dataset
    let mut o2 = Options::new(ELE);
    o2.src = Some(IMPL);
    let out2 = transcode(&sample(&Enc(IMPL), true), &o2).unwrap();
    let s2 = String::from_utf8_lossy(&out2[132..300]).into_owned();
    assert!(
        s2.contains("1.2.840.10008.5.1.4.1.1.2") && s2.contains("1.2.3.4"),
        "{s2}"
    );
}

#[test]
fn missing_file_meta_needs_a_source_syntax() {
    let input = sample(&Enc(IMPL), true);
    let err = transcode(&input, &Options::new(ELE)).unwrap_err();
    assert!(matches!(err, Error::NoSourceSyntax), "{err}");
}

#[test]
fn truncated_in_the_middle_of_an_element_is_an_error() {
    let e = Enc(ELE);
    let input = [
        e.text(0x0010_0010, "PN", "Doe^John"),
        e.el(0x7FE0_0010, "OW", &[0u8; 64], 2),
    ]
    .concat();
    let cut = &input[..input.len() - 10];
    let err = transcode(cut, &raw(ELE, EBE)).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Truncated { .. }), "{msg}");
    assert!(
        msg.contains("(7FE0,0010)") && msg.contains("offset 16"),
        "{msg}"
    );
}

#[test]
fn every_prefix_and_corruption_is_an_error_not_a_panic() {
    for s in Syntax::ALL {
        let full = with_meta(s.uid(), &sample(&Enc(s), false));
        for n in 0..full.len() {
            for d in Syntax::ALL {
                let _ = transcode(&full[..n], &Options::new(d));
                let _ = transcode(&full[..n], &raw(s, d));
            }
        }
        // flip each byte of the dataset in turn
        for i in 132..full.len() {
            let mut bad = full.clone();
            bad[i] ^= 0xFF;
            let _ = transcode(&bad, &Options::new(Syntax::ImplicitLittle));
            let _ = transcode(&bad, &Options::new(Syntax::ExplicitBig));
        }
    }
}

#[test]
fn deep_nesting_is_refused() {
    let e = Enc(IMPL);
    let mut v = e.us(0x0028_0010, 1);
    for _ in 0..200 {
        v = e.sq(0x0008_1140, &[e.item(&v, false)], false);
    }
    let err = transcode(&v, &raw(IMPL, ELE)).unwrap_err();
    assert!(err.to_string().contains("nested deeper"), "{err}");
}

#[test]
fn file_output_is_atomic() {
    let dir = std::env::temp_dir().join(format!("dgw-dataset-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.dcm");
    std::fs::write(&good, with_meta(ELE.uid(), &sample(&Enc(ELE), true))).unwrap();
    let bad = dir.join("bad.dcm");
    let mut b = std::fs::read(&good).unwrap();
    b.truncate(b.len() - 3);
    std::fs::write(&bad, b).unwrap();
    let out = dir.join("out").join("x.dcm");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    assert!(transcode_file(&bad, &out, &Options::new(EBE)).is_err());
    assert_eq!(
        std::fs::read_dir(out.parent().unwrap()).unwrap().count(),
        0,
        "no partial output"
    );
    transcode_file(&good, &out, &Options::new(EBE)).unwrap();
    assert_eq!(std::fs::read_dir(out.parent().unwrap()).unwrap().count(), 1);
    let err = transcode_file(&dir.join("missing.dcm"), &out, &Options::new(EBE)).unwrap_err();
    assert!(err.to_string().contains("missing.dcm"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn syntax_names_and_uids() {
    assert_eq!(Syntax::parse("implicit").unwrap(), IMPL);
    assert_eq!(Syntax::parse("1.2.840.10008.1.2.2\0").unwrap(), EBE);
    assert_eq!(Syntax::parse("explicit-le").unwrap(), ELE);
    assert!(Syntax::parse("jpeg").is_err());
}

#[test]
fn file_meta_elements_inside_the_dataset_are_dropped() {
    // found by the fuzzer: a raw dataset starting with (0002,0061)
    let input = [2u8, 0, 0x61, 0, 0, 0, 0, 0];
    let mut o = Options::new(IMPL);
    o.src = Some(IMPL);
    let out = transcode(&input, &o).unwrap();
    let mut back = Options::new(IMPL);
    back.src = Some(IMPL);
    assert_eq!(transcode(&out, &back).unwrap(), out);
    o.file_meta = false;
    assert_eq!(transcode(&input, &o).unwrap(), Vec::<u8>::new());
}

#[test]
fn raw_big_endian_dataset_that_looks_like_file_meta() {
    // found by the fuzzer: group 0x0200 in big endian reads as 0x0002 in LE
    let e = Enc(EBE);
    let input = e.el(0x0200_003F, "UN", &[1, 2], 0);
    assert_eq!(
        conv(&input, EBE, IMPL),
        Enc(IMPL).el(0x0200_003F, "UN", &[1, 2], 0)
    );
}

#[test]
fn file_meta_group_length_bounds_the_meta() {
    // found by the fuzzer: BE dataset starting with group 0x0200 after File Meta
    let e = Enc(EBE);
    let ds = e.el(0x0200_0010, "UN", &[1, 2], 0);
    let input = with_meta(EBE.uid(), &ds);
    let out = transcode(&input, &Options::new(EBE)).unwrap();
    assert!(out.ends_with(&ds));
    let imp = transcode(&out, &Options::new(IMPL)).unwrap();
    assert!(imp.ends_with(&Enc(IMPL).el(0x0200_0010, "UN", &[1, 2], 0)));
    assert_eq!(
        imp.len(),
        out.len() - 4 - 2,
        "UN header 12 -> 8 bytes, TS UID 20 -> 18 bytes"
    );
}

#[test]
fn un_pixel_data_of_undefined_length_is_fragments() {
    let e = Enc(ELE);
    let mut input = e.header(0x7FE0_0010, "UN", 0xFFFF_FFFF);
    input.extend(e.tag(0xFFFE_E000));
    input.extend(0u32.to_le_bytes());
    input.extend(e.tag(0xFFFE_E0DD));
    input.extend(0u32.to_le_bytes());
    let out = conv(&input, ELE, ELE);
    assert_eq!(&out[4..6], b"OB");
    assert_eq!(&out[12..], &input[12..]);
}
