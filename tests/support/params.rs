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
