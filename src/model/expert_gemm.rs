//! One GEMM launch for all of a layer's routed experts on a GPU.
//!
//! The tokens routed to each expert are gathered, expert by expert, into chunks of `chunk_rows`
//! rows (the last chunk of an expert padded with zero rows), so the gathered activations are
//! `[chunks · chunk_rows, K]`. [`ChunkedExpertMatmul`] multiplies every chunk by the transposed
//! weight of the expert it belongs to (`[E, N, K]`, stacked as transformers stores them) in one
//! cuBLAS pointer-array batched GEMM: a busy expert is simply several chunks pointing at the same
//! weights, so skewed routing costs at most one partial chunk of padding per expert instead of
//! padding every expert to the busiest one. The CPU implementation is the definition, for tests.

use candle_core::{CpuStorage, CustomOp2, Layout, Shape};

/// `y[j·C + r, :] = x[j·C + r, :] · W[expert_of_chunk[j]]ᵀ` for every chunk `j` and row `r < C`.
pub struct ChunkedExpertMatmul {
    /// The expert of each chunk, in chunk order.
    pub expert_of_chunk: Vec<u32>,
    /// Rows per chunk (C).
    pub chunk_rows: usize,
}

impl ChunkedExpertMatmul {
    /// Checks shapes and contiguity; returns `(rows, n, k)`.
    fn dims(&self, x: &Layout, w: &Layout) -> candle_core::Result<(usize, usize, usize)> {
        let (rows, k) = x.shape().dims2()?;
        let (experts, n, wk) = w.shape().dims3()?;
        let bad = |what: String| Err(candle_core::Error::Msg(format!("expert matmul: {what}")));
        if !x.is_contiguous() || !w.is_contiguous() {
            return bad("operands must be contiguous".into());
        }
        if wk != k || rows != self.expert_of_chunk.len() * self.chunk_rows {
            return bad(format!(
                "x {:?} does not fit {} chunks of {} rows against weights {:?}",
                x.shape(),
                self.expert_of_chunk.len(),
                self.chunk_rows,
                w.shape()
            ));
        }
        if let Some(&e) = self
            .expert_of_chunk
            .iter()
            .find(|&&e| e as usize >= experts)
        {
            return bad(format!("expert {e} out of {experts}"));
        }
        Ok((rows, n, k))
    }
}

impl CustomOp2 for ChunkedExpertMatmul {
    fn name(&self) -> &'static str {
        "chunked-expert-matmul"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        xl: &Layout,
        ws: &CpuStorage,
        wl: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (rows, n, k) = self.dims(xl, wl)?;
        let (CpuStorage::F32(x), CpuStorage::F32(w)) = (xs, ws) else {
            return Err(candle_core::Error::Msg(
                "expert matmul on the CPU is the f32 reference only".into(),
            ));
        };
        let x = &x[xl.start_offset()..];
        let w = &w[wl.start_offset()..];
        let mut y = vec![0f32; rows * n];
        for (j, &e) in self.expert_of_chunk.iter().enumerate() {
            let we = &w[e as usize * n * k..(e as usize + 1) * n * k];
            for r in j * self.chunk_rows..(j + 1) * self.chunk_rows {
                let xr = &x[r * k..(r + 1) * k];
                for (c, yc) in y[r * n..(r + 1) * n].iter_mut().enumerate() {
                    *yc = xr
                        .iter()
                        .zip(&we[c * k..(c + 1) * k])
                        .map(|(a, b)| a * b)
                        .sum();
                }
            }
        }
        Ok((CpuStorage::F32(y), Shape::from((rows, n))))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        xs: &candle_core::CudaStorage,
        xl: &Layout,
        ws: &candle_core::CudaStorage,
        wl: &Layout,
    ) -> candle_core::Result<(candle_core::CudaStorage, Shape)> {
        use candle_core::cuda_backend::cudarc::cublas::sys::cudaDataType_t as T;
        use candle_core::cuda_backend::CudaStorageSlice as S;
        let (rows, n, k) = self.dims(xl, wl)?;
        let storage = match (&xs.slice, &ws.slice) {
            (S::BF16(x), S::BF16(w)) => self.cuda_gemm(xs, x, xl, w, wl, (n, k), T::CUDA_R_16BF)?,
            (S::F16(x), S::F16(w)) => self.cuda_gemm(xs, x, xl, w, wl, (n, k), T::CUDA_R_16F)?,
            (S::F32(x), S::F32(w)) => self.cuda_gemm(xs, x, xl, w, wl, (n, k), T::CUDA_R_32F)?,
            _ => {
                return Err(candle_core::Error::Msg(
                    "expert matmul: operands must share a float dtype (f32, bf16, f16)".into(),
                ))
            }
        };
        Ok((storage, Shape::from((rows, n))))
    }
}

#[cfg(feature = "cuda")]
impl ChunkedExpertMatmul {
    /// Row-major `y = x · Wᵀ` per chunk is column-major `yᵀ = W · xᵀ`: cuBLAS sees W (`[N, K]`
    /// row-major = `K × N` column-major) transposed, x as is, and writes y in place, exactly as
    /// candle's own matmul maps a row-major product onto cuBLAS.
    #[allow(clippy::too_many_arguments)]
    fn cuda_gemm<D>(
        &self,
        xs: &candle_core::CudaStorage,
        x: &candle_core::cuda_backend::cudarc::driver::CudaSlice<D>,
        xl: &Layout,
        w: &candle_core::cuda_backend::cudarc::driver::CudaSlice<D>,
        wl: &Layout,
        (n, k): (usize, usize),
        data_type: candle_core::cuda_backend::cudarc::cublas::sys::cudaDataType_t,
    ) -> candle_core::Result<candle_core::CudaStorage>
    where
        D: candle_core::cuda_backend::CudaDType
            + candle_core::cuda_backend::cudarc::driver::DeviceRepr,
    {
        use candle_core::cuda_backend::cudarc::cublas::sys;
        use candle_core::cuda_backend::cudarc::driver::{DevicePtr, DevicePtrMut};
        let device = &xs.device;
        let stream = device.cuda_stream();
        let chunks = self.expert_of_chunk.len();
        let c = self.chunk_rows;
        let elem = std::mem::size_of::<D>() as u64;
        // SAFETY: every element of `y` is written by the GEMM below (beta = 0) before any read.
        let mut y = unsafe { device.alloc::<D>(chunks * c * n)? };
        let status = {
            let (x_ptr, _x_guard) = x.device_ptr(&stream);
            let (w_ptr, _w_guard) = w.device_ptr(&stream);
            let (y_ptr, _y_guard) = y.device_ptr_mut(&stream);
            let x_base = x_ptr + xl.start_offset() as u64 * elem;
            let w_base = w_ptr + wl.start_offset() as u64 * elem;
            // Three pointer arrays in one upload: weights, activations, outputs per chunk.
            let mut pointers = Vec::with_capacity(3 * chunks);
            pointers.extend(
                self.expert_of_chunk
                    .iter()
                    .map(|&e| w_base + e as u64 * (n * k) as u64 * elem),
            );
            pointers.extend((0..chunks).map(|j| x_base + (j * c * k) as u64 * elem));
            pointers.extend((0..chunks).map(|j| y_ptr + (j * c * n) as u64 * elem));
            let on_device = device.clone_htod(&pointers)?;
            let (p, _p_guard) = on_device.device_ptr(&stream);
            let at = |i: usize| (p + (i * chunks * 8) as u64) as usize;
            let (alpha, beta) = (1f32, 0f32);
            let blas = device.cublas_handle();
            // SAFETY: the pointer arrays hold `chunks` device pointers each, into buffers whose
            // sizes `dims` checked (x: chunks·C rows of K; W: E·N·K; y: chunks·C·N); alpha and
            // beta are f32 as CUBLAS_COMPUTE_32F requires; the GEMM is queued on the stream that
            // owns every buffer, and the pointer array is freed in stream order after it.
            unsafe {
                sys::cublasGemmBatchedEx(
                    *blas.handle(),
                    sys::cublasOperation_t::CUBLAS_OP_T,
                    sys::cublasOperation_t::CUBLAS_OP_N,
                    n as i32,
                    c as i32,
                    k as i32,
                    (&alpha as *const f32).cast(),
                    at(0) as *const *const std::ffi::c_void,
                    data_type,
                    k as i32,
                    at(1) as *const *const std::ffi::c_void,
                    data_type,
                    k as i32,
                    (&beta as *const f32).cast(),
                    at(2) as *const *mut std::ffi::c_void,
                    data_type,
                    n as i32,
                    chunks as i32,
                    sys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
                    sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
                )
            }
        };
        if status != sys::cublasStatus_t::CUBLAS_STATUS_SUCCESS {
            return Err(candle_core::Error::Msg(format!(
                "expert matmul: cublasGemmBatchedEx failed: {status:?}"
            )));
        }
        Ok(candle_core::CudaStorage::wrap_cuda_slice(y, device.clone()))
    }
}

/// Rows per chunk for these per-expert row counts: the candidate with the least padded rows plus
/// a fixed cost of 32 rows per chunk (a heuristic for each chunk's own tile set-up), so small
/// batches get small chunks and busy experts are not cut into many.
pub fn chunk_rows(counts: &[usize]) -> usize {
    let chunks = |c: usize| counts.iter().map(|n| n.div_ceil(c)).sum::<usize>();
    [256, 128, 64, 32, 16, 8]
        .into_iter()
        .min_by_key(|&c| chunks(c) * (c + 32))
        .unwrap_or(64)
}
