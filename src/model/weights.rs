//! Safetensors and GGUF weights, memory-mapped.
//!
//! Each file is mapped once and its header validated once (a truncated or corrupt file fails here,
//! naming the file, rather than later with an out-of-bounds read). Two ways out:
//! - [`Weights::host`]: a [`HostMatrix`] borrowing the mapping in the stored format (f32, bf16,
//!   f16, FP8 with its block scales, MXFP4 with its exponents) — what the CPU kernels read, so
//!   nothing is copied at load and resident memory is the pages actually touched;
//! - [`Weights::get`] and friends: a candle tensor in a given dtype on the compute device, copied
//!   out of the mapping in chunks whose pages are dropped as they go (GPU weights, norms, biases).

use super::gguf::GgufModel;
use super::gguf_spec;
use super::host::{BlockQuant, Bytes, Format, HostMatrix, Layout, Projection};
use super::spec::ModelSpec;
use crate::error::{Error, Result};
use candle_core::{DType, Device, Tensor};
use memmap2::Mmap;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How the checkpoint is quantized (config.json `quantization_config`).
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Quantization {
    #[default]
    None,
    /// Block-scaled FP8 (`quant_method: "fp8"`, e4m3): a quantized weight is an F8_E4M3 tensor
    /// with a `<name>_scale_inv` multiplier per `block` tile. DeepSeek lists no skipped modules,
    /// so quantized tensors are recognised by their dtype and scale tensor, not by name.
    Fp8 { block: [usize; 2] },
    /// MXFP4 (`quant_method: "mxfp4"`, GPT-OSS): experts as `<name>_blocks` + `<name>_scales`.
    Mxfp4,
}

impl Quantization {
    pub fn label(&self) -> &'static str {
        match self {
            Quantization::None => "none",
            Quantization::Fp8 { .. } => "fp8",
            Quantization::Mxfp4 => "mxfp4",
        }
    }
}

struct GgufIndex {
    path: PathBuf,
    layers: String,
    blocks: std::collections::BTreeMap<usize, Vec<String>>,
}

struct Entry {
    file: usize,
    /// The element type; a ggml block type (GGUF) is stored as `U8` bytes with `block` set.
    dtype: safetensors::Dtype,
    block: Option<BlockQuant>,
    shape: Vec<usize>,
    start: usize,
    end: usize,
}

/// All tensors of a checkpoint, from one or several safetensors files.
pub struct Weights {
    files: Vec<(PathBuf, Arc<Mmap>)>,
    /// For a GGUF model: its first file, the spec's layer prefix and each block's own tensor
    /// names (`attn_q.weight` …), for messages about tensors the spec misses.
    gguf: Option<GgufIndex>,
    /// The anonymous mapping of tensors built at load (GGUF MLA's `kv_b_proj`), one of `files`.
    /// Its pages are never dropped after a copy: an anonymous page dropped reads back as zeros.
    built: Option<Arc<Mmap>>,
    entries: HashMap<String, Entry>,
    pub quantization: Quantization,
    /// Dtype tensors are converted to by [`Weights::get`] (the compute dtype).
    pub dtype: DType,
    pub device: Device,
}

impl Weights {
    /// Maps `paths` and indexes their tensors.
    pub fn open(
        paths: &[PathBuf],
        quantization: Quantization,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let mut files = Vec::with_capacity(paths.len());
        let mut entries = HashMap::new();
        for (file_idx, path) in paths.iter().enumerate() {
            let file = std::fs::File::open(path).map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
            // SAFETY: the mapping is read-only; moescope never writes checkpoint files, and a file
            // modified underneath us by another process gives wrong numbers, not unsafety in Rust terms
            // beyond what every mmap-based loader (candle, safetensors) accepts.
            let mmap = unsafe { Mmap::map(&file) }.map_err(|source| Error::Io {
                path: path.clone(),
                source,
            })?;
            let corrupt = |problem: String| Error::CorruptWeights {
                path: path.clone(),
                problem,
            };
            let st = safetensors::SafeTensors::deserialize(&mmap)
                .map_err(|e| corrupt(describe_safetensors_error(&e, mmap.len())))?;
            let base = mmap.as_ptr() as usize;
            for (name, view) in st.tensors() {
                let data = view.data();
                let start = data.as_ptr() as usize - base;
                entries.insert(
                    name,
                    Entry {
                        file: file_idx,
                        dtype: view.dtype(),
                        block: None,
                        shape: view.shape().to_vec(),
                        start,
                        end: start + data.len(),
                    },
                );
            }
            files.push((path.clone(), Arc::new(mmap)));
        }
        Ok(Self {
            files,
            gguf: None,
            built: None,
            entries,
            quantization,
            dtype,
            device: device.clone(),
        })
    }

    /// Indexes a GGUF model's tensors under the names `spec` asks for ([`gguf_spec::renamed`]):
    /// the same mapping-backed entries as a safetensors checkpoint's, with ggml block types kept
    /// as stored. A tensor the spec uses in a type moescope cannot decode fails here, by name.
    pub fn open_gguf(
        model: &GgufModel,
        spec: &ModelSpec,
        dtype: DType,
        device: &Device,
    ) -> Result<Self> {
        let mut files = Vec::with_capacity(model.parts.len());
        let mut entries = HashMap::new();
        let trailing = gguf_spec::trailing_blocks(model);
        for (file_idx, part) in model.parts.iter().enumerate() {
            for tensor in &part.tensors {
                let renamed = gguf_spec::renamed(spec, tensor, &part.path, trailing)?;
                if renamed.is_empty() {
                    continue;
                }
                let (dtype, block) = match tensor.ggml_type.0 {
                    0 => (safetensors::Dtype::F32, None),
                    1 => (safetensors::Dtype::F16, None),
                    30 => (safetensors::Dtype::BF16, None),
                    id => match BlockQuant::from_ggml_id(id) {
                        Some(q) => (safetensors::Dtype::U8, Some(q)),
                        None => {
                            return Err(Error::GgufType {
                                name: tensor.name.clone(),
                                ggml_type: tensor.ggml_type.to_string(),
                                path: part.path.clone(),
                            })
                        }
                    },
                };
                let start = tensor.file_offset as usize;
                let bytes = tensor.size_bytes as usize;
                let stacked = renamed.iter().filter(|r| r.expert.is_some()).count().max(1);
                let per_expert = bytes / stacked;
                for r in renamed {
                    let (start, end) = match r.expert {
                        Some(e) => (start + e * per_expert, start + (e + 1) * per_expert),
                        None => (start, start + bytes),
                    };
                    entries.insert(
                        r.name,
                        Entry {
                            file: file_idx,
                            dtype,
                            block,
                            shape: r.shape,
                            start,
                            end,
                        },
                    );
                }
            }
            files.push((part.path.clone(), part.map().clone()));
        }
        let mut blocks = std::collections::BTreeMap::<usize, Vec<String>>::new();
        for tensor in model.tensors() {
            let Some((block, leaf)) = tensor
                .name
                .strip_prefix("blk.")
                .and_then(|rest| rest.split_once('.'))
            else {
                continue;
            };
            if let Ok(block) = block.parse() {
                blocks.entry(block).or_default().push(leaf.to_owned());
            }
        }
        let mut weights = Self {
            files,
            gguf: Some(GgufIndex {
                path: model.metadata().path.clone(),
                layers: spec.names.layers.clone(),
                blocks,
            }),
            built: None,
            entries,
            quantization: Quantization::None,
            dtype,
            device: device.clone(),
        };
        weights.join_split_kv_b(spec, &model.metadata().path)?;
        Ok(weights)
    }

    /// MLA files whose converter split each layer's `kv_b_proj` into `k_b` (per head, transposed)
    /// and `v_b` ([`gguf_spec::renamed`]): the matrix the attention loads, rebuilt once in f32 —
    /// each head's nope rows from k_b's columns, then its v rows — straight into an anonymous
    /// mapping that serves as one more file. It is `H·(nope + v)·kv_lora` floats a layer: 8 MB
    /// for DeepSeek-V2-Lite's 16 heads, 67 MB for DeepSeek-V3's 128 (4.1 GB over its 61 layers,
    /// beside 400 GB of experts).
    fn join_split_kv_b(&mut self, spec: &ModelSpec, path: &Path) -> Result<()> {
        let super::spec::AttentionSpec::Mla(mla) = &spec.attention else {
            return Ok(());
        };
        let (heads, lora) = (mla.num_heads, mla.kv_lora_rank);
        let (nope, v) = (mla.qk_nope_head_dim, mla.v_head_dim);
        let attention =
            |layer: usize| format!("{}.{layer}.{}", spec.names.layers, spec.names.attention);
        // The layers to join, their split halves checked against the spec by their GGUF names.
        let mut layers = Vec::new();
        for layer in 0..spec.num_layers {
            let a = attention(layer);
            if self.contains(&format!("{a}.kv_b_proj.weight")) {
                continue;
            }
            for (half, rows, cols, dims) in [
                ("k_b", heads * lora, nope, [heads, lora, nope]),
                ("v_b", heads * v, lora, [heads, v, lora]),
            ] {
                let found = self
                    .entries
                    .get(&format!("{a}.{half}.weight"))
                    .map(|e| &e.shape);
                if found != Some(&vec![rows, cols]) {
                    return Err(Error::Gguf {
                        path: path.to_owned(),
                        problem: format!(
                            "blk.{layer}.attn_{half}.weight is {}, the attention's sizes need \
                             {} (heads × {})",
                            match found {
                                Some(shape) => format!("{} rows of {}", shape[0], shape[1]),
                                None => "missing".to_owned(),
                            },
                            super::gguf::shape_text(&dims.map(|d| d as u64)),
                            if half == "k_b" {
                                "kv_lora_rank × nope"
                            } else {
                                "v × kv_lora_rank"
                            },
                        ),
                    });
                }
            }
            layers.push(layer);
        }
        if layers.is_empty() {
            return Ok(());
        }
        let floats = heads * (nope + v) * lora;
        let mut map =
            memmap2::MmapMut::map_anon(layers.len() * floats * 4).map_err(|source| Error::Io {
                path: path.to_owned(),
                source,
            })?;
        let file = self.files.len();
        for (slot, &layer) in layers.iter().enumerate() {
            let a = attention(layer);
            let k_b = self
                .host(&format!("{a}.k_b.weight"), &[heads * lora, nope])?
                .to_f32();
            let v_b = self
                .host(&format!("{a}.v_b.weight"), &[heads * v, lora])?
                .to_f32();
            let start = slot * floats * 4;
            let out = &mut map[start..start + floats * 4];
            let mut put = out.chunks_exact_mut(4);
            for h in 0..heads {
                for i in 0..nope {
                    for c in 0..lora {
                        let x = k_b[(h * lora + c) * nope + i];
                        put.next()
                            .expect("sized above")
                            .copy_from_slice(&x.to_le_bytes());
                    }
                }
                for &x in &v_b[h * v * lora..(h + 1) * v * lora] {
                    put.next()
                        .expect("sized above")
                        .copy_from_slice(&x.to_le_bytes());
                }
            }
            self.entries.insert(
                format!("{a}.kv_b_proj.weight"),
                Entry {
                    file,
                    dtype: safetensors::Dtype::F32,
                    block: None,
                    shape: vec![heads * (nope + v), lora],
                    start,
                    end: start + floats * 4,
                },
            );
        }
        let map = map.make_read_only().map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        let map = Arc::new(map);
        self.built = Some(map.clone());
        self.files.push((path.to_owned(), map));
        Ok(())
    }

    /// Whether pages of `map` may be dropped once copied: only where they read back from a file.
    fn file_backed(&self, map: &Arc<Mmap>) -> bool {
        !self
            .built
            .as_ref()
            .is_some_and(|built| Arc::ptr_eq(built, map))
    }

    /// The file list, for messages ("looked in ...").
    fn where_looked(&self) -> PathBuf {
        match self.files.as_slice() {
            [(one, _)] => one.clone(),
            [(first, _), ..] => first.parent().map(Path::to_owned).unwrap_or_default(),
            [] => PathBuf::new(),
        }
    }

    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    pub fn shape_of(&self, name: &str) -> Option<&[usize]> {
        self.entries.get(name).map(|e| e.shape.as_slice())
    }

    /// Tensor names, for diagnostics and family detection.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Total bytes of tensor data across files.
    pub fn size_bytes(&self) -> usize {
        self.entries.values().map(|e| e.end - e.start).sum()
    }

    /// Bytes the weights take on a GPU: float tensors as stored, quantized ones dequantized to
    /// the compute dtype (their scales and exponents not kept).
    pub fn device_bytes(&self) -> usize {
        let compute = self.dtype.size_in_bytes();
        self.entries
            .iter()
            .map(|(name, e)| {
                let bytes = e.end - e.start;
                if let Some(q) = e.block {
                    return bytes / q.block_bytes() * q.block_elements() * compute;
                }
                match e.dtype {
                    safetensors::Dtype::F8_E4M3 => bytes * compute,
                    // Two FP4 values per byte.
                    safetensors::Dtype::U8 if name.ends_with("_blocks") => bytes * 2 * compute,
                    safetensors::Dtype::U8 if name.ends_with("_scales") => 0,
                    _ if name.ends_with("_scale_inv") => 0,
                    _ => bytes,
                }
            })
            .sum()
    }

    /// `name`'s entry, checked to have `shape`.
    fn entry_of_shape(&self, name: &str, shape: &[usize]) -> Result<&Entry> {
        let entry = self.entry(name)?;
        if entry.shape != shape {
            return Err(self.mismatch(name, shape, entry));
        }
        Ok(entry)
    }

    fn entry(&self, name: &str) -> Result<&Entry> {
        self.entries.get(name).ok_or_else(|| self.missing(name))
    }

    /// The error for a tensor the spec needs and the files lack; for a GGUF model, with what the
    /// block it belongs to does hold.
    fn missing(&self, name: &str) -> Error {
        let Some(gguf) = &self.gguf else {
            return Error::MissingTensor {
                name: name.to_owned(),
                path: self.where_looked(),
            };
        };
        let block = name
            .strip_prefix(&format!("{}.", gguf.layers))
            .and_then(|rest| rest.split('.').next())
            .and_then(|n| n.parse::<usize>().ok());
        match block {
            Some(block) => Error::MissingGgufTensor {
                name: name.to_owned(),
                block,
                present: gguf
                    .blocks
                    .get(&block)
                    .map_or("no tensors".to_owned(), |leaves| leaves.join(", ")),
                path: gguf.path.clone(),
            },
            None => Error::MissingTensor {
                name: name.to_owned(),
                path: gguf.path.clone(),
            },
        }
    }

    fn mismatch(&self, name: &str, expected: &[usize], entry: &Entry) -> Error {
        Error::ShapeMismatch {
            name: name.to_owned(),
            expected: expected.to_vec(),
            found: entry.shape.clone(),
            path: self.files[entry.file].0.clone(),
        }
    }

    fn bad_tensor(&self, name: &str, entry: &Entry, problem: String) -> Error {
        Error::CorruptWeights {
            path: self.files[entry.file].0.clone(),
            problem: format!("tensor '{name}': {problem}"),
        }
    }

    fn bytes_of(&self, entry: &Entry) -> Bytes {
        Bytes::Mapped {
            map: self.files[entry.file].1.clone(),
            start: entry.start,
            len: entry.end - entry.start,
        }
    }

    /// `name` (of shape `shape`, leading dimensions folded into rows) as a matrix in its stored
    /// format, borrowing the mapping. FP8 weights come with their scales.
    pub fn host(&self, name: &str, shape: &[usize]) -> Result<HostMatrix> {
        let entry = self.entry_of_shape(name, shape)?;
        let cols = shape.last().copied().unwrap_or(1);
        let rows = shape.iter().product::<usize>() / cols.max(1);
        let format = match (entry.block, entry.dtype) {
            // A row that is not whole blocks cannot be sliced or decoded row by row.
            (Some(q), _) if !cols.is_multiple_of(q.block_elements()) => {
                return Err(self.bad_tensor(
                    name,
                    entry,
                    format!(
                        "{} rows of {cols} are not whole blocks of {}",
                        q.label(),
                        q.block_elements()
                    ),
                ))
            }
            (Some(q), _) => Format::Block(q),
            (None, safetensors::Dtype::F32) => Format::F32,
            (None, safetensors::Dtype::BF16) => Format::Bf16,
            (None, safetensors::Dtype::F16) => Format::F16,
            (None, safetensors::Dtype::F8_E4M3) => self.fp8_format(name, entry, rows, cols)?,
            (None, other) => {
                return Err(Error::UnsupportedDtype {
                    name: name.to_owned(),
                    dtype: format!("{other:?}"),
                    path: self.files[entry.file].0.clone(),
                })
            }
        };
        Ok(HostMatrix {
            bytes: self.bytes_of(entry),
            format,
            rows,
            cols,
        })
    }

    /// The block scales of FP8 weight `name`: `<name>_scale_inv`, `[ceil(rows / b0), ceil(cols /
    /// b1)]` in f32 or bf16 (publishers differ), checked against the tile grid.
    fn fp8_format(&self, name: &str, entry: &Entry, rows: usize, cols: usize) -> Result<Format> {
        let block = match self.quantization {
            Quantization::Fp8 { block } => block,
            // An F8 tensor in a checkpoint that does not say how it is scaled.
            _ => [128, 128],
        };
        let scale_name = format!("{name}_scale_inv");
        let Some(scale) = self.entries.get(&scale_name) else {
            return Err(self.bad_tensor(
                name,
                entry,
                format!("F8_E4M3 weight without its scale tensor '{scale_name}'"),
            ));
        };
        let grid = [rows.div_ceil(block[0]), cols.div_ceil(block[1])];
        let folded = match scale.shape.as_slice() {
            [r, c] => [*r, *c],
            [c] => [1, *c],
            _ => [0, 0],
        };
        if folded != grid {
            return Err(self.bad_tensor(
                &scale_name,
                scale,
                format!(
                    "scales of shape {:?} do not tile a {rows}×{cols} weight in {}×{} blocks (expected {:?})",
                    scale.shape, block[0], block[1], grid
                ),
            ));
        }
        let bytes = self.bytes_of(scale);
        let raw = bytes.as_slice();
        let scales: Vec<f32> = match scale.dtype {
            safetensors::Dtype::F32 => raw
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            safetensors::Dtype::BF16 => raw
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            other => {
                return Err(self.bad_tensor(
                    &scale_name,
                    scale,
                    format!("scale dtype {other:?} is not f32 or bf16"),
                ))
            }
        };
        Ok(Format::Fp8E4m3 {
            scales: scales.into(),
            block,
        })
    }

    /// A projection `[out, in]` (or `[in, out]` when `layout` is InOut), optionally stacked over
    /// `experts`, whatever its storage: a plain or FP8 tensor `name`, or MXFP4 `<name>_blocks` +
    /// `<name>_scales`, which is always stored `[out, in]` (so a layout asked as InOut comes back
    /// OutIn).
    pub fn projection(
        &self,
        name: &str,
        experts: Option<usize>,
        out_dim: usize,
        in_dim: usize,
        layout: Layout,
    ) -> Result<Projection> {
        let blocks = format!("{name}_blocks");
        if !self.contains(name) && self.contains(&blocks) {
            return Ok(Projection {
                matrix: self.mxfp4(name, experts.unwrap_or(1), out_dim, in_dim)?,
                layout: Layout::OutIn,
            });
        }
        let mut shape: Vec<usize> = experts.into_iter().collect();
        match layout {
            Layout::OutIn => shape.extend([out_dim, in_dim]),
            Layout::InOut => shape.extend([in_dim, out_dim]),
        }
        Ok(Projection {
            matrix: self.host(name, &shape)?,
            layout,
        })
    }

    /// MXFP4 `<name>_blocks` U8 `[E, out, in/32, 16]` and `<name>_scales` U8 `[E, out, in/32]`.
    fn mxfp4(
        &self,
        name: &str,
        experts: usize,
        out_dim: usize,
        in_dim: usize,
    ) -> Result<HostMatrix> {
        let blocks_name = format!("{name}_blocks");
        let scales_name = format!("{name}_scales");
        let blocks = self.entry(&blocks_name)?;
        let scales = self.entry(&scales_name)?;
        if !in_dim.is_multiple_of(32) {
            return Err(self.bad_tensor(
                &blocks_name,
                blocks,
                format!("MXFP4 needs the input size ({in_dim}) to be a multiple of 32"),
            ));
        }
        let want_blocks = [experts, out_dim, in_dim / 32, 16];
        let want_scales = [experts, out_dim, in_dim / 32];
        // A single matrix may be stored without the expert dimension.
        let folded = |shape: &[usize], want: &[usize]| -> Vec<usize> {
            if shape.len() + 1 == want.len() {
                std::iter::once(1).chain(shape.iter().copied()).collect()
            } else {
                shape.to_vec()
            }
        };
        for (n, e, want) in [
            (&blocks_name, blocks, &want_blocks[..]),
            (&scales_name, scales, &want_scales[..]),
        ] {
            if e.dtype != safetensors::Dtype::U8 {
                return Err(self.bad_tensor(
                    n,
                    e,
                    format!("MXFP4 data must be U8, found {:?}", e.dtype),
                ));
            }
            if folded(&e.shape, want) != want {
                return Err(self.mismatch(n, want, e));
            }
        }
        Ok(HostMatrix {
            bytes: self.bytes_of(blocks),
            format: Format::Mxfp4 {
                scales: self.bytes_of(scales),
            },
            rows: experts * out_dim,
            cols: in_dim,
        })
    }

    /// Loads `name`, checking its shape, converted to the compute dtype on the compute device.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        self.get_as(name, shape, self.dtype)
    }

    /// Loads `name` in `dtype` whatever the compute dtype (router biases stay f32, say).
    pub fn get_as(&self, name: &str, shape: &[usize], dtype: DType) -> Result<Tensor> {
        let entry = self.entry_of_shape(name, shape)?;
        self.materialize(name, entry, entry.start..entry.end, shape, dtype)
    }

    /// `name` on the compute device in its stored dtype (bf16 stays bf16; FP8 is dequantized to
    /// the compute dtype): the GPU's matrices, converted to the compute dtype only as each op runs.
    pub fn get_stored(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let entry = self.entry_of_shape(name, shape)?;
        let dtype = match entry.dtype {
            safetensors::Dtype::F32 => DType::F32,
            safetensors::Dtype::F16 => DType::F16,
            safetensors::Dtype::BF16 => DType::BF16,
            _ => self.dtype,
        };
        self.materialize(name, entry, entry.start..entry.end, shape, dtype)
    }

    /// A host matrix as a tensor of `shape` in `dtype` on the compute device (the candle paths'
    /// copy of a quantized or sliced matrix).
    pub fn tensor_of(&self, m: &HostMatrix, shape: &[usize], dtype: DType) -> Result<Tensor> {
        let tensor = match m.format {
            Format::Bf16 | Format::F16 | Format::F32 if m.bytes.is_mapped() => {
                let Bytes::Mapped { map, start, len } = &m.bytes else {
                    unreachable!("checked above")
                };
                copy_tensor(
                    map,
                    *start..*start + *len,
                    &m.format,
                    shape,
                    self.file_backed(map),
                )?
            }
            _ => Tensor::from_vec(m.to_f32(), shape, &Device::Cpu)?,
        };
        Ok(tensor.to_dtype(dtype)?.to_device(&self.device)?)
    }

    /// A vector of `len` values stored as `[len]` or `[1, len]` (ERNIE keeps its selection bias
    /// as `[1, E]`), in `dtype`.
    pub fn get_vector_as(&self, name: &str, len: usize, dtype: DType) -> Result<Tensor> {
        match self.shape_of(name) {
            Some([1, n]) if *n == len => Ok(self.get_as(name, &[1, len], dtype)?.flatten_all()?),
            _ => self.get_as(name, &[len], dtype),
        }
    }

    /// Copies `range` of `entry`'s file out of the mapping as a `shape` tensor in `dtype` on the
    /// compute device; quantized tensors are dequantized.
    fn materialize(
        &self,
        name: &str,
        entry: &Entry,
        range: std::ops::Range<usize>,
        shape: &[usize],
        dtype: DType,
    ) -> Result<Tensor> {
        let mmap = &self.files[entry.file].1;
        let drop = self.file_backed(mmap);
        let tensor = match entry.dtype {
            safetensors::Dtype::F32 => copy_tensor(mmap, range, &Format::F32, shape, drop)?,
            safetensors::Dtype::BF16 => copy_tensor(mmap, range, &Format::Bf16, shape, drop)?,
            safetensors::Dtype::F16 => copy_tensor(mmap, range, &Format::F16, shape, drop)?,
            _ => {
                let m = self.host(name, &entry.shape)?;
                Tensor::from_vec(m.to_f32(), shape, &Device::Cpu)?
            }
        };
        Ok(tensor.to_dtype(dtype)?.to_device(&self.device)?)
    }

    /// A view that prefixes names, mirroring the module tree (`vb.pp("layers").pp(3)`).
    pub fn pp(&self, prefix: impl std::fmt::Display) -> Prefixed<'_> {
        Prefixed {
            weights: self,
            prefix: prefix.to_string(),
        }
    }
}

/// A CPU tensor from bytes `range` of `mmap` in a float `format`, copied chunk by chunk with the
/// copied pages dropped where `drop_pages` (file-backed mappings only).
fn copy_tensor(
    mmap: &Mmap,
    range: std::ops::Range<usize>,
    format: &Format,
    shape: &[usize],
    drop_pages: bool,
) -> Result<Tensor> {
    Ok(match format {
        Format::Bf16 => Tensor::from_vec(
            copy_dropping_pages(mmap, range, half::bf16::from_le_bytes, drop_pages),
            shape,
            &Device::Cpu,
        )?,
        Format::F16 => Tensor::from_vec(
            copy_dropping_pages(mmap, range, half::f16::from_le_bytes, drop_pages),
            shape,
            &Device::Cpu,
        )?,
        _ => Tensor::from_vec(
            copy_dropping_pages(mmap, range, f32::from_le_bytes, drop_pages),
            shape,
            &Device::Cpu,
        )?,
    })
}

/// Bytes of the mapping copied before their pages are dropped: small next to the largest tensors
/// (an embedding is ~400 MB in f32), so loading never holds a big tensor twice.
const COPY_CHUNK_BYTES: usize = 16 << 20;

/// Copies `range` of `mmap` into a typed vector, `N`-byte little-endian values through `decode`,
/// chunk by chunk, and lets the kernel drop each chunk's mapped pages once copied: resident
/// memory then holds the weights once, not file pages plus copies (loading peaked at 2× without
/// dropping, and at the weights plus the largest tensor when dropping only after a whole copy).
fn copy_dropping_pages<T, const N: usize>(
    mmap: &Mmap,
    range: std::ops::Range<usize>,
    decode: impl Fn([u8; N]) -> T,
    drop_pages: bool,
) -> Vec<T> {
    let mut out = Vec::with_capacity(range.len() / N);
    let chunk = COPY_CHUNK_BYTES - COPY_CHUNK_BYTES % N;
    let mut start = range.start;
    while start < range.end {
        let end = (start + chunk).min(range.end);
        out.extend(
            mmap[start..end]
                .chunks_exact(N)
                .map(|b| decode(b.try_into().expect("N-byte chunk"))),
        );
        #[cfg(unix)]
        // SAFETY: the mapping is read-only and file-backed (callers pass `drop_pages` only for
        // such mappings): dropped pages are read back from the file if touched again (host
        // matrices borrowing the same pages see the same bytes), and no slice into this range
        // outlives this loop iteration.
        if drop_pages {
            unsafe {
                let _ = mmap.unchecked_advise_range(
                    memmap2::UncheckedAdvice::DontNeed,
                    start,
                    end - start,
                );
            }
        }
        start = end;
    }
    out
}

/// Hands freed heap memory back to the kernel. Loading allocates and frees temporaries (a GPU
/// expert's gate and up before they are stacked); glibc keeps such freed blocks between live
/// ones, which left resident memory ~0.5 GB above the weights after loading an OLMoE-sized
/// checkpoint. Called after each layer's load; a no-op where the allocator is not glibc's.
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages of the allocator's own heap to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Keeps freed blocks of up to 1 GB in glibc's heap for reuse instead of returning them to the
/// kernel. A forward pass allocates the same large buffers (expert activations, 32 MB at OLMoE
/// dims and 512 tokens) every layer; served by fresh `mmap`s, each one page-faulted and zeroed
/// again: 6 % of prefill time in `clear_page`. Called once when a model is loaded; a no-op where
/// the allocator is not glibc's.
pub fn keep_freed_memory_for_reuse() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes glibc allocator thresholds.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 30);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
    }
}

/// [`Weights`] under a name prefix.
#[derive(Clone)]
pub struct Prefixed<'a> {
    pub weights: &'a Weights,
    prefix: String,
}

impl<'a> Prefixed<'a> {
    pub fn pp(&self, part: impl std::fmt::Display) -> Prefixed<'a> {
        Prefixed {
            weights: self.weights,
            prefix: format!("{}.{part}", self.prefix),
        }
    }

    /// `pp(part)`, or this prefix itself when `part` is empty (Granite's experts sit in the MoE
    /// block itself).
    pub fn pp_opt(&self, part: &str) -> Prefixed<'a> {
        if part.is_empty() {
            self.clone()
        } else {
            self.pp(part)
        }
    }

    pub fn name(&self, leaf: &str) -> String {
        format!("{}.{leaf}", self.prefix)
    }

    pub fn contains(&self, leaf: &str) -> bool {
        self.weights.contains(&self.name(leaf))
    }

    pub fn get(&self, leaf: &str, shape: &[usize]) -> Result<Tensor> {
        self.weights.get(&self.name(leaf), shape)
    }

    pub fn get_as(&self, leaf: &str, shape: &[usize], dtype: DType) -> Result<Tensor> {
        self.weights.get_as(&self.name(leaf), shape, dtype)
    }

    pub fn get_stored(&self, leaf: &str, shape: &[usize]) -> Result<Tensor> {
        self.weights.get_stored(&self.name(leaf), shape)
    }

    pub fn get_vector_as(&self, leaf: &str, len: usize, dtype: DType) -> Result<Tensor> {
        self.weights.get_vector_as(&self.name(leaf), len, dtype)
    }

    pub fn host(&self, leaf: &str, shape: &[usize]) -> Result<HostMatrix> {
        self.weights.host(&self.name(leaf), shape)
    }

    pub fn projection(
        &self,
        leaf: &str,
        experts: Option<usize>,
        out_dim: usize,
        in_dim: usize,
        layout: Layout,
    ) -> Result<Projection> {
        self.weights
            .projection(&self.name(leaf), experts, out_dim, in_dim, layout)
    }

    /// Whether `leaf` exists in any storage (plain, or MXFP4 `_blocks`).
    pub fn contains_matrix(&self, leaf: &str) -> bool {
        self.contains(leaf) || self.contains(&format!("{leaf}_blocks"))
    }

    pub fn get_opt(&self, leaf: &str, shape: &[usize]) -> Result<Option<Tensor>> {
        if self.contains(leaf) {
            self.get(leaf, shape).map(Some)
        } else {
            Ok(None)
        }
    }
}

/// Turns the safetensors crate's error into a sentence a user can act on.
fn describe_safetensors_error(err: &safetensors::SafeTensorError, file_len: usize) -> String {
    use safetensors::SafeTensorError as E;
    match err {
        E::HeaderTooSmall | E::MetadataIncompleteBuffer => {
            format!("file is truncated ({file_len} bytes): header or data incomplete")
        }
        E::InvalidHeaderLength => {
            format!("header length does not fit in the file ({file_len} bytes): truncated or not a safetensors file")
        }
        E::InvalidHeader(_) | E::InvalidHeaderDeserialization(_) => {
            "header is not valid safetensors JSON: not a safetensors file or corrupt".into()
        }
        E::InvalidOffset(name) => format!(
            "tensor '{name}' does not fit the file ({file_len} bytes): truncated or corrupt"
        ),
        E::TensorInvalidInfo | E::ValidationOverflow => {
            format!("tensor offsets do not match the file ({file_len} bytes): truncated or corrupt")
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Host matrices borrow the file mapping: their bytes lie inside the mapped region, so
    /// opening copies nothing.
    #[test]
    fn host_matrices_borrow_the_mapping() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/deepseek-v3-bf16-sharded/model-00001-of-00002.safetensors");
        let w = Weights::open(&[path], Quantization::None, DType::F32, &Device::Cpu).unwrap();
        let name = w
            .names()
            .find(|n| n.ends_with("q_a_proj.weight"))
            .unwrap()
            .to_owned();
        let shape = w.shape_of(&name).unwrap().to_vec();
        let m = w.host(&name, &shape).unwrap();
        assert!(m.bytes.is_mapped());
        assert!(matches!(m.format, Format::Bf16), "bf16 stays bf16");
        let map = &w.files[0].1;
        let (lo, hi) = (map.as_ptr() as usize, map.as_ptr() as usize + map.len());
        let p = m.bytes.as_slice().as_ptr() as usize;
        assert!(
            p >= lo && p + m.bytes.len() <= hi,
            "bytes inside the mapping"
        );
        assert_eq!(m.size_bytes(), shape.iter().product::<usize>() * 2);
    }
}
