//! Shared by the integration tests: every float parameter and running statistic of a module,
//! with its module path, as host values (to compare weights bit for bit).

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;

/// Every float parameter and running statistic, with its module path, in visiting order.
pub fn params<M: Module>(module: &M) -> Vec<(String, Vec<f32>)> {
    struct Collect(Vec<(String, Vec<f32>)>, Vec<String>);
    impl ModuleVisitor for Collect {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.1.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.1.pop();
        }
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            let v = p
                .val()
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .unwrap();
            self.0.push((self.1.join("."), v));
        }
    }
    let mut c = Collect(Vec::new(), Vec::new());
    module.visit(&mut c);
    c.0
}

/// Checks a training run against its policy, parameter by parameter (`before` and `after` from
/// [`params`]): those under one of the `frozen` module paths must be bit-identical, every other
/// one must have changed. `context` ends the failure messages. Returns the (frozen, trained)
/// counts, for the caller to check against the architecture.
#[allow(dead_code)] // not every test crate that includes this file trains
pub fn frozen_and_trained(
    before: &[(String, Vec<f32>)],
    after: &[(String, Vec<f32>)],
    frozen: &[&str],
    context: &str,
) -> (usize, usize) {
    assert_eq!(
        before.len(),
        after.len(),
        "parameter count changed {context}"
    );
    let (mut kept, mut trained) = (0, 0);
    for ((name, a), (name2, b)) in before.iter().zip(after) {
        assert_eq!(name, name2);
        if frozen.iter().any(|prefix| name.starts_with(prefix)) {
            assert!(a == b, "frozen parameter {name} changed {context}");
            kept += 1;
        } else {
            assert!(
                a != b,
                "trainable parameter {name} did not change {context}"
            );
            trained += 1;
        }
    }
    (kept, trained)
}
