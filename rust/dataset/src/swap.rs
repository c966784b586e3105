//! Byte swapping kernels.
//!
//! Written as fixed-width chunk loops over `u16`/`u32`/`u64` so that LLVM
//! vectorizes them (SSE2/AVX2 shuffles); see `bench/transcode.py`.

/// Append `src` to `out` with every `width`-byte number byte-swapped.
/// `width` 0 or 1 copies. A tail shorter than `width` (odd-length value) is
/// copied unchanged.
pub fn extend_swapped(out: &mut Vec<u8>, src: &[u8], width: usize) {
    if !matches!(width, 2 | 4 | 8) {
        out.extend_from_slice(src);
        return;
    }
    // Swap through an L1-sized stack block instead of zero-filling `out`
    // first: one pass over memory instead of two.
    const BLOCK: usize = 8192;
    out.reserve(src.len());
    let mut buf = [0u8; BLOCK];
    for chunk in src.chunks(BLOCK) {
        let b = &mut buf[..chunk.len()];
        swap_copy(chunk, b, width);
        out.extend_from_slice(b);
    }
}

/// Copy `src` into `dst` (same length) swapping `width`-byte numbers.
pub fn swap_copy(src: &[u8], dst: &mut [u8], width: usize) {
    debug_assert_eq!(src.len(), dst.len());
    let n = src.len().min(dst.len());
    let (src, dst) = (&src[..n], &mut dst[..n]);
    match width {
        2 => copy_chunks::<2>(src, dst, |b| {
            u16::from_ne_bytes(b).swap_bytes().to_ne_bytes()
        }),
        4 => copy_chunks::<4>(src, dst, |b| {
            u32::from_ne_bytes(b).swap_bytes().to_ne_bytes()
        }),
        8 => copy_chunks::<8>(src, dst, |b| {
            u64::from_ne_bytes(b).swap_bytes().to_ne_bytes()
        }),
        _ => dst.copy_from_slice(src),
    }
}

#[inline(always)]
fn copy_chunks<const W: usize>(src: &[u8], dst: &mut [u8], f: impl Fn([u8; W]) -> [u8; W]) {
    let whole = src.len() / W * W;
    // Blocks of 64 bytes give the vectorizer a fixed trip count.
    let block = whole / 64 * 64;
    for (d, s) in dst[..block]
        .chunks_exact_mut(64)
        .zip(src[..block].chunks_exact(64))
    {
        for (dd, ss) in d.chunks_exact_mut(W).zip(s.chunks_exact(W)) {
            let mut a = [0u8; W];
            a.copy_from_slice(ss);
            dd.copy_from_slice(&f(a));
        }
    }
    for (dd, ss) in dst[block..whole]
        .chunks_exact_mut(W)
        .zip(src[block..whole].chunks_exact(W))
    {
        let mut a = [0u8; W];
        a.copy_from_slice(ss);
        dd.copy_from_slice(&f(a));
    }
    dst[whole..].copy_from_slice(&src[whole..]);
}

/// Swap `width`-byte numbers in place.
pub fn swap_in_place(buf: &mut [u8], width: usize) {
    match width {
        2 => buf.chunks_exact_mut(2).for_each(|c| c.swap(0, 1)),
        4 => buf.chunks_exact_mut(4).for_each(|c| c.reverse()),
        8 => buf.chunks_exact_mut(8).for_each(|c| c.reverse()),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths() {
        let src: Vec<u8> = (0u8..19).collect();
        let mut out = Vec::new();
        extend_swapped(&mut out, &src, 2);
        assert_eq!(&out[..4], &[1, 0, 3, 2]);
        assert_eq!(out[18], 18, "odd tail copied");
        out.clear();
        extend_swapped(&mut out, &src, 4);
        assert_eq!(&out[..8], &[3, 2, 1, 0, 7, 6, 5, 4]);
        assert_eq!(&out[16..], &[16, 17, 18]);
        out.clear();
        extend_swapped(&mut out, &src, 8);
        assert_eq!(&out[..8], &[7, 6, 5, 4, 3, 2, 1, 0]);
        out.clear();
        extend_swapped(&mut out, &src, 0);
        assert_eq!(out, src);
    }

    #[test]
    fn long_buffers_match_in_place() {
        for w in [2usize, 4, 8] {
            let src: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
            let mut a = Vec::new();
            extend_swapped(&mut a, &src, w);
            let mut b = src.clone();
            swap_in_place(&mut b, w);
            assert_eq!(a, b);
            let mut back = Vec::new();
            extend_swapped(&mut back, &a, w);
            assert_eq!(back, src);
        }
    }
}
