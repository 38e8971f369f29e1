//! Getting the wgpu device, or skipping.

use std::time::Instant;

use burn::tensor::Device;

/// The wgpu device; `None` (after printing why) when there is no adapter and
/// `GRAFTER_REQUIRE_GPU` is not `1`.
pub fn wgpu() -> Option<Device> {
    let started = Instant::now();
    match grafter::device::parse_device("wgpu") {
        Ok(device) => {
            eprintln!(
                "wgpu device {device:?} ready in {:.2}s: {:?}",
                started.elapsed().as_secs_f64(),
                device.identity()
            );
            Some(device)
        }
        Err(e) => {
            crate::skip::skip_unless_required("GRAFTER_REQUIRE_GPU", &e.to_string());
            None
        }
    }
}

/// GPU tests share one adapter (and Burn's per-process RNG): they run one at a time.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    crate::common::rng_lock()
}

/// Seconds since `t`, for the timing lines.
pub fn secs(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

#[test]
fn wgpu_is_found_or_skipped_with_a_reason() {
    let _serial = serial();
    if let Some(device) = wgpu() {
        assert_ne!(device, Device::flex());
        // a second call is answered from the cached probe
        assert_eq!(grafter::device::parse_device("wgpu").unwrap(), device);
        // a software adapter (lavapipe) is passed over by `auto`; a hardware one is taken
        let auto = grafter::device::parse_device("auto").unwrap();
        println!("auto picked {auto:?}");
    }
}

/// Hides every adapter from a child copy of this test binary (no Vulkan ICD, no EGL vendor):
/// `parse_device("wgpu")` must then be an error naming the backend, not a panic or an abort,
/// and `auto` must fall back to the CPU.
#[test]
fn without_an_adapter_wgpu_is_a_clear_error_and_auto_falls_back_to_the_cpu() {
    const CHILD: &str = "GRAFTER_GPU_TEST_NO_ADAPTER_CHILD";
    if std::env::var_os(CHILD).is_some() {
        let err = grafter::device::parse_device("wgpu").unwrap_err();
        println!("CHILD wgpu: {err}");
        let auto = grafter::device::parse_device("auto").unwrap();
        println!("CHILD auto: {auto:?}");
        assert_eq!(auto, Device::flex());
        assert!(matches!(err, grafter::GrafterError::Device { .. }), "{err}");
        assert!(err.to_string().contains("wgpu"), "{err}");
        return;
    }
    let _serial = serial();
    let t = Instant::now();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "adapter::without_an_adapter_wgpu_is_a_clear_error_and_auto_falls_back_to_the_cpu",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .env("VK_ICD_FILENAMES", "/nonexistent/grafter-no-icd.json")
        .env("VK_DRIVER_FILES", "/nonexistent/grafter-no-icd.json")
        .env(
            "__EGL_VENDOR_LIBRARY_FILENAMES",
            "/nonexistent/grafter-no-egl.json",
        )
        .env_remove("GRAFTER_REQUIRE_GPU")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("no-adapter child ({:.2}s):\n{stdout}\n{stderr}", secs(t));
    assert!(out.status.success(), "child failed: {:?}", out.status);
    assert!(stdout.contains("CHILD wgpu:"), "the child did not run");
    assert!(
        !stderr.contains("panicked"),
        "a panic message leaked: {stderr}"
    );
}
