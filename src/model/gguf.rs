//! GGUF files as llama.cpp writes them (format versions 2 and 3, little-endian): the header, its
//! typed metadata and the tensor directory, read from the memory map.
//!
//! A GGUF header is a list of counts and lengths that a hostile or truncated file can set to
//! anything, so every one is checked against the bytes that follow before anything is allocated
//! for it: a count of n entries needs at least n times the smallest entry's size, a string its
//! length, a tensor its whole byte range inside the file. Allocations therefore stay within a small
//! multiple of the file's size. Metadata arrays (a vocabulary of 150 k strings, its scores and
//! merges) are not decoded here: the header records where each array lies and decodes it when
//! asked, so opening a file only to describe it costs little.

use crate::error::{Error, Result};
use memmap2::Mmap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The first four bytes of every GGUF file.
pub const MAGIC: &[u8; 4] = b"GGUF";
/// ggml's `GGML_MAX_DIMS`.
const MAX_DIMS: usize = 4;
/// Tensor data alignment when `general.alignment` is absent.
const DEFAULT_ALIGNMENT: u64 = 32;
/// Arrays of arrays deeper than this are refused (llama.cpp writes none at all).
const MAX_ARRAY_DEPTH: usize = 3;

/// A tensor's ggml type, with its block layout when this build knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GgmlType(pub u32);

impl GgmlType {
    /// (name, elements per block, bytes per block), as in ggml's type traits.
    fn layout(self) -> Option<(&'static str, u64, u64)> {
        Some(match self.0 {
            0 => ("F32", 1, 4),
            1 => ("F16", 1, 2),
            2 => ("Q4_0", 32, 18),
            3 => ("Q4_1", 32, 20),
            6 => ("Q5_0", 32, 22),
            7 => ("Q5_1", 32, 24),
            8 => ("Q8_0", 32, 34),
            9 => ("Q8_1", 32, 40),
            10 => ("Q2_K", 256, 84),
            11 => ("Q3_K", 256, 110),
            12 => ("Q4_K", 256, 144),
            13 => ("Q5_K", 256, 176),
            14 => ("Q6_K", 256, 210),
            15 => ("Q8_K", 256, 292),
            16 => ("IQ2_XXS", 256, 66),
            17 => ("IQ2_XS", 256, 74),
            18 => ("IQ3_XXS", 256, 98),
            19 => ("IQ1_S", 256, 50),
            20 => ("IQ4_NL", 32, 18),
            21 => ("IQ3_S", 256, 110),
            22 => ("IQ2_S", 256, 82),
            23 => ("IQ4_XS", 256, 136),
            24 => ("I8", 1, 1),
            25 => ("I16", 1, 2),
            26 => ("I32", 1, 4),
            27 => ("I64", 1, 8),
            28 => ("F64", 1, 8),
            29 => ("IQ1_M", 256, 56),
            30 => ("BF16", 1, 2),
            34 => ("TQ1_0", 256, 54),
            35 => ("TQ2_0", 256, 66),
            39 => ("MXFP4", 32, 17),
            40 => ("NVFP4", 64, 36),
            41 => ("Q1_0", 128, 18),
            _ => return None,
        })
    }

    pub fn name(self) -> Option<&'static str> {
        self.layout().map(|(name, _, _)| name)
    }

    /// Elements per block.
    pub fn block_elements(self) -> Option<u64> {
        self.layout().map(|(_, elements, _)| elements)
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "type {}", self.0),
        }
    }
}

/// One entry of the tensor directory, checked: its bytes lie inside the file.
#[derive(Clone, Debug)]
pub struct GgufTensor {
    pub name: String,
    /// ggml order: `dims[0]` is the contiguous (input) dimension.
    pub dims: Vec<u64>,
    pub ggml_type: GgmlType,
    /// Byte offset in the file (the data section's start plus the tensor's own offset).
    pub file_offset: u64,
    pub size_bytes: u64,
}

impl GgufTensor {
    pub fn elements(&self) -> u64 {
        self.dims.iter().product()
    }
}

/// A metadata value type, numbered as in the GGUF specification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueType {
    U8,
    I8,
    U16,
    I16,
    U32,
    I32,
    F32,
    Bool,
    String,
    Array,
    U64,
    I64,
    F64,
}

impl ValueType {
    fn from_u32(code: u32) -> Option<Self> {
        use ValueType::*;
        Some(match code {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    /// Bytes of a value of this type, or (strings, arrays) the fewest it can take.
    fn min_bytes(self) -> u64 {
        use ValueType::*;
        match self {
            U8 | I8 | Bool => 1,
            U16 | I16 => 2,
            U32 | I32 | F32 => 4,
            U64 | I64 | F64 | String => 8,
            Array => 12,
        }
    }

    fn name(self) -> &'static str {
        use ValueType::*;
        match self {
            U8 => "uint8",
            I8 => "int8",
            U16 => "uint16",
            I16 => "int16",
            U32 => "uint32",
            I32 => "int32",
            F32 => "float32",
            Bool => "bool",
            String => "string",
            Array => "array",
            U64 => "uint64",
            I64 => "int64",
            F64 => "float64",
        }
    }
}

/// A metadata value. Integers keep their sign and width class; arrays stay in the file until
/// decoded ([`GgufFile::array_strings`], [`GgufFile::array_numbers`]).
#[derive(Clone, Debug, PartialEq)]
pub enum MetaValue {
    Uint(u64),
    Int(i64),
    /// Kept as f32 so it prints as written (`1e-6`, not its f64 widening).
    Float32(f32),
    Float(f64),
    Bool(bool),
    Str(String),
    Array(MetaArray),
}

/// Where an array's elements lie in the file.
#[derive(Clone, Debug, PartialEq)]
pub struct MetaArray {
    pub element: ValueType,
    pub len: u64,
    /// Byte range of the elements (after the type and length).
    start: usize,
    end: usize,
}

impl MetaArray {
    /// The element type's name in the specification (`string`, `f32`, …).
    pub fn element_name(&self) -> &'static str {
        self.element.name()
    }
}

impl MetaValue {
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            MetaValue::Uint(v) => Some(v),
            MetaValue::Int(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            MetaValue::Uint(v) => Some(v as f64),
            MetaValue::Int(v) => Some(v as f64),
            MetaValue::Float32(v) => Some(v.into()),
            MetaValue::Float(v) => Some(v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetaValue::Str(s) => Some(s),
            _ => None,
        }
    }
}

impl fmt::Display for MetaValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetaValue::Uint(v) => write!(f, "{v}"),
            MetaValue::Int(v) => write!(f, "{v}"),
            MetaValue::Float32(v) if *v != 0.0 && !(1e-3..1e7).contains(&v.abs()) => {
                write!(f, "{v:e}")
            }
            MetaValue::Float32(v) => write!(f, "{v}"),
            MetaValue::Float(v) => write!(f, "{v}"),
            MetaValue::Bool(v) => write!(f, "{v}"),
            MetaValue::Str(s) => write!(f, "{s}"),
            MetaValue::Array(a) => write!(f, "[{} × {}]", a.len, a.element.name()),
        }
    }
}

/// One GGUF file: its mapping, metadata in file order and the checked tensor directory.
pub struct GgufFile {
    pub path: PathBuf,
    pub version: u32,
    pub metadata: Vec<(String, MetaValue)>,
    pub tensors: Vec<GgufTensor>,
    pub alignment: u64,
    /// Where tensor data starts.
    pub data_offset: u64,
    map: Arc<Mmap>,
}

impl GgufFile {
    /// Maps `path` and reads its header; any inconsistency is an error naming the file.
    pub fn open(path: &Path) -> Result<Self> {
        let file = std::fs::File::open(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        // SAFETY: the mapping is read-only; like every mmap reader (llama.cpp included) we rely on
        // the file not being truncated while it is open.
        let map = unsafe { Mmap::map(&file) }.map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, Arc::new(map))
    }

    fn parse(path: &Path, map: Arc<Mmap>) -> Result<Self> {
        let bad = |problem: String| Error::Gguf {
            path: path.to_owned(),
            problem,
        };
        let header = Header::read(&map).map_err(bad)?;
        Ok(Self {
            path: path.to_owned(),
            version: header.version,
            metadata: header.metadata,
            tensors: header.tensors,
            alignment: header.alignment,
            data_offset: header.data_offset,
            map,
        })
    }

    /// The file's mapping, shared by the weights that borrow its tensors.
    pub fn map(&self) -> &Arc<Mmap> {
        &self.map
    }

    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// `general.architecture`, the llama.cpp architecture name (`qwen3moe`, `deepseek2`, …).
    pub fn architecture(&self) -> Option<&str> {
        self.get("general.architecture").and_then(MetaValue::as_str)
    }

    pub fn size_bytes(&self) -> u64 {
        self.map.len() as u64
    }

    /// The tensor's bytes, in place in the mapping (their range was checked when the file opened).
    pub fn tensor_bytes(&self, tensor: &GgufTensor) -> &[u8] {
        &self.map[tensor.file_offset as usize..(tensor.file_offset + tensor.size_bytes) as usize]
    }

    /// The elements of a string array (a vocabulary, merges), decoded now.
    pub fn array_strings(&self, array: &MetaArray) -> std::result::Result<Vec<String>, String> {
        if array.element != ValueType::String {
            return Err(format!("an array of {}, not strings", array.element.name()));
        }
        let mut cursor = Cursor::at(&self.map[..array.end], array.start);
        (0..array.len).map(|_| cursor.string()).collect()
    }

    /// The elements of a numeric or boolean array, as f64 (per-layer head counts, scores).
    pub fn array_numbers(&self, array: &MetaArray) -> std::result::Result<Vec<f64>, String> {
        if matches!(array.element, ValueType::String | ValueType::Array) {
            return Err(format!("an array of {}, not numbers", array.element.name()));
        }
        let mut cursor = Cursor::at(&self.map[..array.end], array.start);
        (0..array.len)
            .map(|_| {
                let value = cursor.scalar(array.element)?;
                Ok(match value {
                    MetaValue::Bool(b) => f64::from(u8::from(b)),
                    other => other.as_f64().unwrap_or(f64::NAN),
                })
            })
            .collect()
    }
}

/// What [`Header::read`] finds.
struct Header {
    version: u32,
    metadata: Vec<(String, MetaValue)>,
    tensors: Vec<GgufTensor>,
    alignment: u64,
    data_offset: u64,
}

impl Header {
    fn read(bytes: &[u8]) -> std::result::Result<Self, String> {
        let mut cursor = Cursor::at(bytes, 0);
        if bytes.len() < 4 || &bytes[..4] != MAGIC {
            return Err("not a GGUF file (it does not start with \"GGUF\")".into());
        }
        cursor.pos = 4;
        let version = cursor.u32()?;
        if version.swap_bytes() == 2 || version.swap_bytes() == 3 {
            return Err("a big-endian GGUF file; only little-endian files are read".into());
        }
        if version != 2 && version != 3 {
            return Err(format!(
                "GGUF version {version} is not supported (versions 2 and 3 are)"
            ));
        }
        let tensor_count = cursor.u64()?;
        let kv_count = cursor.u64()?;
        // Each entry takes at least this many bytes: a count beyond what the rest of the file
        // could hold is corrupt, and checking it first caps what we allocate.
        let (min_kv, min_tensor) = (8 + 4 + 1, 8 + 4 + 8 + 4 + 8);
        let capacity = |cursor: &Cursor, count: u64, min: u64, what: &str| {
            if count > cursor.remaining() as u64 / min {
                Err(format!(
                    "the header claims {count} {what}, more than its {} bytes can hold",
                    bytes.len()
                ))
            } else {
                Ok(count as usize)
            }
        };
        let kv_count = capacity(&cursor, kv_count, min_kv, "metadata entries")?;
        let mut metadata = Vec::with_capacity(kv_count);
        for i in 0..kv_count {
            let key = cursor
                .string()
                .map_err(|e| format!("metadata entry {i}: key: {e}"))?;
            let code = cursor.u32().map_err(|e| format!("metadata '{key}': {e}"))?;
            let value = cursor
                .value(code, 0)
                .map_err(|e| format!("metadata '{key}': {e}"))?;
            if metadata.iter().any(|(k, _)| *k == key) {
                return Err(format!("metadata key '{key}' appears twice"));
            }
            metadata.push((key, value));
        }
        let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
            None => DEFAULT_ALIGNMENT,
            Some((_, MetaValue::Uint(a))) if a.is_power_of_two() && *a <= 1 << 30 => *a,
            Some((_, value)) => {
                return Err(format!(
                    "general.alignment {value} is not a power of two up to 2^30"
                ))
            }
        };
        let tensor_count = capacity(&cursor, tensor_count, min_tensor, "tensors")?;
        let mut tensors = Vec::with_capacity(tensor_count);
        for i in 0..tensor_count {
            let name = cursor
                .string()
                .map_err(|e| format!("tensor {i}: name: {e}"))?;
            let at = |problem: String| format!("tensor '{name}': {problem}");
            let n_dims = cursor.u32().map_err(at)? as usize;
            if n_dims == 0 || n_dims > MAX_DIMS {
                return Err(at(format!("{n_dims} dimensions (1 to {MAX_DIMS} allowed)")));
            }
            let dims = (0..n_dims)
                .map(|_| cursor.u64())
                .collect::<std::result::Result<Vec<u64>, String>>()
                .map_err(at)?;
            let ggml_type = GgmlType(cursor.u32().map_err(at)?);
            let offset = cursor.u64().map_err(at)?;
            tensors.push((name, dims, ggml_type, offset));
        }
        let header_end = cursor.pos as u64;
        let data_offset = header_end.div_ceil(alignment) * alignment;
        let file_bytes = bytes.len() as u64;
        let mut checked = Vec::with_capacity(tensors.len());
        for (name, dims, ggml_type, offset) in tensors {
            let at = |problem: String| format!("tensor '{name}': {problem}");
            let Some((_, block_elements, block_bytes)) = ggml_type.layout() else {
                return Err(at(format!("{ggml_type}, which this build does not know")));
            };
            let elements = dims
                .iter()
                .try_fold(1u64, |acc, &d| acc.checked_mul(d))
                .filter(|&n| n <= i64::MAX as u64)
                .ok_or_else(|| at(format!("shape {} has too many elements", shape_text(&dims))))?;
            if dims[0] % block_elements != 0 {
                return Err(at(format!(
                    "its first dimension {} is not a multiple of {ggml_type}'s block of {block_elements}",
                    dims[0]
                )));
            }
            let Some(size_bytes) = (elements / block_elements).checked_mul(block_bytes) else {
                return Err(at(format!(
                    "shape {} is too large for any file",
                    shape_text(&dims)
                )));
            };
            // With another dimension 0 the product says nothing: each dimension on its own must
            // fit the file (no ggml type packs more than 8 elements a byte).
            if let Some(&d) = dims.iter().find(|&&d| d > file_bytes.saturating_mul(8)) {
                return Err(at(format!(
                    "shape {} has a dimension of {d}, more than a {file_bytes}-byte file could hold",
                    shape_text(&dims)
                )));
            }
            if offset % alignment != 0 {
                return Err(at(format!(
                    "data offset {offset} is not a multiple of the alignment {alignment}"
                )));
            }
            let file_offset = data_offset.checked_add(offset);
            let end = file_offset.and_then(|o| o.checked_add(size_bytes));
            let (Some(file_offset), Some(end)) = (file_offset, end) else {
                return Err(at(format!("data offset {offset} is past the file's end")));
            };
            if end > file_bytes {
                return Err(at(format!(
                    "its {size_bytes} bytes at offset {file_offset} end past the file's {file_bytes}"
                )));
            }
            checked.push(GgufTensor {
                name,
                dims,
                ggml_type,
                file_offset,
                size_bytes,
            });
        }
        let mut by_offset: Vec<&GgufTensor> = checked.iter().collect();
        by_offset.sort_by_key(|t| (t.file_offset, t.size_bytes));
        for pair in by_offset.windows(2) {
            if pair[0].file_offset + pair[0].size_bytes > pair[1].file_offset {
                return Err(format!(
                    "tensors '{}' and '{}' overlap",
                    pair[0].name, pair[1].name
                ));
            }
        }
        let mut names: Vec<&str> = checked.iter().map(|t| t.name.as_str()).collect();
        names.sort_unstable();
        if let Some(pair) = names.windows(2).find(|p| p[0] == p[1]) {
            return Err(format!("tensor '{}' appears twice", pair[0]));
        }
        Ok(Self {
            version,
            metadata,
            tensors: checked,
            alignment,
            data_offset,
        })
    }
}

/// `4096 × 128 × 8`: a shape for messages.
pub fn shape_text(dims: &[u64]) -> String {
    dims.iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(" × ")
}

/// Reads little-endian values from a byte slice, every read bounds-checked.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn at(bytes: &'a [u8], pos: usize) -> Self {
        Self { bytes, pos }
    }

    fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }

    fn take(&mut self, n: u64) -> std::result::Result<&'a [u8], String> {
        if n > self.remaining() as u64 {
            return Err(format!(
                "needs {n} bytes at offset {}, the file ends at {}",
                self.pos,
                self.bytes.len()
            ));
        }
        let start = self.pos;
        self.pos += n as usize;
        Ok(&self.bytes[start..self.pos])
    }

    fn array<const N: usize>(&mut self) -> std::result::Result<[u8; N], String> {
        Ok(self.take(N as u64)?.try_into().expect("took N bytes"))
    }

    fn u32(&mut self) -> std::result::Result<u32, String> {
        self.array().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> std::result::Result<u64, String> {
        self.array().map(u64::from_le_bytes)
    }

    fn string(&mut self) -> std::result::Result<String, String> {
        let len = self.u64()?;
        let bytes = self.take(len)?;
        // Names and metadata are UTF-8 by the specification; a vocabulary entry that is not
        // (a raw byte token) is kept with replacement characters rather than refusing the file.
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }

    fn scalar(&mut self, kind: ValueType) -> std::result::Result<MetaValue, String> {
        use ValueType as T;
        Ok(match kind {
            T::U8 => MetaValue::Uint(self.array::<1>()?[0].into()),
            T::I8 => MetaValue::Int(i8::from_le_bytes(self.array()?).into()),
            T::U16 => MetaValue::Uint(u16::from_le_bytes(self.array()?).into()),
            T::I16 => MetaValue::Int(i16::from_le_bytes(self.array()?).into()),
            T::U32 => MetaValue::Uint(self.u32()?.into()),
            T::I32 => MetaValue::Int(i32::from_le_bytes(self.array()?).into()),
            T::F32 => MetaValue::Float32(f32::from_le_bytes(self.array()?)),
            T::Bool => match self.array::<1>()?[0] {
                0 => MetaValue::Bool(false),
                1 => MetaValue::Bool(true),
                other => return Err(format!("boolean byte {other}")),
            },
            T::String => MetaValue::Str(self.string()?),
            T::U64 => MetaValue::Uint(self.u64()?),
            T::I64 => MetaValue::Int(i64::from_le_bytes(self.array()?)),
            T::F64 => MetaValue::Float(f64::from_le_bytes(self.array()?)),
            T::Array => return Err("an array where a single value belongs".into()),
        })
    }

    /// A value of type `code`; an array is walked (so its end is known and its strings checked)
    /// but not decoded.
    fn value(&mut self, code: u32, depth: usize) -> std::result::Result<MetaValue, String> {
        let kind = ValueType::from_u32(code).ok_or_else(|| format!("value type {code}"))?;
        if kind != ValueType::Array {
            return self.scalar(kind);
        }
        if depth >= MAX_ARRAY_DEPTH {
            return Err(format!("arrays nested deeper than {MAX_ARRAY_DEPTH}"));
        }
        let element_code = self.u32()?;
        let element = ValueType::from_u32(element_code)
            .ok_or_else(|| format!("array of value type {element_code}"))?;
        let len = self.u64()?;
        if len > self.remaining() as u64 / element.min_bytes() {
            return Err(format!(
                "an array of {len} {} values does not fit in the {} bytes left",
                element.name(),
                self.remaining()
            ));
        }
        let start = self.pos;
        match element {
            ValueType::String => {
                for _ in 0..len {
                    let n = self.u64()?;
                    self.take(n)?;
                }
            }
            ValueType::Array => {
                for _ in 0..len {
                    self.value(ValueType::Array as u32, depth + 1)?;
                }
            }
            _ => {
                self.take(len * element.min_bytes())?;
            }
        }
        Ok(MetaValue::Array(MetaArray {
            element,
            len,
            start,
            end: self.pos,
        }))
    }
}

/// Whether `path` names a GGUF file (by its extension, as llama.cpp's tools do).
pub fn is_gguf_path(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
}

/// The files of a GGUF model: one file, or every part of a split set named like
/// `NAME-00001-of-00003.gguf` (llama.cpp's `gguf-split`), in order. Any part may be given.
pub fn split_parts(path: &Path) -> Result<Vec<PathBuf>> {
    let Some((prefix, count)) = split_name(path) else {
        return Ok(vec![path.to_owned()]);
    };
    let dir = path.parent().unwrap_or(Path::new(""));
    let parts: Vec<PathBuf> = (1..=count)
        .map(|n| dir.join(format!("{prefix}-{n:05}-of-{count:05}.gguf")))
        .collect();
    if let Some(missing) = parts.iter().find(|p| !p.is_file()) {
        return Err(Error::Gguf {
            path: path.to_owned(),
            problem: format!(
                "part of a {count}-file split set, but {} is missing",
                missing.display()
            ),
        });
    }
    Ok(parts)
}

/// `(NAME, N)` for a file named `NAME-0000k-of-0000N.gguf`.
fn split_name(path: &Path) -> Option<(String, u32)> {
    let name = path.file_name()?.to_str()?.strip_suffix(".gguf")?;
    let (rest, count) = name.rsplit_once("-of-")?;
    let (prefix, index) = rest.rsplit_once('-')?;
    let digits = |s: &str| s.len() == 5 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(count) || !digits(index) {
        return None;
    }
    let (count, index): (u32, u32) = (count.parse().ok()?, index.parse().ok()?);
    (index >= 1 && index <= count).then(|| (prefix.to_owned(), count))
}

/// A GGUF model: all its parts opened, the first one's metadata describing the model.
pub struct GgufModel {
    pub parts: Vec<GgufFile>,
}

impl GgufModel {
    pub fn open(path: &Path) -> Result<Self> {
        let parts = split_parts(path)?
            .iter()
            .map(|p| GgufFile::open(p))
            .collect::<Result<Vec<_>>>()?;
        let first = &parts[0];
        if let Some(declared) = first.get("split.count").and_then(MetaValue::as_u64) {
            if declared != parts.len() as u64 {
                return Err(Error::Gguf {
                    path: first.path.clone(),
                    problem: format!(
                        "split.count says {declared} files, the name says {}",
                        parts.len()
                    ),
                });
            }
        }
        let mut names: Vec<&str> = parts
            .iter()
            .flat_map(|p| p.tensors.iter().map(|t| t.name.as_str()))
            .collect();
        names.sort_unstable();
        if let Some(pair) = names.windows(2).find(|p| p[0] == p[1]) {
            return Err(Error::Gguf {
                path: path.to_owned(),
                problem: format!("tensor '{}' is in more than one part", pair[0]),
            });
        }
        Ok(Self { parts })
    }

    pub fn metadata(&self) -> &GgufFile {
        &self.parts[0]
    }

    pub fn tensors(&self) -> impl Iterator<Item = &GgufTensor> {
        self.parts.iter().flat_map(|p| p.tensors.iter())
    }

    pub fn size_bytes(&self) -> u64 {
        self.parts.iter().map(GgufFile::size_bytes).sum()
    }

    /// The values of a small F32 tensor the spec itself needs (`rope_freqs`); `None` when the
    /// file has no such tensor, an error when it is not F32.
    pub fn f32_values(&self, name: &str) -> Result<Option<Vec<f32>>> {
        for part in &self.parts {
            if let Some(tensor) = part.tensors.iter().find(|t| t.name == name) {
                if tensor.ggml_type != GgmlType(0) {
                    return Err(Error::Gguf {
                        path: part.path.clone(),
                        problem: format!("'{name}' is {}, expected F32", tensor.ggml_type),
                    });
                }
                let values = part
                    .tensor_bytes(tensor)
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                return Ok(Some(values));
            }
        }
        Ok(None)
    }

    /// Tensor count per ggml type, most bytes first: what a file's quantization really is
    /// (a "Q4_K_M" file mixes Q4_K, Q6_K and F32).
    pub fn type_summary(&self) -> Vec<(GgmlType, usize, u64)> {
        let mut by_type: Vec<(GgmlType, usize, u64)> = Vec::new();
        for tensor in self.tensors() {
            match by_type.iter_mut().find(|(t, _, _)| *t == tensor.ggml_type) {
                Some(entry) => {
                    entry.1 += 1;
                    entry.2 += tensor.size_bytes;
                }
                None => by_type.push((tensor.ggml_type, 1, tensor.size_bytes)),
            }
        }
        by_type.sort_by(|a, b| b.2.cmp(&a.2).then(a.0.cmp(&b.0)));
        by_type
    }
}

/// llama.cpp's `general.file_type` (`llama_ftype`) names: how the file was quantized as a whole.
fn file_type_name(code: u64) -> Option<&'static str> {
    Some(match code {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        19 => "IQ2_XXS",
        20 => "IQ2_XS",
        21 => "Q2_K_S",
        22 => "IQ3_XS",
        23 => "IQ3_XXS",
        24 => "IQ1_S",
        25 => "IQ4_NL",
        26 => "IQ3_S",
        27 => "IQ3_M",
        28 => "IQ2_S",
        29 => "IQ2_M",
        30 => "IQ4_XS",
        31 => "IQ1_M",
        32 => "BF16",
        36 => "TQ1_0",
        37 => "TQ2_0",
        38 => "MXFP4_MOE",
        39 => "NVFP4",
        40 => "Q1_0",
        _ => return None,
    })
}

impl GgufModel {
    /// `(label, text)` lines for `info`: format, architecture, quantization by tensor type, the
    /// architecture's own keys (expert counts, gating function, rope …) and the tokenizer.
    pub fn describe(&self) -> Vec<(String, String)> {
        let first = self.metadata();
        let mut lines = Vec::new();
        let parts = match self.parts.len() {
            1 => "1 file".to_owned(),
            n => format!("{n} files (split)"),
        };
        lines.push((
            "format".into(),
            format!(
                "GGUF v{}, {parts}, {} tensors",
                first.version,
                self.tensors().count()
            ),
        ));
        let arch = first.architecture().unwrap_or("");
        let name = first.get("general.name").and_then(MetaValue::as_str);
        lines.push((
            "architecture".into(),
            match (arch, name) {
                ("", _) => "none given (general.architecture is missing)".into(),
                (arch, Some(name)) => format!("{arch} ({name})"),
                (arch, None) => arch.to_owned(),
            },
        ));
        if let Some(code) = first.get("general.file_type").and_then(MetaValue::as_u64) {
            lines.push((
                "file type".into(),
                file_type_name(code).map_or_else(|| format!("code {code}"), str::to_owned),
            ));
        }
        let types = self
            .type_summary()
            .iter()
            .map(|(t, n, bytes)| format!("{t} {n} ({})", crate::units::human_bytes(*bytes)))
            .collect::<Vec<_>>()
            .join(", ");
        lines.push(("tensor types".into(), types));
        if !arch.is_empty() {
            let prefix = format!("{arch}.");
            for (key, value) in &first.metadata {
                if let Some(short) = key.strip_prefix(&prefix) {
                    lines.push((short.to_owned(), value.to_string()));
                }
            }
        }
        let tokenizer = first
            .get("tokenizer.ggml.model")
            .and_then(MetaValue::as_str);
        let vocabulary = match first.get("tokenizer.ggml.tokens") {
            Some(MetaValue::Array(a)) => Some(a.len),
            _ => None,
        };
        lines.push((
            "tokenizer".into(),
            match (tokenizer, vocabulary) {
                (Some(model), Some(n)) => format!("{model}, {n} tokens"),
                (Some(model), None) => model.to_owned(),
                (None, _) => "none".into(),
            },
        ));
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_names_are_recognised() {
        assert_eq!(
            split_name(Path::new("/m/Qwen3-30B-A3B-Q4_K_M-00002-of-00003.gguf")),
            Some(("Qwen3-30B-A3B-Q4_K_M".into(), 3))
        );
        assert_eq!(split_name(Path::new("model.gguf")), None);
        assert_eq!(split_name(Path::new("m-00004-of-00003.gguf")), None);
        assert_eq!(split_name(Path::new("m-1-of-3.gguf")), None);
    }

    #[test]
    fn types_know_their_blocks() {
        assert_eq!(GgmlType(12).to_string(), "Q4_K");
        assert_eq!(GgmlType(12).block_elements(), Some(256));
        assert_eq!(GgmlType(99).to_string(), "type 99");
    }
}
