//! Any bytes, any pair of syntaxes, with and without File Meta: the transcoder
//! returns Ok or a typed error, never panics; what it produces converts back
//! and forth, and after one normalising pass a round trip is the identity.
#![no_main]

use dicom_gateway_dataset::{transcode, Options, Syntax};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let sel = data[0];
    let input = &data[1..];
    let src = Syntax::ALL[(sel % 3) as usize];
    let dst = Syntax::ALL[((sel / 3) % 3) as usize];
    let mut opts = Options::new(dst);
    opts.file_meta = sel & 0x40 != 0;
    if sel & 0x80 == 0 {
        opts.src = Some(src);
    }
    let Ok(out) = transcode(input, &opts) else {
        return;
    };
    // The output is valid in dst: converting it to src and back must succeed.
    let mut there = Options::new(src);
    there.src = Some(dst);
    there.file_meta = opts.file_meta;
    there.src_raw = !opts.file_meta;
    let mut back = Options::new(dst);
    back.src = Some(src);
    back.file_meta = opts.file_meta;
    back.src_raw = !opts.file_meta;
    let mid = transcode(&out, &there).expect("output of the transcoder must parse");
    let again = transcode(&mid, &back).expect("round trip must parse");
    // One pass may normalise (group lengths, values that are no sequence
    // become UN); after that a round trip is the identity.
    let mid2 = transcode(&again, &there).expect("second round trip must parse");
    let again2 = transcode(&mid2, &back).expect("second round trip must parse");
    assert_eq!(again, again2, "round trip changed the output");
});
