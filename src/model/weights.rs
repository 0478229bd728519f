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
    dtype: DType,
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
                    safetensors::Dtype::F32 => DType::F32,
                    safetensors::Dtype::BF16 => DType::BF16,
                    safetensors::Dtype::F16 => DType::F16,
                    other => {
                        // Non-float tensors (none in supported families) are only an error if used.
                        let _ = other;
                        continue;
                    }
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
        let entry = self.entries.get(name).ok_or_else(|| Error::MissingTensor {
            name: name.to_owned(),
            path: self.where_looked(),
        })?;
        let path = &self.files[entry.file].0;
        if entry.shape != shape {
            return Err(Error::ShapeMismatch {
                name: name.to_owned(),
                expected: shape.to_vec(),
                found: entry.shape.clone(),
                path: path.clone(),
            });
        }
        let mmap = &self.files[entry.file].1;
        let bytes = &mmap[entry.start..entry.end];
        let tensor = Tensor::from_raw_buffer(bytes, entry.dtype, shape, &Device::Cpu)?;
        // The tensor owns a copy now; let the kernel drop the mapped pages so resident memory
        // holds the weights once, not file pages plus copies (loading peaked near 2× without).
        #[cfg(unix)]
        // SAFETY: the mapping is read-only and file-backed: dropped pages are read back from the
        // file if touched again, and no slice into this range outlives this call.
        unsafe {
            let _ = mmap.unchecked_advise_range(
                memmap2::UncheckedAdvice::DontNeed,
                entry.start,
                entry.end - entry.start,
            );
        }
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
