//! Phase timing. On an asynchronous device a phase's kernels may still be running when its Rust code
//! returns, so each lap synchronizes the device first when asked to (CPU ops are synchronous).

use candle_core::Device;
use std::time::Instant;

pub struct Stopwatch<'a> {
    device: &'a Device,
    synchronize: bool,
    last: Instant,
}

impl<'a> Stopwatch<'a> {
    pub fn start(device: &'a Device, synchronize: bool) -> Self {
        Self {
            device,
            synchronize,
            last: Instant::now(),
        }
    }

    /// Milliseconds since the previous lap (or the start), after the device finished its work.
    pub fn lap_ms(&mut self) -> f64 {
        if self.synchronize {
            // A failed synchronize only makes the timing less precise; the forward pass itself
            // surfaces device errors on its next op.
            let _ = self.device.synchronize();
        }
        let now = Instant::now();
        let ms = now.duration_since(self.last).as_secs_f64() * 1e3;
        self.last = now;
        ms
    }
}
