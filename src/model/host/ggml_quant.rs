//! ggml's block-quantized weight types (what llama.cpp's GGUF files store), decoded to f32 the way
//! ggml's `dequantize_row_*` functions define them. A row of such a matrix is a whole number of
//! blocks; each block holds its own scales, so any block of any row decodes on its own and a
//! quantized matrix is read in place from the file's memory map like every other [`super::Format`].
//!
//! The layouts (bytes per block, where the f16 scales sit, how the 2–6-bit values are packed)
//! follow ggml-common.h; the decoders are checked against gguf-py's reference dequantizers on a
//! file of every type (tests/fixtures/gguf/quant-types.gguf).

use half::f16;

/// A ggml block type moescope can decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockQuant {
    Q4_0,
    Q4_1,
    Q5_0,
    Q5_1,
    Q8_0,
    Q2K,
    Q3K,
    Q4K,
    Q5K,
    Q6K,
    /// MXFP4 as ggml stores it (GPT-OSS experts): per 32 elements an E8M0 exponent byte, then 16
    /// bytes whose low nibbles are elements 0..16 and high nibbles 16..32.
    Mxfp4,
}

impl BlockQuant {
    /// The type of a ggml type id, when it is one of ours.
    pub fn from_ggml_id(id: u32) -> Option<Self> {
        Some(match id {
            2 => Self::Q4_0,
            3 => Self::Q4_1,
            6 => Self::Q5_0,
            7 => Self::Q5_1,
            8 => Self::Q8_0,
            10 => Self::Q2K,
            11 => Self::Q3K,
            12 => Self::Q4K,
            13 => Self::Q5K,
            14 => Self::Q6K,
            39 => Self::Mxfp4,
            _ => return None,
        })
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Q4_0 => "Q4_0",
            Self::Q4_1 => "Q4_1",
            Self::Q5_0 => "Q5_0",
            Self::Q5_1 => "Q5_1",
            Self::Q8_0 => "Q8_0",
            Self::Q2K => "Q2_K",
            Self::Q3K => "Q3_K",
            Self::Q4K => "Q4_K",
            Self::Q5K => "Q5_K",
            Self::Q6K => "Q6_K",
            Self::Mxfp4 => "MXFP4",
        }
    }

    /// Elements per block: 32 for the legacy types, 256 for the K-quants' super-blocks.
    pub fn block_elements(self) -> usize {
        match self {
            Self::Q4_0 | Self::Q4_1 | Self::Q5_0 | Self::Q5_1 | Self::Q8_0 | Self::Mxfp4 => 32,
            _ => 256,
        }
    }

    pub fn block_bytes(self) -> usize {
        match self {
            Self::Q4_0 => 18,
            Self::Q4_1 => 20,
            Self::Q5_0 => 22,
            Self::Q5_1 => 24,
            Self::Q8_0 => 34,
            Self::Q2K => 84,
            Self::Q3K => 110,
            Self::Q4K => 144,
            Self::Q5K => 176,
            Self::Q6K => 210,
            Self::Mxfp4 => 17,
        }
    }

    /// Decodes one block (`block_bytes` bytes) into `out` (`block_elements` values).
    pub fn decode_block(self, b: &[u8], out: &mut [f32]) {
        debug_assert!(b.len() == self.block_bytes() && out.len() == self.block_elements());
        self.decode_blocks(b, out);
    }

    /// Decodes whole blocks: `bytes` is n blocks, `out` their n × `block_elements` values. The
    /// per-type loops are compiled for AVX-512, AVX2 and the baseline (chosen at run time), so
    /// they vectorize where the CPU allows without `target-cpu=native`.
    pub fn decode_blocks(self, bytes: &[u8], out: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        match decode_isa() {
            // SAFETY: the features were detected on this CPU.
            DecodeIsa::Avx512 => return unsafe { decode_blocks_avx512(self, bytes, out) },
            DecodeIsa::Avx2 => return unsafe { decode_blocks_avx2(self, bytes, out) },
            DecodeIsa::Baseline => {}
        }
        decode_blocks_with(self, bytes, out)
    }

    /// Elements `c0 .. c0 + out.len()` of a row stored as consecutive blocks.
    pub fn decode_range(self, row: &[u8], c0: usize, out: &mut [f32]) {
        let (be, bb) = (self.block_elements(), self.block_bytes());
        if c0.is_multiple_of(be) && out.len().is_multiple_of(be) {
            let first = c0 / be * bb;
            return self.decode_blocks(&row[first..first + out.len() / be * bb], out);
        }
        let mut scratch = [0f32; 256];
        let mut c = c0;
        let mut filled = 0;
        while filled < out.len() {
            let block = c / be;
            let within = c % be;
            let take = (be - within).min(out.len() - filled);
            let bytes = &row[block * bb..(block + 1) * bb];
            self.decode_blocks(bytes, &mut scratch[..be]);
            out[filled..filled + take].copy_from_slice(&scratch[within..within + take]);
            filled += take;
            c += take;
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
enum DecodeIsa {
    Avx512,
    Avx2,
    Baseline,
}

#[cfg(target_arch = "x86_64")]
fn decode_isa() -> DecodeIsa {
    use std::arch::is_x86_feature_detected as has;
    static DETECTED: std::sync::OnceLock<DecodeIsa> = std::sync::OnceLock::new();
    *DETECTED.get_or_init(|| {
        if has!("avx512f") && has!("avx512bw") && has!("avx512vl") && has!("f16c") {
            DecodeIsa::Avx512
        } else if has!("avx2") && has!("fma") && has!("f16c") {
            DecodeIsa::Avx2
        } else {
            DecodeIsa::Baseline
        }
    })
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
unsafe fn decode_blocks_avx512(q: BlockQuant, bytes: &[u8], out: &mut [f32]) {
    decode_blocks_with(q, bytes, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
unsafe fn decode_blocks_avx2(q: BlockQuant, bytes: &[u8], out: &mut [f32]) {
    decode_blocks_with(q, bytes, out)
}

/// The per-type loop over blocks, the type matched once per call.
#[inline(always)]
fn decode_blocks_with(q: BlockQuant, bytes: &[u8], out: &mut [f32]) {
    // A macro, not a generic over `impl Fn`: passed as values the decoders were not inlined, so
    // they ran outside the caller's target features (16 % of a Q4_K_M prefill in `Fn::call`).
    macro_rules! each {
        ($bb:literal, $be:literal, $decode:ident) => {
            for (b, o) in bytes.chunks_exact($bb).zip(out.chunks_exact_mut($be)) {
                $decode(
                    b.try_into().expect("whole block"),
                    o.try_into().expect("whole block"),
                );
            }
        };
    }
    match q {
        BlockQuant::Q4_0 => each!(18, 32, decode_q4_0),
        BlockQuant::Q4_1 => each!(20, 32, decode_q4_1),
        BlockQuant::Q5_0 => each!(22, 32, decode_q5_0),
        BlockQuant::Q5_1 => each!(24, 32, decode_q5_1),
        BlockQuant::Q8_0 => each!(34, 32, decode_q8_0),
        BlockQuant::Q2K => each!(84, 256, decode_q2_k),
        BlockQuant::Q3K => each!(110, 256, decode_q3_k),
        BlockQuant::Q4K => each!(144, 256, decode_q4_k),
        BlockQuant::Q5K => each!(176, 256, decode_q5_k),
        BlockQuant::Q6K => each!(210, 256, decode_q6_k),
        BlockQuant::Mxfp4 => each!(17, 32, decode_mxfp4),
    }
}

/// MXFP4: E8M0 exponent e, then 16 bytes of E2M1 nibbles (low: elements 0..16, high: 16..32),
/// decoded as ggml does: the E2M1 values doubled (integers) × 2^(e−128). That is value · 2^(e−127)
/// for every e; for e = 255, which OCP MX reserves for NaN, it stays finite like ggml's.
#[inline(always)]
fn decode_mxfp4(b: &[u8; 17], out: &mut [f32; 32]) {
    /// E2M1 values × 2 (ggml's `kvalues_mxfp4`).
    const DOUBLED: [f32; 16] = [
        0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 0.0, -1.0, -2.0, -3.0, -4.0, -6.0, -8.0, -12.0,
    ];
    // 2^(e−128): e = 0 and 1 are f32 subnormals.
    let d = match b[0] {
        0 => f32::from_bits(0x0020_0000),
        1 => f32::from_bits(0x0040_0000),
        e => f32::from_bits(u32::from(e - 1) << 23),
    };
    for j in 0..16 {
        let q = b[1 + j];
        out[j] = DOUBLED[(q & 0xf) as usize] * d;
        out[j + 16] = DOUBLED[(q >> 4) as usize] * d;
    }
}

/// Q4_0: d, 16 bytes of nibbles (low nibbles elements 0..16, high 16..32), offset 8.
#[inline(always)]
fn decode_q4_0(b: &[u8; 18], out: &mut [f32; 32]) {
    let d = half_at(b, 0);
    for j in 0..16 {
        let q = b[2 + j];
        out[j] = ((q & 0xf) as i32 - 8) as f32 * d;
        out[j + 16] = ((q >> 4) as i32 - 8) as f32 * d;
    }
}

/// Q4_1: d, m, 16 bytes of nibbles; value · d + m.
#[inline(always)]
fn decode_q4_1(b: &[u8; 20], out: &mut [f32; 32]) {
    let (d, m) = (half_at(b, 0), half_at(b, 2));
    for j in 0..16 {
        let q = b[4 + j];
        out[j] = (q & 0xf) as f32 * d + m;
        out[j + 16] = (q >> 4) as f32 * d + m;
    }
}

/// Q5_0: d, 32 fifth bits, 16 bytes of nibbles, offset 16.
#[inline(always)]
fn decode_q5_0(b: &[u8; 22], out: &mut [f32; 32]) {
    let d = half_at(b, 0);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    for j in 0..16 {
        let q = b[6 + j];
        let h0 = ((qh >> j) << 4) & 0x10;
        let h1 = (qh >> (j + 12)) & 0x10;
        out[j] = (((q & 0xf) as u32 | h0) as i32 - 16) as f32 * d;
        out[j + 16] = (((q >> 4) as u32 | h1) as i32 - 16) as f32 * d;
    }
}

/// Q5_1: d, m, 32 fifth bits, 16 bytes of nibbles; value · d + m.
#[inline(always)]
fn decode_q5_1(b: &[u8; 24], out: &mut [f32; 32]) {
    let (d, m) = (half_at(b, 0), half_at(b, 2));
    let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
    for j in 0..16 {
        let q = b[8 + j];
        let h0 = ((qh >> j) << 4) & 0x10;
        let h1 = (qh >> (j + 12)) & 0x10;
        out[j] = ((q & 0xf) as u32 | h0) as f32 * d + m;
        out[j + 16] = ((q >> 4) as u32 | h1) as f32 * d + m;
    }
}

/// Q8_0: d, 32 signed bytes.
#[inline(always)]
fn decode_q8_0(b: &[u8; 34], out: &mut [f32; 32]) {
    let d = half_at(b, 0);
    for (o, &q) in out.iter_mut().zip(&b[2..34]) {
        *o = q as i8 as f32 * d;
    }
}

#[inline(always)]
fn half_at(b: &[u8], at: usize) -> f32 {
    f16::from_le_bytes([b[at], b[at + 1]]).to_f32()
}

/// Q2_K: 16 sub-blocks of 16, each with a 4-bit scale and a 4-bit min (×d, ×dmin); 2-bit values.
/// Layout: scales[16], qs[64], d, dmin.
#[inline(always)]
fn decode_q2_k(b: &[u8; 84], out: &mut [f32; 256]) {
    let (scales, qs) = (&b[0..16], &b[16..80]);
    let (d, dmin) = (half_at(b, 80), half_at(b, 82));
    let mut y = 0;
    let mut is = 0;
    for half in 0..2 {
        let q = &qs[half * 32..half * 32 + 32];
        for shift in [0, 2, 4, 6] {
            for part in 0..2 {
                let sc = scales[is];
                is += 1;
                let (dl, ml) = (d * (sc & 0xf) as f32, dmin * (sc >> 4) as f32);
                for &byte in &q[part * 16..part * 16 + 16] {
                    out[y] = dl * ((byte >> shift) & 3) as f32 - ml;
                    y += 1;
                }
            }
        }
    }
}

/// Q3_K: 16 sub-blocks of 16 with 6-bit signed scales (packed in 12 bytes), 2 low bits in qs and
/// the third bit in hmask (a clear bit subtracts 4). Layout: hmask[32], qs[64], scales[12], d.
#[inline(always)]
fn decode_q3_k(b: &[u8; 110], out: &mut [f32; 256]) {
    let (hmask, qs, packed) = (&b[0..32], &b[32..96], &b[96..108]);
    let d = half_at(b, 108);
    let scales = unpack_q3_k_scales(packed);
    let mut y = 0;
    let mut is = 0;
    let mut m = 1u8;
    for half in 0..2 {
        let q = &qs[half * 32..half * 32 + 32];
        for shift in [0, 2, 4, 6] {
            for part in 0..2 {
                let dl = d * (scales[is] as i32 - 32) as f32;
                is += 1;
                for l in part * 16..part * 16 + 16 {
                    let low = ((q[l] >> shift) & 3) as i32;
                    let high = if hmask[l] & m != 0 { 0 } else { 4 };
                    out[y] = dl * (low - high) as f32;
                    y += 1;
                }
            }
            m <<= 1;
        }
    }
}

/// The 16 6-bit scales of a Q3_K block: low 4 bits from bytes 0–7 (two per byte), high 2 bits
/// from bytes 8–11 (four per byte).
#[inline(always)]
fn unpack_q3_k_scales(p: &[u8]) -> [u8; 16] {
    let mut s = [0u8; 16];
    for (i, v) in s.iter_mut().enumerate() {
        let low = if i < 8 { p[i] & 0xf } else { p[i - 8] >> 4 };
        let high = (p[8 + i % 4] >> (2 * (i / 4))) & 3;
        *v = low | (high << 4);
    }
    s
}

/// Scale and min of sub-block `j` (0..8) of a Q4_K/Q5_K block's 12 packed bytes (6 bits each).
#[inline(always)]
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xf) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// The (scale, min) multipliers of the two 32-value sub-blocks of 64-value chunk `chunk` of a
/// Q4_K/Q5_K block: the 6-bit packed values times the block's d and dmin.
#[inline(always)]
fn chunk_scales(chunk: usize, packed: &[u8], d: f32, dmin: f32) -> [(f32, f32); 2] {
    [2 * chunk, 2 * chunk + 1].map(|j| {
        let (s, m) = scale_min_k4(j, packed);
        (d * s as f32, dmin * m as f32)
    })
}

/// Q4_K: 8 sub-blocks of 32 with 6-bit scales and mins; 4-bit values, 64 per 32 bytes (low
/// nibbles first). Layout: d, dmin, scales[12], qs[128].
#[inline(always)]
fn decode_q4_k(b: &[u8; 144], out: &mut [f32; 256]) {
    let (d, dmin) = (half_at(b, 0), half_at(b, 2));
    let (packed, qs) = (&b[4..16], &b[16..144]);
    for chunk in 0..4 {
        let q = &qs[chunk * 32..chunk * 32 + 32];
        let [(d1, m1), (d2, m2)] = chunk_scales(chunk, packed, d, dmin);
        let y = &mut out[chunk * 64..chunk * 64 + 64];
        for l in 0..32 {
            y[l] = d1 * (q[l] & 0xf) as f32 - m1;
            y[l + 32] = d2 * (q[l] >> 4) as f32 - m2;
        }
    }
}

/// Q5_K: Q4_K plus a fifth bit per value in qh. Layout: d, dmin, scales[12], qh[32], qs[128].
#[inline(always)]
fn decode_q5_k(b: &[u8; 176], out: &mut [f32; 256]) {
    let (d, dmin) = (half_at(b, 0), half_at(b, 2));
    let (packed, qh, qs) = (&b[4..16], &b[16..48], &b[48..176]);
    for chunk in 0..4 {
        let q = &qs[chunk * 32..chunk * 32 + 32];
        let (u1, u2) = (1u8 << (2 * chunk), 2u8 << (2 * chunk));
        let [(d1, m1), (d2, m2)] = chunk_scales(chunk, packed, d, dmin);
        let y = &mut out[chunk * 64..chunk * 64 + 64];
        for l in 0..32 {
            let h1 = if qh[l] & u1 != 0 { 16 } else { 0 };
            let h2 = if qh[l] & u2 != 0 { 16 } else { 0 };
            y[l] = d1 * ((q[l] & 0xf) + h1) as f32 - m1;
            y[l + 32] = d2 * ((q[l] >> 4) + h2) as f32 - m2;
        }
    }
}

/// Q6_K: 16 sub-blocks of 16 with signed 8-bit scales; 4 low bits in ql, 2 high bits in qh,
/// offset 32. Layout: ql[128], qh[64], scales[16], d.
#[inline(always)]
fn decode_q6_k(b: &[u8; 210], out: &mut [f32; 256]) {
    let d = half_at(b, 208);
    for half in 0..2 {
        let ql = &b[half * 64..half * 64 + 64];
        let qh = &b[128 + half * 32..128 + half * 32 + 32];
        let sc = &b[192 + half * 8..192 + half * 8 + 8];
        let y = &mut out[half * 128..half * 128 + 128];
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0xf) | ((qh[l] & 3) << 4)) as i32 - 32;
            let q2 = ((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
            let s = |k: usize| d * sc[is + k] as i8 as f32;
            y[l] = s(0) * q1 as f32;
            y[l + 32] = s(2) * q2 as f32;
            y[l + 64] = s(4) * q3 as f32;
            y[l + 96] = s(6) * q4 as f32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Q8_0 by hand: scale 0.5, values −128..127 scaled.
    #[test]
    fn q8_0_is_scale_times_int8() {
        let mut b = vec![0u8; 34];
        b[..2].copy_from_slice(&f16::from_f32(0.5).to_le_bytes());
        b[2] = 0x80; // −128
        b[3] = 0x7f; // 127
        b[4] = 0xff; // −1
        let mut out = [0f32; 32];
        BlockQuant::Q8_0.decode_block(&b, &mut out);
        assert_eq!(&out[..4], &[-64.0, 63.5, -0.5, 0.0]);
    }

    /// Q4_0: low nibbles are elements 0..16, high nibbles 16..32, offset 8.
    #[test]
    fn q4_0_nibble_order() {
        let mut b = vec![0u8; 18];
        b[..2].copy_from_slice(&f16::from_f32(2.0).to_le_bytes());
        b[2] = 0xf0; // element 0: 0 − 8, element 16: 15 − 8
        let mut out = [0f32; 32];
        BlockQuant::Q4_0.decode_block(&b, &mut out);
        assert_eq!(out[0], -16.0);
        assert_eq!(out[16], 14.0);
    }

    /// A range that starts and ends inside blocks equals the same slice of the whole row.
    #[test]
    fn ranges_inside_blocks_match_the_whole_row() {
        let q = BlockQuant::Q4K;
        let mut row: Vec<u8> = (0..2 * q.block_bytes())
            .map(|i| (i * 37 % 251) as u8)
            .collect();
        for block in 0..2 {
            let at = block * q.block_bytes();
            row[at..at + 2].copy_from_slice(&f16::from_f32(0.25).to_le_bytes());
            row[at + 2..at + 4].copy_from_slice(&f16::from_f32(0.125).to_le_bytes());
        }
        let mut whole = vec![0f32; 512];
        q.decode_range(&row, 0, &mut whole);
        let mut part = vec![0f32; 300];
        q.decode_range(&row, 100, &mut part);
        assert_eq!(part, whole[100..400]);
    }
}
