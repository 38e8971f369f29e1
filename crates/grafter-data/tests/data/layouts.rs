//! Each dataset layout parsed from a tree the test writes; labels, classes.json, splits.

use grafter_data::image::ImageFormat;
use grafter_data::{ClassNames, Food101Split, ImageDataset, ListOptions, Target};

use crate::common::{image_folder, picture, write};

#[test]
fn image_folder_labels_follow_sorted_class_folders() {
    let dir = tempfile::tempdir().unwrap();
    image_folder(dir.path(), &["zebra", "ant", "moth"], 4);
    let ds = ImageDataset::image_folder(dir.path()).unwrap();
    assert_eq!(ds.classes().names(), ["ant", "moth", "zebra"]);
    assert_eq!(ds.len(), 12);
    assert!(ds.bad_files().is_empty(), "{}", ds.bad_files().summary());
    for s in ds.samples() {
        let class = s
            .path
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap();
        assert_eq!(
            s.target,
            Target::Class(ds.classes().index_of(class).unwrap())
        );
    }
    assert_eq!(ds.class_counts(), vec![4, 4, 4]);
}

#[test]
fn food101_layout_reads_meta_lists_and_reports_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let classes = ["apple_pie", "baby_back_ribs", "baklava"];
    std::fs::create_dir_all(root.join("meta")).unwrap();
    std::fs::write(root.join("meta/classes.txt"), classes.join("\n") + "\n").unwrap();
    let mut train = String::new();
    let mut test = String::new();
    for (c, name) in classes.iter().enumerate() {
        for i in 0..4 {
            let id = 1000 + c * 10 + i;
            write(
                &root.join(format!("images/{name}/{id}.jpg")),
                &picture(30, 22, c, i as u32),
                ImageFormat::Jpeg,
            );
            let line = format!("{name}/{id}\n");
            if i < 3 {
                train.push_str(&line)
            } else {
                test.push_str(&line)
            }
        }
    }
    train.push_str("baklava/999999\n"); // listed, missing on disk
    train.push_str("churros/1\n"); // class not in classes.txt
    std::fs::write(root.join("meta/train.txt"), &train).unwrap();
    std::fs::write(root.join("meta/test.txt"), &test).unwrap();

    let tr = ImageDataset::food101(root, Food101Split::Train).unwrap();
    let te = ImageDataset::food101(root, Food101Split::Test).unwrap();
    assert_eq!(tr.classes().names(), classes);
    assert_eq!((tr.len(), te.len()), (9, 3));
    assert_eq!(tr.class_counts(), vec![3, 3, 3]);
    for s in tr.samples().iter().chain(te.samples()) {
        let class = s
            .path
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap();
        assert_eq!(
            s.target,
            Target::Class(classes.iter().position(|c| *c == class).unwrap())
        );
    }
    let bad = tr.bad_files();
    assert_eq!(bad.len(), 2, "{}", bad.summary());
    assert!(
        bad.find(root.join("images/baklava/999999.jpg"))
            .unwrap()
            .reason
            .contains("No such file")
    );
    assert!(
        bad.find(root.join("images/churros/1.jpg"))
            .unwrap()
            .reason
            .contains("not in meta/classes.txt")
    );
}

#[test]
fn csv_list_with_names_indices_and_a_bad_label() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for i in 0..6 {
        write(
            &root.join(format!("img/{i}.png")),
            &picture(12, 10, i % 3, i as u32),
            ImageFormat::Png,
        );
    }
    std::fs::write(
        root.join("list.csv"),
        "path,label\nimg/0.png,cat\nimg/1.png,1\n\"img/2.png\",bird\nimg/3.png,7\nimg/4.png,cow\nimg/5.png\n",
    )
    .unwrap();
    let classes = ClassNames::new(vec!["cat".into(), "dog".into(), "bird".into()]).unwrap();
    let options = ListOptions {
        classes: Some(classes),
        ..Default::default()
    };
    let ds = ImageDataset::from_csv(root.join("list.csv"), options).unwrap();
    let targets: Vec<_> = ds.samples().iter().map(|s| s.target.clone()).collect();
    assert_eq!(
        targets,
        vec![Target::Class(0), Target::Class(1), Target::Class(2)]
    );
    let bad = ds.bad_files();
    assert_eq!(bad.len(), 3, "{}", bad.summary());
    assert!(
        bad.find(root.join("img/3.png"))
            .unwrap()
            .reason
            .contains("out of range for 3 classes")
    );
    assert!(
        bad.find(root.join("img/4.png"))
            .unwrap()
            .reason
            .contains("unknown class 'cow'")
    );
    assert!(
        bad.entries()
            .iter()
            .any(|e| e.reason.contains("expected 2 fields"))
    );
}

#[test]
fn jsonl_multi_label_list_infers_sorted_classes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for i in 0..3 {
        write(
            &root.join(format!("{i}.jpg")),
            &picture(16, 16, i, 0),
            ImageFormat::Jpeg,
        );
    }
    std::fs::write(
        root.join("list.jsonl"),
        "{\"path\": \"0.jpg\", \"labels\": [\"sky\", \"tree\"]}\n{\"path\": \"1.jpg\", \"labels\": [\"tree\"]}\n{\"path\": \"2.jpg\", \"labels\": []}\n",
    )
    .unwrap();
    let options = ListOptions {
        multi_label: true,
        ..Default::default()
    };
    let ds = ImageDataset::from_jsonl(root.join("list.jsonl"), options).unwrap();
    assert!(ds.is_multi_label());
    assert_eq!(ds.classes().names(), ["sky", "tree"]);
    let targets: Vec<_> = ds.samples().iter().map(|s| s.target.clone()).collect();
    assert_eq!(
        targets,
        vec![
            Target::Multi(vec![0, 1]),
            Target::Multi(vec![1]),
            Target::Multi(vec![])
        ]
    );
}

#[test]
fn classes_json_round_trips_and_rejects_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let classes = ClassNames::new(vec!["b".into(), "a".into()]).unwrap();
    let path = dir.path().join("classes.json");
    classes.save_json(&path).unwrap();
    assert_eq!(ClassNames::load_json(&path).unwrap().names(), ["b", "a"]);
    std::fs::write(&path, "[1, 2").unwrap();
    let err = ClassNames::load_json(&path).unwrap_err().to_string();
    assert!(err.contains("classes.json"), "{err}");
    assert!(ClassNames::new(vec!["a".into(), "a".into()]).is_err());
}

#[test]
fn stratified_split_is_reproducible_and_keeps_class_proportions() {
    let dir = tempfile::tempdir().unwrap();
    image_folder(dir.path(), &["a", "b", "c"], 10);
    let ds = ImageDataset::image_folder(dir.path()).unwrap();
    let (t1, v1) = ds.split_stratified(0.3, 5).unwrap();
    let (t2, v2) = ds.split_stratified(0.3, 5).unwrap();
    let (_, v3) = ds.split_stratified(0.3, 6).unwrap();
    assert_eq!(v1.samples(), v2.samples());
    assert_eq!(t1.samples(), t2.samples());
    assert_ne!(v1.samples(), v3.samples());
    assert_eq!(v1.class_counts(), vec![3, 3, 3]);
    assert_eq!(t1.class_counts(), vec![7, 7, 7]);
    for s in v1.samples() {
        assert!(!t1.samples().contains(s));
    }
    let few = ds.per_class(2, 1);
    assert_eq!(few.class_counts(), vec![2, 2, 2]);
    assert_eq!(few.samples(), ds.per_class(2, 1).samples());
    assert!(ds.split_stratified(1.5, 0).is_err());
}
