//! The loader: deterministic order and content whatever the threads, prefetch or consumer.

use grafter_core::Preprocess;
use grafter_core::source::{DataSource, EpochRequest};
use grafter_data::{Augment, ColorJitter, ImageDataset, ImageLoader, Transform};

use crate::common::{SIDE, drain, image_folder};

fn loader(dir: &std::path::Path, threads: usize, prefetch: usize) -> ImageLoader {
    let ds = ImageDataset::image_folder(dir).unwrap();
    let aug = Augment::standard().with_jitter(ColorJitter {
        brightness: 0.3,
        contrast: 0.3,
        saturation: 0.3,
        hue: 0.05,
    });
    ImageLoader::new(ds, Preprocess::imagenet().with_input_size(SIDE, SIDE))
        .augment(aug)
        .threads(threads)
        .prefetch(prefetch)
}

#[test]
fn same_seed_and_epoch_give_the_same_batches_whatever_the_threads() {
    let dir = tempfile::tempdir().unwrap();
    image_folder(dir.path(), &["a", "b", "c"], 7);
    let one = loader(dir.path(), 1, 1);
    let four = loader(dir.path(), 4, 3);
    let req = EpochRequest {
        epoch: 2,
        seed: 11,
        batch_size: 5,
        train: true,
    };
    let (p1, l1, s1) = drain(&one, req);
    let (p4, l4, s4) = drain(&four, req);
    assert_eq!(s1, vec![5, 5, 5, 5, 1]);
    assert_eq!((&l1, &s1), (&l4, &s4));
    assert!(p1 == p4, "pixels differ between 1 and 4 threads");
    assert_eq!(p1.len(), 21 * 3 * SIDE * SIDE);

    let (p_next, l_next, _) = drain(&one, EpochRequest { epoch: 3, ..req });
    assert_ne!(l_next, l1, "another epoch shuffles differently");
    assert_ne!(p_next, p1);

    // Evaluation: dataset order, no augmentation, equal to the eval transform of each file.
    let eval = EpochRequest {
        train: false,
        ..req
    };
    let (pe, le, _) = drain(&four, eval);
    let ds = four.dataset();
    let labels: Vec<usize> = ds
        .samples()
        .iter()
        .map(|s| s.target.primary().unwrap())
        .collect();
    assert_eq!(le, labels);
    let t = Transform::new(Preprocess::imagenet().with_input_size(SIDE, SIDE));
    let first = grafter_data::decode::decode_file(&ds.samples()[0].path, &ds.limits()).unwrap();
    assert_eq!(&pe[..3 * SIDE * SIDE], &t.eval(&first)[..]);
    // samples are named by their files, in evaluation order
    let last = ds.samples().len() - 1;
    assert_eq!(
        four.sample_name(last),
        Some(ds.samples()[last].path.display().to_string())
    );
    assert_eq!(four.sample_name(last + 1), None);
}

#[test]
fn dropping_the_iterator_early_stops_the_prefetch_thread() {
    let dir = tempfile::tempdir().unwrap();
    image_folder(dir.path(), &["a", "b"], 6);
    let l = loader(dir.path(), 2, 1);
    let req = EpochRequest {
        epoch: 0,
        seed: 1,
        batch_size: 2,
        train: true,
    };
    let first = l.batches(req).next().unwrap().unwrap();
    assert_eq!(first.shape, [2, 3, SIDE, SIDE]);
    // A full pass afterwards still works and matches a fresh loader.
    let (a, _, _) = drain(&l, req);
    let (b, _, _) = drain(&loader(dir.path(), 1, 4), req);
    assert!(a == b);
}
