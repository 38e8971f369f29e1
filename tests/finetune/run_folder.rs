//! The library's run-folder glue: `grafter::datasets::Food101::locate` (real folder, refusal
//! of a wrong one, the demo set in its place) and `RunReport` (the files it writes, what its
//! summary says).

use burn::module::Module;
use burn::tensor::Device;
use grafter::data::predict::Predictor;
use grafter::data::{ClassNames, ImageDataset, ImageLoader};
use grafter::datasets::{DatasetError, Food101, Food101Source};
use grafter::run_report::RunReport;
use grafter::zoo::{ResNetConfig, Weights};
use grafter::{Classifier, FitOutcome, LinearHeadConfig, Preprocess, Task};

use crate::images::image_folder;

#[test]
fn food101_is_found_refused_or_replaced_by_the_demo_set() {
    // Burn\'s flex generator is one per process: no other training test may draw meanwhile
    let _rng = crate::common::rng_lock();
    let data_dir = tempfile::tempdir().unwrap();
    let food = |dir: Option<std::path::PathBuf>| Food101 {
        dir,
        data_dir: data_dir.path().to_path_buf(),
        demo_per_class: 3,
        ..Food101::default()
    };

    // A folder the user named that is not Food-101 is refused, naming it.
    let wrong = data_dir.path().join("photos");
    std::fs::create_dir(&wrong).unwrap();
    match food(Some(wrong.clone())).locate() {
        Err(e @ DatasetError::Layout { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains("photos") && text.contains("not a Food-101 folder"),
                "{text}"
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(!data_dir.path().join("food101-demo").exists());

    // Nothing named, nothing there: the demo set, in the Food-101 layout.
    let demo = food(None).locate().unwrap();
    assert_eq!(demo.source, Food101Source::Demo);
    assert!(demo.is_demo() && demo.describe().contains("EMBEDDED DEMO SET"));
    assert_eq!(demo.root, data_dir.path().join("food101-demo"));
    let test = ImageDataset::food101(&demo.root, grafter::data::Food101Split::Test);
    let train = ImageDataset::food101(&demo.root, grafter::data::Food101Split::Train);
    let classes = train.as_ref().unwrap().classes().len();
    assert_eq!(train.unwrap().len(), 3 * classes);
    assert_eq!(test.unwrap().len(), 2 * classes, "a third, at least 2");

    // The real thing, at data_dir/food-101 or where the user says.
    let real = data_dir.path().join("food-101");
    std::fs::create_dir_all(real.join("meta")).unwrap();
    std::fs::write(real.join("meta/classes.txt"), "pizza\n").unwrap();
    let found = food(None).locate().unwrap();
    assert_eq!((found.source, &found.root), (Food101Source::Real, &real));
    assert!(!found.is_demo() && found.describe().starts_with("Food-101 layout at"));
    assert_eq!(food(Some(real.clone())).locate().unwrap().root, real);
}

#[test]
fn run_report_writes_what_a_predictor_and_a_reader_need() {
    // Burn\'s flex generator is one per process: no other training test may draw meanwhile
    let _rng = crate::common::rng_lock();
    let (run, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let device = Device::flex();
    device.seed(3);
    image_folder(data.path(), &["a", "b", "c"], 3);
    let preprocess = Preprocess::imagenet().with_input_size(32, 32);
    let dataset = ImageDataset::image_folder(data.path()).unwrap();
    let classes: ClassNames = dataset.classes().clone();
    let loader = ImageLoader::new(dataset, preprocess.clone());
    let head = LinearHeadConfig::new(512, 3).try_init(&device).unwrap();
    let backbone = ResNetConfig::resnet18().init(&device);
    let model = Classifier::new(backbone, head).unwrap().valid();
    let test = grafter::evaluate(&model, &loader, Task::SingleLabel, 4, &device, false).unwrap();
    let outcome = FitOutcome {
        model,
        ema: None,
        history: Vec::new(),
        best: None,
        stopped_early: false,
        run_dir: None,
    };
    let report = RunReport {
        data: "three colours".into(),
        backbone: "resnet18".into(),
        weights: Weights::Random {
            reason: "a test".into(),
        },
        preprocess: preprocess.clone(),
    };
    report.write(run.path(), &outcome, &test, &classes).unwrap();

    let files = [
        "run.json",
        "test_metrics.json",
        "confusion.svg",
        "model.onnx",
        "classes.json",
        "preprocess.json",
    ];
    for file in files {
        assert!(run.path().join(file).is_file(), "{file}");
        assert!(!run.path().join(format!("{file}.tmp")).exists(), "{file}");
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.path().join("run.json")).unwrap())
            .unwrap();
    assert_eq!(json["backbone"], "resnet18");
    assert_eq!(json["data"], "three colours");
    assert_eq!(json["pretrained"], false);
    assert_eq!(json["test"]["samples"], 9);
    let svg = std::fs::read_to_string(run.path().join("confusion.svg")).unwrap();
    assert!(svg.starts_with("<svg"));
    // What it saved predicts with the run's preprocessing and classes.
    let predictor = Predictor::from_run(run.path(), &device).unwrap();
    assert_eq!(predictor.classes(), &classes);

    let summary = report.summary(run.path(), &outcome, &test);
    let top1 = format!("top-1 {:.1}%", 100.0 * test.top1);
    assert!(summary.contains(&top1), "{summary}");
    assert!(summary.contains("chance 33.3%"), "{summary}");
    assert!(summary.contains("RANDOMLY INITIALISED"), "{summary}");
}
