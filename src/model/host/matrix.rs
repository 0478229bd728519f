//! A weight matrix on the host in its stored format — f32, bf16, f16, block-scaled FP8, MXFP4 or
//! a ggml block type — as bytes that are usually a range of the checkpoint's memory map: nothing
//! is copied or widened at load, resident memory is the pages the kernels touch, and a model
//! larger than RAM still runs (clean file-backed pages are evicted and read back). Kernels decode
//! row segments to f32 as they go ([`HostMatrix::decode_row`]).

use super::ggml_quant::BlockQuant;
use memmap2::Mmap;
use std::sync::Arc;

/// Bytes of a matrix: a range of a file mapping (kept alive by the `Arc`) or an owned buffer.
#[derive(Clone)]
pub enum Bytes {
    Mapped {
        map: Arc<Mmap>,
        start: usize,
        len: usize,
    },
    Owned(Arc<[u8]>),
}

impl Bytes {
    pub fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Mapped { map, start, len } => &map[*start..*start + *len],
            Bytes::Owned(v) => v,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Bytes::Mapped { len, .. } => *len,
            Bytes::Owned(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether these bytes are the file mapping itself (borrowed, not copied).
    pub fn is_mapped(&self) -> bool {
        matches!(self, Bytes::Mapped { .. })
    }

    /// The sub-range `start..start + len` (in bytes), sharing the same storage.
    pub fn slice(&self, start: usize, len: usize) -> Bytes {
        assert!(start + len <= self.len(), "byte range out of bounds");
        match self {
            Bytes::Mapped { map, start: s, .. } => Bytes::Mapped {
                map: map.clone(),
                start: s + start,
                len,
            },
            Bytes::Owned(v) => Bytes::Owned(v[start..start + len].into()),
        }
    }
}

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} bytes ({})",
            self.len(),
            if self.is_mapped() { "mapped" } else { "owned" }
        )
    }
}

/// How the elements of a [`HostMatrix`] are stored.
#[derive(Clone, Debug)]
pub enum Format {
    F32,
    Bf16,
    F16,
    /// FP8 e4m3 with one f32 multiplier per `block[0] × block[1]` tile, row-major over the tile
    /// grid (`weight_scale_inv`: dequantized = fp8 · scale; partial last tiles use their tile's
    /// scale).
    Fp8E4m3 {
        scales: Arc<[f32]>,
        block: [usize; 2],
    },
    /// MXFP4: each row in blocks of 32 elements, 16 bytes of E2M1 nibbles (low nibble first) and
    /// one e8m0 exponent byte per block (`2^(e − 127)`), the scales `[rows, cols / 32]`.
    Mxfp4 {
        scales: Bytes,
    },
    /// A ggml block type (GGUF files): each row a whole number of self-scaled blocks.
    Block(BlockQuant),
}

impl Format {
    /// Stored bits per element (scales included), for size figures.
    pub fn bits_per_element(&self) -> f64 {
        match self {
            Format::F32 => 32.0,
            Format::Bf16 | Format::F16 => 16.0,
            Format::Fp8E4m3 { block, .. } => 8.0 + 32.0 / (block[0] * block[1]) as f64,
            Format::Mxfp4 { .. } => 4.0 + 8.0 / 32.0,
            Format::Block(q) => (q.block_bytes() * 8) as f64 / q.block_elements() as f64,
        }
    }

    pub fn label(&self) -> &'static str {
        match self {
            Format::F32 => "f32",
            Format::Bf16 => "bf16",
            Format::F16 => "f16",
            Format::Fp8E4m3 { .. } => "fp8-e4m3",
            Format::Mxfp4 { .. } => "mxfp4",
            Format::Block(q) => q.label(),
        }
    }
}

/// A `[rows, cols]` row-major matrix in its stored format.
#[derive(Clone, Debug)]
pub struct HostMatrix {
    pub bytes: Bytes,
    pub format: Format,
    pub rows: usize,
    pub cols: usize,
}

/// e4m3 (1 sign, 4 exponent bits with bias 7, 3 mantissa bits; no infinities, 0x7f/0xff NaN) to
/// f32, every byte.
static FP8_E4M3: std::sync::LazyLock<[f32; 256]> = std::sync::LazyLock::new(|| {
    let mut lut = [0f32; 256];
    for (b, v) in lut.iter_mut().enumerate() {
        let sign = if b & 0x80 != 0 { -1.0 } else { 1.0 };
        let exp = ((b >> 3) & 0xf) as i32;
        let mant = (b & 0x7) as f32;
        *v = if exp == 0xf && b & 0x7 == 0x7 {
            f32::NAN
        } else if exp == 0 {
            sign * mant / 8.0 * 2f32.powi(-6)
        } else {
            sign * (1.0 + mant / 8.0) * 2f32.powi(exp - 7)
        };
    }
    lut
});

/// E2M1 (FP4) values of the 16 nibbles.
const FP4_E2M1: [f32; 16] = [
    0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0,
];

impl HostMatrix {
    /// Stored bytes of the elements plus scales.
    pub fn size_bytes(&self) -> usize {
        self.bytes.len()
            + match &self.format {
                Format::Fp8E4m3 { scales, .. } => scales.len() * 4,
                Format::Mxfp4 { scales } => scales.len(),
                _ => 0,
            }
    }

    /// Bytes of one stored row.
    fn row_bytes(&self) -> usize {
        match self.format {
            Format::F32 => self.cols * 4,
            Format::Bf16 | Format::F16 => self.cols * 2,
            Format::Fp8E4m3 { .. } => self.cols,
            Format::Mxfp4 { .. } => self.cols / 2,
            Format::Block(q) => self.cols / q.block_elements() * q.block_bytes(),
        }
    }

    /// Rows `start..start + count`, sharing the storage (one expert of a stacked tensor). FP8 row
    /// slices must start on a scale tile.
    pub fn rows(&self, start: usize, count: usize) -> HostMatrix {
        assert!(start + count <= self.rows, "row range out of bounds");
        let rb = self.row_bytes();
        let format = match &self.format {
            Format::Fp8E4m3 { scales, block } => {
                assert!(
                    start.is_multiple_of(block[0]),
                    "FP8 row slice off a scale tile"
                );
                let grid_cols = self.cols.div_ceil(block[1]);
                let first = start / block[0] * grid_cols;
                let tiles = count.div_ceil(block[0]) * grid_cols;
                Format::Fp8E4m3 {
                    scales: scales[first..first + tiles].into(),
                    block: *block,
                }
            }
            Format::Mxfp4 { scales } => {
                let per_row = self.cols / 32;
                Format::Mxfp4 {
                    scales: scales.slice(start * per_row, count * per_row),
                }
            }
            other => other.clone(),
        };
        HostMatrix {
            bytes: self.bytes.slice(start * rb, count * rb),
            format,
            rows: count,
            cols: self.cols,
        }
    }

    /// Elements `c0 .. c0 + out.len()` of row `r`, dequantized to f32.
    pub fn decode_row(&self, r: usize, c0: usize, out: &mut [f32]) {
        let n = out.len();
        debug_assert!(r < self.rows && c0 + n <= self.cols);
        let bytes = self.bytes.as_slice();
        let row = &bytes[r * self.row_bytes()..(r + 1) * self.row_bytes()];
        match &self.format {
            Format::F32 => {
                for (o, b) in out
                    .iter_mut()
                    .zip(row[c0 * 4..(c0 + n) * 4].chunks_exact(4))
                {
                    *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
                }
            }
            Format::Bf16 => {
                for (o, b) in out
                    .iter_mut()
                    .zip(row[c0 * 2..(c0 + n) * 2].chunks_exact(2))
                {
                    *o = f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16);
                }
            }
            Format::F16 => {
                for (o, b) in out
                    .iter_mut()
                    .zip(row[c0 * 2..(c0 + n) * 2].chunks_exact(2))
                {
                    *o = half::f16::from_le_bytes([b[0], b[1]]).to_f32();
                }
            }
            Format::Fp8E4m3 { scales, block } => {
                let lut = &*FP8_E4M3;
                let grid_cols = self.cols.div_ceil(block[1]);
                let tile_row = &scales[r / block[0] * grid_cols..(r / block[0] + 1) * grid_cols];
                for (i, (o, &b)) in out.iter_mut().zip(&row[c0..c0 + n]).enumerate() {
                    *o = lut[b as usize] * tile_row[(c0 + i) / block[1]];
                }
            }
            Format::Mxfp4 { scales } => {
                let per_row = self.cols / 32;
                let exps = &scales.as_slice()[r * per_row..(r + 1) * per_row];
                for (i, o) in out.iter_mut().enumerate() {
                    let c = c0 + i;
                    let byte = row[c / 2];
                    let nibble = if c.is_multiple_of(2) {
                        byte & 0xf
                    } else {
                        byte >> 4
                    };
                    *o = FP4_E2M1[nibble as usize] * exp2_e8m0(exps[c / 32]);
                }
            }
            Format::Block(q) => q.decode_range(row, c0, out),
        }
    }

    /// The whole matrix as f32, row-major (tests, and tensors for the candle paths).
    pub fn to_f32(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.rows * self.cols];
        for (r, row) in out.chunks_exact_mut(self.cols.max(1)).enumerate() {
            self.decode_row(r, 0, row);
        }
        out
    }
}

/// `2^(e − 127)` of an e8m0 exponent byte (255 is NaN in the OCP spec).
fn exp2_e8m0(e: u8) -> f32 {
    if e == 255 {
        f32::NAN
    } else if e == 0 {
        // 2^-127 is subnormal in f32.
        f32::from_bits(1 << 22)
    } else {
        f32::from_bits(u32::from(e) << 23)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owned(bytes: Vec<u8>) -> Bytes {
        Bytes::Owned(bytes.into())
    }

    #[test]
    fn fp8_e4m3_table_matches_the_format() {
        let lut = &*FP8_E4M3;
        assert_eq!(lut[0x00], 0.0);
        assert_eq!(lut[0x38], 1.0); // exponent 7, mantissa 0
        assert_eq!(lut[0x7e], 448.0); // the largest finite value
        assert_eq!(lut[0xb8], -1.0);
        assert_eq!(lut[0x01], 2f32.powi(-9)); // smallest subnormal
        assert!(lut[0x7f].is_nan());
    }

    #[test]
    fn e8m0_exponents() {
        assert_eq!(exp2_e8m0(127), 1.0);
        assert_eq!(exp2_e8m0(130), 8.0);
        assert_eq!(exp2_e8m0(120), 2f32.powi(-7));
    }

    /// A 3×5 FP8 matrix with 2×2 tiles (partial last tiles in both directions) decodes each
    /// element with its own tile's scale.
    #[test]
    fn fp8_partial_tiles_use_their_own_scale() {
        let (rows, cols) = (3, 5);
        let bytes: Vec<u8> = (0..rows * cols).map(|_| 0x38).collect(); // all 1.0
        let scales: Vec<f32> = (0..2 * 3).map(|t| t as f32 + 1.0).collect(); // 2×3 tiles
        let m = HostMatrix {
            bytes: owned(bytes),
            format: Format::Fp8E4m3 {
                scales: scales.into(),
                block: [2, 2],
            },
            rows,
            cols,
        };
        let want = [
            1., 1., 2., 2., 3., //
            1., 1., 2., 2., 3., //
            4., 4., 5., 5., 6.,
        ];
        assert_eq!(m.to_f32(), want);
        // A row slice on a tile boundary keeps the right scales.
        assert_eq!(m.rows(2, 1).to_f32(), want[10..]);
    }

    /// MXFP4: low nibble first, one exponent per 32 elements.
    #[test]
    fn mxfp4_nibbles_and_scales() {
        let mut bytes = vec![0u8; 16 * 2]; // 2 rows × 32 elements
        bytes[0] = 0x21; // elements 0 = 0.5 (nibble 1), 1 = 1.0 (nibble 2)
        bytes[16] = 0xf7; // row 1: element 0 = 6 (7), element 1 = −6 (15)
        let m = HostMatrix {
            bytes: owned(bytes),
            format: Format::Mxfp4 {
                scales: owned(vec![127, 128]),
            },
            rows: 2,
            cols: 32,
        };
        let v = m.to_f32();
        assert_eq!(&v[..2], &[0.5, 1.0]);
        assert_eq!(&v[32..34], &[12.0, -12.0]);
    }

    #[test]
    fn bf16_and_f16_decode() {
        let b = half::bf16::from_f32(-2.5).to_le_bytes();
        let h = half::f16::from_f32(0.75).to_le_bytes();
        let bm = HostMatrix {
            bytes: owned(b.to_vec()),
            format: Format::Bf16,
            rows: 1,
            cols: 1,
        };
        let hm = HostMatrix {
            bytes: owned(h.to_vec()),
            format: Format::F16,
            rows: 1,
            cols: 1,
        };
        assert_eq!(bm.to_f32(), [-2.5]);
        assert_eq!(hm.to_f32(), [0.75]);
    }
}
