//! Choosing the compute device at run time.
//!
//! Burn keeps the backend in the [`Device`], so the same model code trains on the CPU or a GPU;
//! what differs is which backends a build compiled in. grafter always has Burn's `flex` CPU
//! backend; its cargo features `wgpu` (Vulkan, Metal, DX12 through wgpu) and `cuda` add the GPU
//! ones. [`parse_device`] turns a name such as the `--device` flag of the examples into a
//! [`Device`], and never panics: a backend that this build lacks, or that the machine cannot
//! run (no GPU adapter, no CUDA driver), is a [`GrafterError::Device`] naming the backend.
//!
//! ```
//! use grafter_core::device::parse_device;
//!
//! // Always available.
//! let cpu = parse_device("cpu").unwrap();
//! assert_eq!(cpu, burn::tensor::Device::flex());
//!
//! // The best backend this build and this machine offer; the CPU at worst.
//! let best = parse_device("auto").unwrap();
//! # let _ = best;
//!
//! // A backend left out of the build is an error that says which feature to enable.
//! # #[cfg(not(feature = "cuda"))]
//! assert!(parse_device("cuda").unwrap_err().to_string().contains("--features cuda"));
//! ```

use burn::tensor::Device;

use crate::{GrafterError, Result};

/// The device names [`parse_device`] understands.
pub const DEVICE_NAMES: [&str; 5] = ["cpu", "flex", "wgpu", "cuda", "auto"];

/// The backends compiled into this build, in the order `"auto"` tries them.
pub fn compiled_backends() -> Vec<&'static str> {
    let mut backends = Vec::new();
    if cfg!(feature = "cuda") {
        backends.push("cuda");
    }
    if cfg!(feature = "wgpu") {
        backends.push("wgpu");
    }
    backends.push("flex");
    backends
}

/// The device called `name`:
///
/// - `"cpu"` or `"flex"`: Burn's flex CPU backend, always compiled in.
/// - `"wgpu"`: the default wgpu adapter (a discrete GPU if there is one); needs the `wgpu`
///   feature. `CUBECL_WGPU_DEFAULT_DEVICE` (e.g. `IntegratedGpu(0)`, `Cpu`) overrides the choice.
/// - `"cuda"`: CUDA device 0; needs the `cuda` feature.
/// - `"auto"`: the best that works here: CUDA, then a hardware wgpu adapter, then the CPU. The
///   choice, and why the better ones were passed over, is logged at `info` level.
///
/// Names are case-insensitive. GPU backends are probed with a tiny computation before they are
/// returned, so a device returned here works.
///
/// # Errors
///
/// [`GrafterError::Config`] for an unknown name; [`GrafterError::Device`] for a backend this
/// build does not have (naming the cargo feature that adds it) and for a backend the machine
/// cannot run (no adapter, no driver), with the backend's own explanation.
pub fn parse_device(name: &str) -> Result<Device> {
    describe_device(name).map(|(device, _)| device)
}

/// [`parse_device`], with what was found in words, for logs and run records: the wgpu
/// adapter's name, kind and driver (so a benchmark cannot silently run on a software
/// renderer), `CUDA device 0`, or the CPU's thread count.
///
/// ```
/// let (device, what) = grafter_core::device::describe_device("cpu").unwrap();
/// assert!(what.starts_with("cpu (flex"), "{what}");
/// # let _ = device;
/// ```
pub fn describe_device(name: &str) -> Result<(Device, String)> {
    match name.trim().to_ascii_lowercase().as_str() {
        "cpu" | "flex" => Ok((Device::flex(), cpu_description())),
        "wgpu" => {
            wgpu().map(|(device, adapter)| (device, format!("wgpu: {}", adapter.description)))
        }
        "cuda" => cuda().map(|device| (device, "cuda: CUDA device 0".to_string())),
        "auto" => Ok(auto()),
        other => Err(GrafterError::Config(format!(
            "unknown device `{other}`: expected one of {}",
            DEVICE_NAMES.join(", ")
        ))),
    }
}

/// The devices of a data-parallel run ([`FineTune::devices`](crate::FineTune::devices)), from
/// a comma-separated list such as the examples' `--devices` flag:
///
/// - `cpu:N` (or `flex:N`): `N` replicas on the CPU. Burn's CPU backend is one device that
///   already uses every core, so its replicas take turns: useful to check a multi-device
///   setup, or to split a batch too large for memory.
/// - `wgpu:I`: the `I`-th discrete GPU wgpu finds (probed before it is returned);
///   `cuda:I`: CUDA device `I` (needs the `cuda` feature).
/// - any name [`parse_device`] takes (`cpu`, `wgpu`, `cuda`, `auto`): that one device. A device
///   listed twice holds two replicas.
///
/// ```
/// use grafter_core::device::parse_devices;
///
/// let two = parse_devices("cpu:2").unwrap();
/// assert_eq!(two, vec![burn::tensor::Device::flex(); 2]);
/// assert!(parse_devices("cpu:0").is_err());
/// ```
///
/// # Errors
///
/// [`GrafterError::Config`] for an empty list or a bad count or index, naming the entry, and
/// whatever [`parse_device`] refuses.
pub fn parse_devices(spec: &str) -> Result<Vec<Device>> {
    let mut devices = Vec::new();
    for entry in spec.split(',').map(str::trim) {
        let bad =
            |why: &str| GrafterError::Config(format!("device list `{spec}`: `{entry}` {why}"));
        if entry.is_empty() {
            return Err(bad("is empty"));
        }
        let Some((name, number)) = entry.split_once(':') else {
            devices.push(parse_device(entry)?);
            continue;
        };
        let number: usize = number
            .trim()
            .parse()
            .map_err(|_| bad("needs a number after `:`"))?;
        match name.trim().to_ascii_lowercase().as_str() {
            "cpu" | "flex" if number == 0 => return Err(bad("asks for no replica")),
            "cpu" | "flex" if number > 64 => return Err(bad("asks for more than 64 replicas")),
            "cpu" | "flex" => devices.extend(std::iter::repeat_n(Device::flex(), number)),
            "wgpu" => devices.push(wgpu_index(number)?),
            "cuda" => devices.push(cuda_index(number)?),
            _ => return Err(bad("is not `cpu:N`, `wgpu:I` or `cuda:I`")),
        }
    }
    Ok(devices)
}

/// The `index`-th discrete GPU wgpu finds, checked to compute.
#[cfg(feature = "wgpu")]
fn wgpu_index(index: usize) -> Result<Device> {
    use burn::tensor::DeviceKind;

    wgpu()?;
    let device = Device::wgpu(DeviceKind::DiscreteGpu(index));
    computes(&device)
        .map(|()| device)
        .map_err(|e| GrafterError::Device {
            device: format!("wgpu:{index}"),
            reason: format!("discrete GPU {index} is not usable: {e}"),
        })
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_index(_: usize) -> Result<Device> {
    Err(not_compiled("wgpu"))
}

/// CUDA device `index`, checked to compute.
#[cfg(feature = "cuda")]
fn cuda_index(index: usize) -> Result<Device> {
    let device = Device::cuda(index);
    computes(&device)
        .map(|()| device)
        .map_err(|e| GrafterError::Device {
            device: format!("cuda:{index}"),
            reason: format!("CUDA device {index} is not usable: {e}"),
        })
}

#[cfg(not(feature = "cuda"))]
fn cuda_index(_: usize) -> Result<Device> {
    Err(not_compiled("cuda"))
}

fn cpu_description() -> String {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!("cpu (flex, {threads} hardware threads)")
}

fn auto() -> (Device, String) {
    match cuda() {
        Ok(device) => {
            log::info!("device auto: using cuda (CUDA device 0)");
            return (device, "cuda: CUDA device 0".to_string());
        }
        Err(e) => log::info!("device auto: not cuda: {e}"),
    }
    match wgpu() {
        Ok((device, adapter)) if !adapter.software => {
            log::info!("device auto: using wgpu ({})", adapter.description);
            return (device, format!("wgpu: {}", adapter.description));
        }
        Ok((_, adapter)) => log::info!(
            "device auto: not wgpu: its only adapter, {}, is a software renderer running on the CPU; flex is the better CPU backend",
            adapter.description
        ),
        Err(e) => log::info!("device auto: not wgpu: {e}"),
    }
    log::info!("device auto: using the CPU (flex)");
    (Device::flex(), cpu_description())
}

/// What the wgpu probe found.
#[allow(dead_code)] // built only without the `wgpu` feature, where it is never constructed
#[derive(Clone, Debug)]
struct Adapter {
    description: String,
    /// A CPU adapter (lavapipe/llvmpipe, WARP, SwiftShader).
    software: bool,
}

#[cfg(not(feature = "wgpu"))]
fn wgpu() -> Result<(Device, Adapter)> {
    Err(not_compiled("wgpu"))
}

#[cfg(not(feature = "cuda"))]
fn cuda() -> Result<Device> {
    Err(not_compiled("cuda"))
}

#[allow(dead_code)] // unused when every backend is compiled in
fn not_compiled(backend: &str) -> GrafterError {
    GrafterError::Device {
        device: backend.into(),
        reason: format!(
            "this build of grafter has no {backend} backend; rebuild with `--features \
             {backend}` (cargo feature `{backend}` of grafter or grafter-core), or use `cpu`"
        ),
    }
}

/// Initialises the default wgpu adapter once per process and checks it computes.
#[cfg(feature = "wgpu")]
fn wgpu() -> Result<(Device, Adapter)> {
    use std::sync::OnceLock;

    use burn::tensor::DeviceKind;
    use burn::tensor::wgpu::WgpuInitError;

    static PROBE: OnceLock<std::result::Result<Adapter, String>> = OnceLock::new();
    let probe = PROBE.get_or_init(|| {
        let initialised = quietly(|| match Device::wgpu_options().init_with_setup() {
            Ok((device, setup)) => {
                let info = setup.adapter.get_info();
                let adapter = Adapter {
                    description: format!(
                        "{} ({:?}, {:?}, driver {} {})",
                        info.name, info.backend, info.device_type, info.driver, info.driver_info
                    ),
                    software: info.device_type == burn::tensor::wgpu::wgpu::DeviceType::Cpu,
                };
                Ok((device, adapter))
            }
            // Someone (a tensor op, another crate) initialised the default runtime first: it is
            // registered and usable; the smoke test below checks it.
            Err(WgpuInitError::Registration { .. }) => Ok((
                Device::wgpu(DeviceKind::DefaultDevice),
                Adapter {
                    description: "default adapter (initialised before grafter probed it)".into(),
                    software: false,
                },
            )),
            Err(e) => Err(e.to_string()),
        });
        let (device, adapter) = match initialised {
            Ok(Ok(found)) => found,
            Ok(Err(e)) => return Err(e),
            Err(panic) => return Err(panic),
        };
        match computes(&device) {
            Ok(()) => {
                log::debug!("wgpu: {}", adapter.description);
                Ok(adapter)
            }
            Err(e) => Err(format!("{} does not compute: {e}", adapter.description)),
        }
    });
    match probe {
        Ok(adapter) => Ok((Device::wgpu(DeviceKind::DefaultDevice), adapter.clone())),
        Err(e) => Err(GrafterError::Device {
            device: "wgpu".into(),
            reason: format!(
                "no usable wgpu adapter: {e}. Install a Vulkan, Metal or DX12 driver (on Linux \
                 without a GPU, Mesa's lavapipe: `mesa-vulkan-drivers`), or use `cpu`"
            ),
        }),
    }
}

/// Opens CUDA device 0 once per process and checks it computes.
#[cfg(feature = "cuda")]
fn cuda() -> Result<Device> {
    use std::sync::OnceLock;

    static PROBE: OnceLock<std::result::Result<(), String>> = OnceLock::new();
    let probe = PROBE.get_or_init(|| computes(&Device::cuda(0)));
    match probe {
        Ok(()) => Ok(Device::cuda(0)),
        Err(e) => Err(GrafterError::Device {
            device: "cuda".into(),
            reason: format!(
                "CUDA device 0 is not usable: {e}. Check the NVIDIA driver (`nvidia-smi`), or \
                 use `wgpu` or `cpu`"
            ),
        }),
    }
}

/// [`smoke`] with a panic of the backend turned into the error.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
fn computes(device: &Device) -> std::result::Result<(), String> {
    quietly(|| smoke(device)).and_then(|r| r)
}

/// Adds two numbers on `device` and reads them back.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
fn smoke(device: &Device) -> std::result::Result<(), String> {
    use burn::tensor::Tensor;

    let sum = Tensor::<1>::from_floats([1.0, 2.0], device).sum();
    let data = sum.try_into_data().map_err(|e| format!("{e:?}"))?;
    let value = data
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| format!("{e:?}"))?;
    if value == [3.0] {
        Ok(())
    } else {
        Err(format!("1 + 2 gave {value:?}"))
    }
}

/// Runs `f`, turning a panic into an error with the panic's message, without printing it.
///
/// Burn and its GPU runtimes panic when a device cannot be opened. The panic hook is
/// process-wide, so it is swapped for one that stays silent on this thread only (other threads'
/// panics still print), and the swap is serialised.
#[cfg(any(feature = "wgpu", feature = "cuda"))]
fn quietly<T>(f: impl FnOnce() -> T) -> std::result::Result<T, String> {
    use std::panic::{self, AssertUnwindSafe};
    use std::sync::{Arc, Mutex};

    static HOOK: Mutex<()> = Mutex::new(());
    let _serial = HOOK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let previous: Arc<dyn Fn(&panic::PanicHookInfo<'_>) + Send + Sync> =
        Arc::from(panic::take_hook());
    let delegate = Arc::clone(&previous);
    let quiet_thread = std::thread::current().id();
    panic::set_hook(Box::new(move |info| {
        if std::thread::current().id() != quiet_thread {
            delegate(info);
        }
    }));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    panic::set_hook(Box::new(move |info| previous(info)));
    result.map_err(|payload| {
        format!(
            "the backend panicked: {}",
            crate::panic_text(payload.as_ref())
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_lists_repeat_the_cpu_and_refuse_bad_entries_by_name() {
        assert_eq!(parse_devices("cpu:3").unwrap(), vec![Device::flex(); 3]);
        assert_eq!(parse_devices("cpu, flex").unwrap(), vec![Device::flex(); 2]);
        for (spec, entry) in [
            ("cpu:0", "cpu:0"),
            ("cpu:x", "cpu:x"),
            ("cpu,", "``"),
            ("tpu:1", "tpu:1"),
            ("cpu:100", "cpu:100"),
        ] {
            let err = parse_devices(spec).unwrap_err().to_string();
            assert!(err.contains(entry), "{spec}: {err}");
        }
        assert!(
            parse_devices("tpu")
                .unwrap_err()
                .to_string()
                .contains("tpu")
        );
    }

    #[test]
    fn cpu_and_flex_are_the_flex_device() {
        assert_eq!(parse_device("cpu").unwrap(), Device::flex());
        assert_eq!(parse_device("flex").unwrap(), Device::flex());
        assert_eq!(parse_device(" CPU ").unwrap(), Device::flex());
    }

    #[test]
    fn unknown_names_are_a_config_error_listing_the_choices() {
        let err = parse_device("tpu").unwrap_err();
        assert!(matches!(err, GrafterError::Config(_)), "{err}");
        let msg = err.to_string();
        assert!(msg.contains("tpu"), "{msg}");
        for name in DEVICE_NAMES {
            assert!(msg.contains(name), "{msg}");
        }
    }

    /// Whichever GPU backends this build lacks (cuda in CI, which builds `wgpu`): an error
    /// naming the backend and the cargo feature that adds it.
    #[test]
    fn a_backend_not_compiled_in_names_itself_and_its_feature() {
        let missing: Vec<&str> = ["wgpu", "cuda"]
            .into_iter()
            .filter(|b| !compiled_backends().contains(b))
            .collect();
        for name in missing {
            let err = parse_device(&name.to_uppercase()).unwrap_err();
            assert!(matches!(err, GrafterError::Device { .. }), "{err}");
            let msg = err.to_string();
            assert!(msg.contains(&format!("no {name} backend")), "{msg}");
            assert!(msg.contains(&format!("--features {name}")), "{msg}");
        }
    }

    #[test]
    fn auto_always_finds_a_device() {
        let device = parse_device("auto").unwrap();
        if compiled_backends() == ["flex"] {
            assert_eq!(device, Device::flex());
        }
    }

    #[test]
    fn compiled_backends_end_with_flex() {
        let backends = compiled_backends();
        assert_eq!(backends.last(), Some(&"flex"));
        assert_eq!(backends.contains(&"wgpu"), cfg!(feature = "wgpu"));
        assert_eq!(backends.contains(&"cuda"), cfg!(feature = "cuda"));
    }
}
