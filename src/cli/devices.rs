//! `moescope devices`: what this build can run on here.

use anyhow::Result;
use moescope::engine::device::available_devices;

pub fn devices(json: bool) -> Result<()> {
    let devices = available_devices();
    if json {
        println!("{}", serde_json::to_string_pretty(&devices)?);
        return Ok(());
    }
    for d in &devices {
        println!("{:<8} {}", d.name, d.description);
    }
    if let Some(reason) = moescope::engine::device::cuda_unavailable_reason() {
        println!("(no CUDA: {reason})");
    }
    Ok(())
}
