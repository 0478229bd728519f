//! Safetensors weights, memory-mapped.
//!
//! Each file is mapped once and its header validated once (a truncated or corrupt file fails here,
//! naming the file, rather than later with an out-of-bounds read). Tensors are materialized one at a
//! time in the compute dtype, straight from the mapping: the file is never read into a buffer whole.

use crate::error::{Error, Result};
use candle_core::{DType, Device, Tensor};
use memmap2::Mmap;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

struct Entry {
    file: usize,
    /// `Err(name)` for a dtype the kernels cannot read (F8, integers…): an error when used,
    /// naming the dtype and file, not a "missing tensor".
    dtype: std::result::Result<DType, String>,
    shape: Vec<usize>,
    start: usize,
    end: usize,
}

/// All tensors of a checkpoint, from one or several safetensors files.
pub struct Weights {
    files: Vec<(PathBuf, Mmap)>,
    entries: HashMap<String, Entry>,
    /// Dtype the tensors are converted to when loaded.
    pub dtype: DType,
    pub device: Device,
}

impl Weights {
    /// Maps `paths` and indexes their tensors.
    pub fn open(paths: &[PathBuf], dtype: DType, device: &Device) -> Result<Self> {
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
                let dtype = match view.dtype() {
                    safetensors::Dtype::F32 => Ok(DType::F32),
                    safetensors::Dtype::BF16 => Ok(DType::BF16),
                    safetensors::Dtype::F16 => Ok(DType::F16),
                    other => Err(format!("{other:?}")),
                };
                let data = view.data();
                let start = data.as_ptr() as usize - base;
                entries.insert(
                    name,
                    Entry {
                        file: file_idx,
                        dtype,
                        shape: view.shape().to_vec(),
                        start,
                        end: start + data.len(),
                    },
                );
            }
            files.push((path.clone(), mmap));
        }
        Ok(Self {
            files,
            entries,
            dtype,
            device: device.clone(),
        })
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

    /// Total elements of all tensors (what the model holds once loaded, in any dtype).
    pub fn num_elements(&self) -> usize {
        self.entries
            .values()
            .map(|e| e.shape.iter().product::<usize>())
            .sum()
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

    /// Loads `name[index]` (dim 0) of a tensor of shape `shape`, in the compute dtype, reading only
    /// that slice of the file. Stacked expert tensors (`[E, 2I, H]`) are loaded one expert at a
    /// time this way, so loading never holds a whole layer's experts twice.
    pub fn get_index(&self, name: &str, index: usize, shape: &[usize]) -> Result<Tensor> {
        let entry = self.entry_of_shape(name, shape)?;
        let (&rows, row_shape) = shape.split_first().ok_or_else(|| Error::ShapeMismatch {
            name: name.to_owned(),
            expected: shape.to_vec(),
            found: entry.shape.clone(),
            path: self.files[entry.file].0.clone(),
        })?;
        debug_assert!(index < rows, "{name}[{index}] out of {rows}");
        let row_bytes = (entry.end - entry.start) / rows;
        let start = entry.start + index * row_bytes;
        self.materialize(name, entry, start..start + row_bytes, row_shape, self.dtype)
    }

    /// Block `index` of `blocks` equal blocks along dim 0 of `name` (shape `shape`), in the compute
    /// dtype: DBRX stores its experts flat as `[E·I, H]`, and expert n is rows `n·I..(n+1)·I`.
    pub fn get_block(
        &self,
        name: &str,
        shape: &[usize],
        index: usize,
        blocks: usize,
    ) -> Result<Tensor> {
        let entry = self.entry_of_shape(name, shape)?;
        let mut block_shape = shape.to_vec();
        let mismatch = || Error::ShapeMismatch {
            name: name.to_owned(),
            expected: shape.to_vec(),
            found: entry.shape.clone(),
            path: self.files[entry.file].0.clone(),
        };
        let rows = *block_shape.first().ok_or_else(mismatch)?;
        if blocks == 0 || !rows.is_multiple_of(blocks) {
            return Err(mismatch());
        }
        block_shape[0] = rows / blocks;
        let block_bytes = (entry.end - entry.start) / blocks;
        let start = entry.start + index * block_bytes;
        self.materialize(
            name,
            entry,
            start..start + block_bytes,
            &block_shape,
            self.dtype,
        )
    }

    /// A vector of `len` values stored as `[len]` or `[1, len]` (ERNIE keeps its selection bias
    /// as `[1, E]`), in `dtype`.
    pub fn get_vector_as(&self, name: &str, len: usize, dtype: DType) -> Result<Tensor> {
        match self.shape_of(name) {
            Some([1, n]) if *n == len => Ok(self.get_as(name, &[1, len], dtype)?.flatten_all()?),
            _ => self.get_as(name, &[len], dtype),
        }
    }

    /// `name`'s entry, checked to have `shape`.
    fn entry_of_shape(&self, name: &str, shape: &[usize]) -> Result<&Entry> {
        let entry = self.entries.get(name).ok_or_else(|| Error::MissingTensor {
            name: name.to_owned(),
            path: self.where_looked(),
        })?;
        if entry.shape != shape {
            return Err(Error::ShapeMismatch {
                name: name.to_owned(),
                expected: shape.to_vec(),
                found: entry.shape.clone(),
                path: self.files[entry.file].0.clone(),
            });
        }
        Ok(entry)
    }

    /// Copies `range` of `entry`'s file out of the mapping as a `shape` tensor in `dtype` on the
    /// compute device.
    fn materialize(
        &self,
        name: &str,
        entry: &Entry,
        range: std::ops::Range<usize>,
        shape: &[usize],
        dtype: DType,
    ) -> Result<Tensor> {
        let (path, mmap) = &self.files[entry.file];
        let stored = entry
            .dtype
            .clone()
            .map_err(|dtype| Error::UnsupportedDtype {
                name: name.to_owned(),
                dtype,
                path: path.clone(),
            })?;
        let tensor = match stored {
            DType::BF16 => Tensor::from_vec(
                copy_dropping_pages(mmap, range, half::bf16::from_le_bytes),
                shape,
                &Device::Cpu,
            )?,
            DType::F16 => Tensor::from_vec(
                copy_dropping_pages(mmap, range, half::f16::from_le_bytes),
                shape,
                &Device::Cpu,
            )?,
            _ => Tensor::from_vec(
                copy_dropping_pages(mmap, range, f32::from_le_bytes),
                shape,
                &Device::Cpu,
            )?,
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
        // SAFETY: the mapping is read-only and file-backed: dropped pages are read back from the
        // file if touched again, and no slice into this range outlives this loop iteration.
        unsafe {
            let _ =
                mmap.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start);
        }
        start = end;
    }
    out
}

/// Hands freed heap memory back to the kernel. Loading allocates and frees a temporary or two per
/// tensor (an expert's gate and up before they are stacked or packed); glibc keeps such freed
/// blocks between live ones, which left resident memory ~0.5 GB above the weights after loading
/// an OLMoE-sized checkpoint. Called after each layer's load; a no-op where the allocator is not
/// glibc's.
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free pages of the allocator's own heap to the kernel.
    unsafe {
        libc::malloc_trim(0);
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

    pub fn get_index(&self, leaf: &str, index: usize, shape: &[usize]) -> Result<Tensor> {
        self.weights.get_index(&self.name(leaf), index, shape)
    }

    pub fn get_block(
        &self,
        leaf: &str,
        shape: &[usize],
        index: usize,
        blocks: usize,
    ) -> Result<Tensor> {
        self.weights
            .get_block(&self.name(leaf), shape, index, blocks)
    }

    pub fn get_vector_as(&self, leaf: &str, len: usize, dtype: DType) -> Result<Tensor> {
        self.weights.get_vector_as(&self.name(leaf), len, dtype)
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
