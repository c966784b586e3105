//! Any bytes in any of the three syntaxes: the header scan returns Ok or a
//! typed error, never panics; the file reader (here a reader handing out a
//! few bytes at a time) gives the same result as the slice, and the SHA-256
//! always covers every byte.
#![no_main]

use dicom_gateway_dataset::{scan, scan_reader, ScanOptions, Syntax};
use libfuzzer_sys::fuzz_target;

struct Trickle<'a>(&'a [u8], usize);

impl std::io::Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.0.len()).min(self.1);
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let sel = data[0];
    let input = &data[1..];
    let syntax = Syntax::ALL[(sel % 3) as usize];
    let mut opts = ScanOptions::new(&[
        0x0008_0016,
        0x0008_0018,
        0x0010_0010,
        0x0020_000D,
        0x0020_000E,
        0x0028_0010,
        0x0054_0400,
    ]);
    opts.max_value = if sel & 0x80 != 0 { 16 } else { 1 << 20 };
    let a = scan(input, syntax, &opts);
    let b = scan_reader(
        Trickle(input, 1 + (sel as usize >> 3) % 13),
        input.len() as u64,
        "fuzz".as_ref(),
        syntax,
        &opts,
    );
    match (a, b) {
        (Ok(a), Ok(b)) => {
            assert_eq!(a.values, b.values);
            assert_eq!(a.oversized, b.oversized);
            assert_eq!(a.has_pixel_data, b.has_pixel_data);
            assert_eq!(a.tail_error.is_some(), b.tail_error.is_some());
            assert_eq!(a.sha256, b.sha256);
            assert_eq!(a.length, input.len() as u64);
            assert!(a.values.iter().all(|v| v.bytes.len() <= opts.max_value));
            assert!(!(a.has_pixel_data && a.tail_error.is_some()));
        }
        (Err(_), Err(_)) => {}
        (a, b) => panic!("slice and reader disagree: {a:?} / {b:?}"),
    }
});
