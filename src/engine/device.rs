//! Device and dtype selection from user-facing names (`cpu`, `cuda`, `cuda:1`; `f32`, `bf16`, `f16`).

use crate::error::{Error, Result};
use candle_core::{DType, Device};

/// Parses a device name and opens it; an unavailable GPU is an error.
pub fn open_device(name: &str) -> Result<Device> {
    match parse_device(name)? {
        None => Ok(Device::Cpu),
        Some(ordinal) => open_cuda(ordinal),
    }
}

/// Opens `name`, or the CPU when the GPU cannot be used, with the reason as a message for the user
/// (no driver, no device, a CPU-only build). Unknown names are still errors.
pub fn open_device_or_cpu(name: &str) -> Result<(Device, Option<String>)> {
    match parse_device(name)? {
        None => Ok((Device::Cpu, None)),
        Some(ordinal) => match open_cuda(ordinal) {
            Ok(device) => Ok((device, None)),
            Err(e) => Ok((
                Device::Cpu,
                Some(format!("{e}; running on the CPU instead")),
            )),
        },
    }
}

/// `None` for the CPU, the CUDA ordinal otherwise.
fn parse_device(name: &str) -> Result<Option<usize>> {
    let name = name.trim().to_ascii_lowercase();
    if name == "cpu" {
        return Ok(None);
    }
    match name.strip_prefix("cuda") {
        Some("") => Ok(Some(0)),
        Some(rest) => rest
            .strip_prefix(':')
            .and_then(|n| n.parse::<usize>().ok())
            .map(Some)
            .ok_or_else(|| {
                Error::Device(format!(
                    "cannot parse device '{name}': use cpu, cuda or cuda:N"
                ))
            }),
        None => Err(Error::Device(format!(
            "unknown device '{name}': use cpu, cuda or cuda:N"
        ))),
    }
}

/// A device the app can run on, for menus and `moescope devices`.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct DeviceInfo {
    /// What `--device` takes: `cpu`, `cuda:0`.
    pub name: String,
    /// For people: `CPU, 16 threads`, `NVIDIA H100 80GB HBM3, 79.1 GiB`.
    pub description: String,
}

/// The CPU and every CUDA device this build can open on this machine. Never fails: a missing
/// driver or a CPU-only build lists the CPU alone.
pub fn available_devices() -> Vec<DeviceInfo> {
    let mut devices = vec![DeviceInfo {
        name: "cpu".into(),
        description: format!("CPU, {} threads", candle_core::utils::get_num_threads()),
    }];
    devices.extend(cuda::devices());
    devices
}

/// Why CUDA cannot be used on this machine, or `None` when it can be tried.
pub fn cuda_unavailable_reason() -> Option<String> {
    cuda::unavailable_reason()
}

fn open_cuda(ordinal: usize) -> Result<Device> {
    if let Some(reason) = cuda::unavailable_reason() {
        return Err(Error::Device(format!(
            "cuda:{ordinal} unavailable: {reason}"
        )));
    }
    cuda::open(ordinal)
}

#[cfg(feature = "cuda")]
mod cuda {
    use super::DeviceInfo;
    use crate::error::{Error, Result};
    use candle_core::Device;

    /// Shared libraries the CUDA backend loads, by the names the loader looks for. Probing them
    /// first turns "no driver here" into a message instead of a panic inside the CUDA bindings.
    #[cfg(not(windows))]
    const LIBRARIES: &[(&str, &[&str])] = &[
        ("the NVIDIA driver", &["libcuda.so.1", "libcuda.so"]),
        ("cuBLAS", &["libcublas.so.13", "libcublas.so"]),
        ("cuBLASLt", &["libcublasLt.so.13", "libcublasLt.so"]),
        ("cuRAND", &["libcurand.so.10", "libcurand.so"]),
    ];
    #[cfg(windows)]
    const LIBRARIES: &[(&str, &[&str])] = &[
        ("the NVIDIA driver", &["nvcuda.dll"]),
        ("cuBLAS", &["cublas64_13.dll"]),
        ("cuBLASLt", &["cublasLt64_13.dll"]),
        ("cuRAND", &["curand64_10.dll"]),
    ];

    pub fn unavailable_reason() -> Option<String> {
        let missing: Vec<String> = LIBRARIES
            .iter()
            .filter(|(_, names)| {
                // SAFETY: loading a system CUDA library runs its initializers, which is what the
                // CUDA backend does anyway moments later; the handle is dropped at once.
                !names
                    .iter()
                    .any(|&n| unsafe { libloading::Library::new(n) }.is_ok())
            })
            .map(|(what, names)| format!("{what} ({})", names[0]))
            .collect();
        if !missing.is_empty() {
            return Some(format!("CUDA libraries not found: {}", missing.join(", ")));
        }
        match device_count() {
            Ok(0) => Some("no CUDA device found".into()),
            Ok(_) => None,
            Err(e) => Some(e),
        }
    }

    fn device_count() -> std::result::Result<usize, String> {
        use candle_core::cuda_backend::cudarc::driver::CudaContext;
        std::panic::catch_unwind(CudaContext::device_count)
            .map_err(|_| "the CUDA driver failed to start".to_owned())?
            .map(|n| n.max(0) as usize)
            .map_err(|e| format!("the CUDA driver failed to start: {e}"))
    }

    pub fn open(ordinal: usize) -> Result<Device> {
        let cannot = |e: String| Error::Device(format!("cannot open cuda:{ordinal}: {e}"));
        let device = std::panic::catch_unwind(|| Device::new_cuda(ordinal))
            .map_err(|_| cannot("the CUDA backend panicked".into()))?
            .map_err(|e| cannot(e.to_string()))?;
        // Without memory pools (old drivers) candle allocates synchronously and this does not
        // apply, so a failure here only costs speed.
        let _ = keep_freed_memory(&device);
        Ok(device)
    }

    /// Lets the device's memory pool keep what is freed instead of handing it back to the driver
    /// at every synchronization. candle allocates every op's output with `cuMemAllocAsync`, and a
    /// pool's default release threshold is 0: each sync (the router's copy of its logits to the
    /// host, the timed phase laps) returned all free memory, so the next layer's buffers were
    /// mapped afresh. PyTorch's caching allocator never does that.
    fn keep_freed_memory(device: &Device) -> std::result::Result<(), String> {
        use candle_core::cuda_backend::cudarc::driver::sys;
        let Device::Cuda(cuda) = device else {
            return Ok(());
        };
        let stream = cuda.cuda_stream();
        let context = stream.context();
        context.bind_to_thread().map_err(|e| e.to_string())?;
        let mut pool: sys::CUmemoryPool = std::ptr::null_mut();
        let mut threshold = u64::MAX;
        // SAFETY: plain driver calls on this context's device with valid out-pointers; the
        // attribute's value is a u64 as the driver API documents.
        let status = unsafe {
            match sys::cuDeviceGetMemPool(&mut pool, context.cu_device()) {
                sys::CUresult::CUDA_SUCCESS => sys::cuMemPoolSetAttribute(
                    pool,
                    sys::CUmemPool_attribute::CU_MEMPOOL_ATTR_RELEASE_THRESHOLD,
                    (&mut threshold as *mut u64).cast(),
                ),
                other => other,
            }
        };
        match status {
            sys::CUresult::CUDA_SUCCESS => Ok(()),
            other => Err(format!("cannot configure its memory pool: {other:?}")),
        }
    }

    /// (free, total) bytes of `device`'s memory.
    pub fn memory(device: &Device) -> Option<(u64, u64)> {
        let Device::Cuda(cuda) = device else {
            return None;
        };
        let context = cuda.cuda_stream().context().clone();
        context.bind_to_thread().ok()?;
        let (free, total) = context.mem_get_info().ok()?;
        Some((free as u64, total as u64))
    }

    pub fn devices() -> Vec<DeviceInfo> {
        use candle_core::cuda_backend::cudarc::driver::CudaContext;
        if unavailable_reason().is_some() {
            return Vec::new();
        }
        (0..device_count().unwrap_or(0))
            .map(|i| {
                let described = std::panic::catch_unwind(|| {
                    let ctx = CudaContext::new(i).ok()?;
                    let gib = ctx.total_mem().ok()? as f64 / (1u64 << 30) as f64;
                    Some(format!("{}, {gib:.1} GiB", ctx.name().ok()?))
                });
                DeviceInfo {
                    name: format!("cuda:{i}"),
                    description: described
                        .ok()
                        .flatten()
                        .unwrap_or_else(|| "CUDA device".into()),
                }
            })
            .collect()
    }
}

#[cfg(not(feature = "cuda"))]
mod cuda {
    use super::DeviceInfo;
    use crate::error::{Error, Result};
    use candle_core::Device;

    pub fn unavailable_reason() -> Option<String> {
        Some("this build has no CUDA support (build with --features cuda)".into())
    }

    pub fn open(ordinal: usize) -> Result<Device> {
        Err(Error::Device(format!("cuda:{ordinal}: no CUDA support")))
    }

    pub fn memory(_device: &Device) -> Option<(u64, u64)> {
        None
    }

    pub fn devices() -> Vec<DeviceInfo> {
        Vec::new()
    }
}

/// Refuses to load `needed_bytes` of weights onto a GPU that has less free memory (with a tenth
/// to spare for activations), with both sizes in the message: a clear error, not a crash half
/// way through loading, and no silent CPU fallback. The CPU maps weights and needs no check.
pub fn check_fits(device: &Device, needed_bytes: u64) -> Result<()> {
    let Some((free, total)) = cuda::memory(device) else {
        return Ok(());
    };
    if needed_bytes + needed_bytes / 10 > free {
        let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
        return Err(Error::Device(format!(
            "the weights need {:.1} GiB on {} but only {:.1} GiB of its {:.1} GiB are free: use a smaller dtype (--dtype bf16), another GPU, or the CPU (--device cpu), which maps the file instead of loading it",
            gib(needed_bytes),
            device_label(device),
            gib(free),
            gib(total)
        )));
    }
    Ok(())
}

/// A short device label for traces (`cpu`, `cuda:0`).
pub fn device_label(device: &Device) -> String {
    match device.location() {
        candle_core::DeviceLocation::Cpu => "cpu".into(),
        candle_core::DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        candle_core::DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

pub fn parse_dtype(name: &str) -> Result<DType> {
    match name.trim().to_ascii_lowercase().as_str() {
        "f32" | "float32" => Ok(DType::F32),
        "bf16" | "bfloat16" => Ok(DType::BF16),
        "f16" | "float16" => Ok(DType::F16),
        other => Err(Error::Device(format!(
            "unknown dtype '{other}': use f32, bf16 or f16"
        ))),
    }
}

pub fn dtype_label(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "f32",
        DType::BF16 => "bf16",
        DType::F16 => "f16",
        _ => "other",
    }
}
