//! Backbone throughput (flex, the CPU backend, unless `GRAFTER_BENCH_DEVICE` says otherwise): forward passes of ResNet-18/50 and VGG-16 at
//! 224×224 (full ImageNet models: backbone + torchvision's classifier, random weights), and one
//! fine-tune step of ResNet-18, ResNet-50 and VGG-16 at batch 32 with the backbone frozen and
//! with everything trained. A criterion filter (`-- finetune_step/resnet50`) builds only the
//! models of the cases it selects.
//!
//! `benches/run_backbone_comparison.sh` runs this and `benches/backbones_reference.py`
//! (onnxruntime, and PyTorch where importable) on the same shapes and thread count, and prints
//! the ratios. Besides criterion's report, each case prints one line
//! `RUST_BENCH name=<group/case> img_per_s=<median> ms_per_iter=<median>` taken from the very
//! samples criterion measured.
//!
//! `GRAFTER_BENCH_QUICK=1` runs only `forward/resnet18/b1` and `/b8` (a smoke test).
//! `GRAFTER_BENCH_PROFILE=<batch>` skips criterion and times every op of a ResNet-18 forward
//! (`GRAFTER_BENCH_PROFILE_MODEL=resnet50`: ResNet-50's) one by one (`RUST_OP` lines: each convolution with its GFLOP/s, then totals per kind of op);
//! `benches/backbones_reference.py --ops` times the same convolutions alone on onnxruntime.
//! It also times the stem's max-pool on Burn's op against grafter's kernel. The layers run on
//! grafter's kernels (`grafter::kernels`); `GRAFTER_KERNELS=reference` measures Burn's ops.
//!
//! `GRAFTER_BENCH_DEVICE=wgpu|cuda|auto` runs the criterion cases on that device (build with
//! `--features wgpu` or `cuda`; `benches/run_gpu_benchmarks.sh` does it and records the
//! adapter's name). Every iteration ends with a device sync, so GPU timings are not just the
//! time to queue the work. `GRAFTER_BENCH_PRECISION=f16|bf16` runs the forward passes on a
//! half-precision copy of the model (`cast_for_inference`) and the fine-tune steps as the
//! loop's mixed precision does (f16/bf16 passes, f32 master weights, f16 loss scaling).

#[path = "support/parity.rs"]
mod parity;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use burn::module::{Module, ParamGroup};
use burn::nn::BatchNorm;
use burn::nn::conv::Conv2d;
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Distribution, FloatDType, Tensor};
use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput, measurement::WallTime};
use grafter::finetune::Precision;
use grafter::finetune::mixed_precision::{
    DEFAULT_LOSS_SCALE, autocast, cast_for_inference, cast_input,
};
use grafter::kernels::{ConvPrecision, conv_precision, relu, set_conv_precision};
use grafter::kernels::{batch_norm_layer, conv_bn_layer, conv2d_layer, max_pool2d_layer};
use grafter::optimizer::scale_grads;
use grafter::source::Labels;
use grafter::zoo::resnet::Block;
use grafter::zoo::{ResNetConfig, VggConfig, VggHead};
use grafter::{Backbone, Classifier, Head, LinearHead, LinearHeadConfig, Task};

const SIDE: usize = 224;
/// Classes of the fine-tune head (Food-101).
const CLASSES: usize = 101;
const LR: f64 = 1e-3;

fn quick() -> bool {
    std::env::var("GRAFTER_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0")
}

/// The device of the criterion cases: `GRAFTER_BENCH_DEVICE` (default `cpu`), through
/// `grafter::device::parse_device`; exits with the reason when it cannot be had.
fn bench_device() -> Device {
    let name = std::env::var("GRAFTER_BENCH_DEVICE").unwrap_or_else(|_| "cpu".into());
    match grafter::device::describe_device(&name) {
        Ok((device, what)) => {
            eprintln!("benchmarking on {what}");
            println!("RUST_DEVICE {what}");
            device
        }
        Err(e) => {
            eprintln!("GRAFTER_BENCH_DEVICE={name}: {e}");
            std::process::exit(2);
        }
    }
}

/// `GRAFTER_BENCH_PRECISION` (default f32).
fn precision() -> Precision {
    let name = std::env::var("GRAFTER_BENCH_PRECISION").unwrap_or_else(|_| "f32".into());
    name.parse().unwrap_or_else(|e| {
        eprintln!("GRAFTER_BENCH_PRECISION={name}: {e}");
        std::process::exit(2);
    })
}

/// Waits for the device to finish the queued work (a no-op on flex, which runs eagerly).
fn sync(device: &Device) {
    device.sync().expect("device sync failed");
}

fn images(batch: usize, device: &Device) -> Tensor<4> {
    Tensor::random([batch, 3, SIDE, SIDE], Distribution::Default, device)
}

/// Runs one case through criterion with `iter_custom`, keeps every (iterations, time) pair it
/// measured (warm-up included), and prints the median per-iteration rate.
fn bench_case(
    g: &mut BenchmarkGroup<'_, WallTime>,
    group: &str,
    case: &str,
    batch: usize,
    mut f: impl FnMut(),
) {
    let mut samples: Vec<f64> = Vec::new();
    g.throughput(Throughput::Elements(batch as u64));
    g.bench_function(case, |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                f();
            }
            let d = t.elapsed();
            samples.push(d.as_secs_f64() / iters as f64);
            d
        })
    });
    if samples.is_empty() {
        // A criterion filter excluded this case: nothing was measured.
        return;
    }
    samples.sort_by(f64::total_cmp);
    let median = samples[samples.len() / 2];
    let device = std::env::var("GRAFTER_BENCH_DEVICE").unwrap_or_else(|_| "cpu".into());
    let precision = precision();
    println!(
        "RUST_BENCH name={group}/{case} img_per_s={:.2} ms_per_iter={:.1} samples={} device={device} precision={precision}",
        batch as f64 / median,
        median * 1e3,
        samples.len()
    );
}

fn configure(g: &mut BenchmarkGroup<'_, WallTime>) {
    // Slow iterations (up to seconds each): one iteration per sample, ten samples.
    g.sampling_mode(SamplingMode::Flat);
    g.sample_size(10);
    g.warm_up_time(Duration::from_millis(500));
    g.measurement_time(Duration::from_secs(3));
}

fn forward<B: Backbone, H: Head>(
    c: &mut Criterion,
    name: &str,
    model: &Classifier<B, H>,
    batches: &[usize],
    device: &Device,
) {
    let group = format!("forward/{name}");
    let mut g = c.benchmark_group(&group);
    configure(&mut g);
    let precision = precision();
    let half;
    let model = if precision.is_mixed() {
        half = cast_for_inference(model, precision);
        &half
    } else {
        model
    };
    for &batch in batches {
        let x = cast_input(images(batch, device), precision);
        bench_case(&mut g, &group, &format!("b{batch}"), batch, || {
            let logits = model.forward(x.clone());
            std::hint::black_box(logits.into_data());
        });
    }
    g.finish();
}

/// A backbone with a 101-class head on the autodiff device, AdamW, one fixed batch: the
/// fine-tune loop's step without the data loader. `frozen`: backbone parameters take no
/// gradient and its BatchNorms run in inference mode (what `FreezePolicy` does to a frozen
/// stage); only the head is updated.
struct StepBench<B: Backbone> {
    model: Option<Classifier<B, LinearHead>>,
    precision: Precision,
    optim: ModuleOptimizer,
    images: Tensor<4>,
    targets: Tensor<2>,
}

/// Wall time of the phases of one step.
struct StepTimes {
    forward: f64,
    backward: f64,
    optimizer: f64,
}

impl<B: Backbone> StepBench<B> {
    fn new(backbone: B, frozen: bool, batch: usize, device: &Device) -> Self {
        let device = device.clone();
        let ad = device.clone().autodiff();
        let head = LinearHeadConfig::new(backbone.feature_channels(), CLASSES)
            .try_init(&device)
            .unwrap();
        let mut model = Classifier::new(backbone, head)
            .unwrap()
            .for_training(&device);
        if frozen {
            let backbone_params = ParamGroup::ids_from_module(model.backbone.clone());
            model = model.freeze_group(backbone_params);
        }
        let labels = Labels::Classes((0..batch).map(|i| i % CLASSES).collect());
        Self {
            model: Some(model),
            precision: precision(),
            optim: AdamWConfig::new().init(),
            images: images(batch, &ad),
            targets: Task::SingleLabel
                .targets(&labels, CLASSES, 0.0, &ad)
                .unwrap(),
        }
    }

    /// Forward, cross-entropy, backward, AdamW step.
    fn step(&mut self) -> StepTimes {
        let t = Instant::now();
        let model = self.model.take().unwrap();
        let p = self.precision;
        let logits = if p.is_mixed() {
            autocast(&model, p)
                .forward(cast_input(self.images.clone(), p))
                .cast(FloatDType::F32)
        } else {
            model.forward(self.images.clone())
        };
        let loss = Task::SingleLabel.loss(logits, self.targets.clone());
        let forward = t.elapsed().as_secs_f64();
        // the loop's f16 loss scaling (its default scale; no overflow at these sizes)
        let scale = if p.needs_loss_scaling() {
            DEFAULT_LOSS_SCALE
        } else {
            1.0
        };
        let loss = if scale != 1.0 {
            loss.mul_scalar(scale)
        } else {
            loss
        };
        let mut grads = GradientsParams::from_grads(loss.backward(), &model);
        if scale != 1.0 {
            scale_grads(&model, &mut grads, 1.0 / scale);
        }
        let backward = t.elapsed().as_secs_f64();
        let model = self.optim.step(LR, model, grads);
        sync(&self.images.device());
        self.model = Some(model);
        let total = t.elapsed().as_secs_f64();
        StepTimes {
            forward,
            backward: backward - forward,
            optimizer: total - backward,
        }
    }
}

fn finetune_step<B: Backbone>(
    c: &mut Criterion,
    name: &str,
    backbone: impl Fn() -> B,
    batch: usize,
    device: &Device,
) {
    let group = format!("finetune_step/{name}");
    for frozen in [true, false] {
        let case = format!("{}/b{batch}", if frozen { "frozen" } else { "full" });
        if !selected(&format!("{group}/{case}")) {
            continue;
        }
        let mut step = StepBench::new(backbone(), frozen, batch, device);
        let mut g = c.benchmark_group(&group);
        configure(&mut g);
        bench_case(&mut g, &group, &case, batch, || {
            step.step();
        });
        g.finish();
    }
}

/// Whether the criterion filter (`cargo bench --bench backbones -- FILTER`) can select
/// `name` (a case, or a group and all its cases): models are only built for the cases that will
/// run. A plain filter is a substring, as criterion matches it; a filter with regex syntax in it
/// selects everything here and criterion itself picks the cases.
fn selected(name: &str) -> bool {
    std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .all(|f| {
            let regex = f.contains(['|', '(', ')', '[', '*', '+', '?', '^', '$', '.', '\\']);
            regex || name.contains(f.as_str()) || f.starts_with(name)
        })
}

/// Wall time of each op of a ResNet-18 forward, run op by op (flex executes eagerly).
#[derive(Default)]
struct OpTimer {
    /// kind → (seconds, FLOPs)
    kinds: BTreeMap<String, (f64, f64)>,
    print: bool,
    /// Convolution + BatchNorm folded, as inference runs them.
    fused: bool,
}

impl OpTimer {
    fn time<const D: usize>(&mut self, kind: &str, f: impl FnOnce() -> Tensor<D>) -> Tensor<D> {
        let t = Instant::now();
        let y = f();
        self.kinds.entry(kind.to_string()).or_default().0 += t.elapsed().as_secs_f64();
        y
    }

    /// A convolution and its BatchNorm as the models run them: folded into one convolution
    /// (kind `convKxK+bn`) where the BatchNorm is not training, else timed one after the other.
    fn conv_bn(&mut self, name: &str, conv: &Conv2d, bn: &BatchNorm, x: Tensor<4>) -> Tensor<4> {
        if !self.fused {
            let y = self.conv(name, conv, x);
            return self.time("batchnorm", || batch_norm_layer(bn, y));
        }
        self.timed_conv(name, "conv+bn", "+bn", conv, x, |x| {
            conv_bn_layer(conv, bn, x)
        })
    }

    /// Times a convolution; when printing, also times it once more on its own and prints it.
    fn conv(&mut self, name: &str, conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
        self.timed_conv(name, "conv", "", conv, x, |x| conv2d_layer(conv, x))
    }

    /// Times `run` (a convolution `conv`, alone or with what follows it) under the kind
    /// `convKxK{suffix}` with the convolution's FLOPs; when printing, also times it on its own
    /// and prints it as `RUST_OP {label} …`.
    fn timed_conv(
        &mut self,
        name: &str,
        label: &str,
        suffix: &str,
        conv: &Conv2d,
        x: Tensor<4>,
        run: impl Fn(Tensor<4>) -> Tensor<4>,
    ) -> Tensor<4> {
        let [n, cin, h, w] = x.dims();
        let [cout, _, kh, kw] = conv.weight.dims();
        let kind = format!("conv{kh}x{kw}{suffix}");
        let y = self.time(&kind, || run(x));
        let [_, _, oh, ow] = y.dims();
        let flops = 2.0 * (n * cout * cin * kh * kw * oh * ow) as f64;
        self.kinds.get_mut(&kind).unwrap().1 += flops;
        if self.print {
            // The fastest of three runs on their own (one run is at the mercy of the box), at
            // each convolution precision in turn, alternating, where they differ (3×3 stride 1).
            let input = Tensor::zeros([n, cin, h, w], &y.device());
            let winograd = kh == 3 && kw == 3 && oh == h && ow == w;
            let precisions: &[ConvPrecision] = if winograd {
                &[ConvPrecision::High, ConvPrecision::Highest]
            } else {
                &[ConvPrecision::High]
            };
            let before = conv_precision();
            let mut best = [f64::MAX; 2];
            for _ in 0..3 {
                for (i, &p) in precisions.iter().enumerate() {
                    set_conv_precision(p);
                    let t = Instant::now();
                    drop(run(input.clone()));
                    best[i] = best[i].min(t.elapsed().as_secs_f64());
                }
            }
            set_conv_precision(before);
            let secs = best[usize::from(before == ConvPrecision::Highest && winograd)];
            let highest = if winograd {
                format!(
                    " ms_high={:.2} ms_highest={:.2}",
                    best[0] * 1e3,
                    best[1] * 1e3
                )
            } else {
                String::new()
            };
            println!(
                "RUST_OP {label} name={name} in={n}x{cin}x{h}x{w} k={kh}x{kw} s={} out={cout}x{oh}x{ow} ms={:.2} gflops={:.1}{highest}",
                h / oh,
                secs * 1e3,
                flops / secs / 1e9
            );
        }
        y
    }

    fn block(&mut self, name: &str, b: &Block, x: Tensor<4>) -> Tensor<4> {
        let identity = match &b.downsample {
            Some(d) => self.conv_bn(&format!("{name}.downsample"), &d.conv, &d.bn, x.clone()),
            None => x.clone(),
        };
        let y = self.conv_bn(&format!("{name}.conv1"), &b.conv1, &b.bn1, x);
        let y = self.time("relu", || relu(y));
        let mut y = self.conv_bn(&format!("{name}.conv2"), &b.conv2, &b.bn2, y);
        if let (Some(c3), Some(b3)) = (&b.conv3, &b.bn3) {
            let z = self.time("relu", || relu(y));
            y = self.conv_bn(&format!("{name}.conv3"), c3, b3, z);
        }
        let y = self.time("add", || y + identity);
        self.time("relu", || relu(y))
    }
}

/// The ResNet that `GRAFTER_BENCH_PROFILE_MODEL` names (`resnet18`, the default, or
/// `resnet50`: bottlenecks, mostly 1×1 convolutions).
fn profile_config() -> ResNetConfig {
    match std::env::var("GRAFTER_BENCH_PROFILE_MODEL").as_deref() {
        Ok("resnet50") => ResNetConfig::resnet50(),
        Ok("resnet18") | Err(_) => ResNetConfig::resnet18(),
        Ok(other) => {
            panic!("GRAFTER_BENCH_PROFILE_MODEL must be resnet18 or resnet50, not {other}")
        }
    }
}

/// `GRAFTER_BENCH_PROFILE=<batch>`: where the time of a ResNet forward goes, op by op.
fn profile_resnet(batch: usize) {
    let device = Device::flex();
    let backbone = profile_config().init(&device);
    let head = LinearHeadConfig::new(backbone.feature_channels(), 1000)
        .try_init(&device)
        .unwrap();
    let model = Classifier::new(backbone, head).unwrap();
    let r = &model.backbone;
    let x = images(batch, &device);
    let whole = |x: Tensor<4>| {
        let t = Instant::now();
        std::hint::black_box(model.forward(x).into_data());
        t.elapsed().as_secs_f64()
    };
    whole(x.clone());
    let whole_secs = (0..3).map(|_| whole(x.clone())).fold(f64::MAX, f64::min);
    // Pass 0 warms up, pass 1 prints each conv (timed on its own), pass 2 is the breakdown.
    let mut timer = OpTimer::default();
    for pass in 0..3 {
        timer = OpTimer {
            print: pass == 1,
            fused: true,
            ..OpTimer::default()
        };
        let y = timer.conv_bn("conv1", &r.conv1, &r.bn1, x.clone());
        let y = timer.time("relu", || relu(y));
        let mut y = timer.time("maxpool", || max_pool2d_layer(&r.maxpool, y));
        for (l, layer) in [&r.layer1, &r.layer2, &r.layer3, &r.layer4]
            .into_iter()
            .enumerate()
        {
            for (i, b) in layer.iter().enumerate() {
                y = timer.block(&format!("layer{}.{i}", l + 1), b, y);
            }
        }
        let logits = timer.time("head", || model.head.forward(y));
        std::hint::black_box(logits.into_data());
    }
    // The stem's max-pool again, by Burn's op (flex) and by grafter's kernel.
    let stem = relu(r.bn1.forward(conv2d_layer(&r.conv1, x.clone())));
    let reference = r.maxpool.forward(stem.clone());
    let (mut t_flex, mut t_grafter) = (f64::MAX, f64::MAX);
    let mut ours = reference.clone();
    for _ in 0..3 {
        let t = Instant::now();
        drop(r.maxpool.forward(stem.clone()));
        t_flex = t_flex.min(t.elapsed().as_secs_f64());
        let t = Instant::now();
        ours = max_pool2d_layer(&r.maxpool, stem.clone());
        t_grafter = t_grafter.min(t.elapsed().as_secs_f64());
    }
    let diff: f32 = (ours - reference).abs().max().into_scalar();
    println!(
        "RUST_OP maxpool-stem b={batch} flex_ms={:.1} grafter_ms={:.1} max_abs_diff={diff:e}",
        t_flex * 1e3,
        t_grafter * 1e3
    );

    print_kinds("RUST_OP", batch, &timer);
    println!(
        "RUST_OP total b={batch} ops_ms={:.1} whole_forward_ms={:.1} img_per_s={:.2}",
        timer.kinds.values().map(|v| v.0).sum::<f64>() * 1e3,
        whole_secs * 1e3,
        batch as f64 / whole_secs
    );

    // The same forward as a training step records it: autodiff, BatchNorm on batch statistics,
    // max-pool keeping its argmax.
    let train = model.for_training(&device);
    let r = &train.backbone;
    let x = images(batch, &device.clone().autodiff());
    let mut timer = OpTimer::default();
    for _ in 0..2 {
        timer = OpTimer::default();
        let y = timer.conv_bn("conv1", &r.conv1, &r.bn1, x.clone());
        let y = timer.time("relu", || relu(y));
        let mut y = timer.time("maxpool", || max_pool2d_layer(&r.maxpool, y));
        for (l, layer) in [&r.layer1, &r.layer2, &r.layer3, &r.layer4]
            .into_iter()
            .enumerate()
        {
            for (i, b) in layer.iter().enumerate() {
                y = timer.block(&format!("layer{}.{i}", l + 1), b, y);
            }
        }
        drop(timer.time("head", || train.head.forward(y)));
    }
    print_kinds("RUST_TRAIN_OP", batch, &timer);
}

/// One line per op kind: time, share, and GFLOP/s for convolutions.
fn print_kinds(tag: &str, batch: usize, timer: &OpTimer) {
    let total: f64 = timer.kinds.values().map(|v| v.0).sum();
    for (kind, (secs, flops)) in &timer.kinds {
        let gflops = if *flops > 0.0 {
            format!(" gflops={:.1}", flops / secs / 1e9)
        } else {
            String::new()
        };
        println!(
            "{tag} kind={kind} b={batch} ms={:.1} share={:.1}%{gflops}",
            secs * 1e3,
            100.0 * secs / total
        );
    }
}

/// `GRAFTER_BENCH_PROFILE=<batch>`, second part: the phases of one full fine-tune step.
fn profile_step(batch: usize) {
    let device = Device::flex();
    let mut step = StepBench::new(profile_config().init(&device), false, batch, &device);
    step.step();
    let runs: Vec<StepTimes> = (0..6)
        .map(|_| step.step())
        .inspect(|r| {
            eprintln!(
                "step {:.0} ms",
                (r.forward + r.backward + r.optimizer) * 1e3
            )
        })
        .collect();
    let phases = [
        ("forward", runs.iter().map(|r| r.forward).sum::<f64>()),
        ("backward", runs.iter().map(|r| r.backward).sum()),
        ("optimizer", runs.iter().map(|r| r.optimizer).sum()),
    ];
    let total: f64 = phases.iter().map(|p| p.1).sum();
    for (name, secs) in phases {
        println!(
            "RUST_STEP phase={name} b={batch} ms={:.1} share={:.1}%",
            secs * 1e3 / runs.len() as f64,
            100.0 * secs / total
        );
    }
}

fn main() {
    if let Some(batch) = std::env::var("GRAFTER_BENCH_PROFILE")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        profile_resnet(batch);
        profile_step(batch);
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    let device = bench_device();
    let quick = quick();
    if !quick {
        parity::print_parity(&device);
    }

    let resnet = |cfg: ResNetConfig| {
        let backbone = cfg.init(&device);
        let head = LinearHeadConfig::new(backbone.feature_channels(), 1000)
            .try_init(&device)
            .unwrap();
        Classifier::new(backbone, head).unwrap()
    };
    let batches: &[usize] = if quick { &[1, 8] } else { &[1, 8, 32] };
    if selected("forward/resnet18") {
        let model = resnet(ResNetConfig::resnet18());
        forward(&mut c, "resnet18", &model, batches, &device);
    }
    if quick {
        c.final_summary();
        return;
    }
    if selected("forward/resnet50") {
        let model = resnet(ResNetConfig::resnet50());
        forward(&mut c, "resnet50", &model, batches, &device);
    }
    if selected("forward/vgg16") {
        let vgg = Classifier::new(
            VggConfig::vgg16().init(&device),
            VggHead::new(1000, 0.5, &device),
        )
        .unwrap();
        forward(&mut c, "vgg16", &vgg, batches, &device);
    }
    finetune_step(
        &mut c,
        "resnet18",
        || ResNetConfig::resnet18().init(&device),
        32,
        &device,
    );
    finetune_step(
        &mut c,
        "resnet50",
        || ResNetConfig::resnet50().init(&device),
        32,
        &device,
    );
    finetune_step(
        &mut c,
        "vgg16",
        || VggConfig::vgg16().init(&device),
        32,
        &device,
    );
    c.final_summary();
}
