//! A process-wide choice among a few values ([`crate::kernels`], [`crate::conv_precision`]):
//! the one last set, else the one an environment variable names, read on first use.

use std::sync::atomic::{AtomicU8, Ordering};

/// Not chosen yet: the next read consults the environment.
const UNSET: u8 = 0;

/// One setting, its values encoded as non-zero bytes by its owner.
pub(crate) struct Setting {
    value: AtomicU8,
    var: &'static str,
}

impl Setting {
    /// A setting read from the environment variable `var` until [`Setting::set`].
    pub(crate) const fn new(var: &'static str) -> Self {
        Self {
            value: AtomicU8::new(UNSET),
            var,
        }
    }

    /// The value in force: the last one set, else `from_env` of the variable (`None` when it
    /// is unset or not Unicode), which is then kept.
    pub(crate) fn get(&self, from_env: fn(Option<&str>) -> u8) -> u8 {
        match self.value.load(Ordering::Relaxed) {
            UNSET => {
                let value = from_env(std::env::var(self.var).ok().as_deref());
                self.set(value);
                value
            }
            value => value,
        }
    }

    /// Chooses `value` (non-zero) for the whole process.
    pub(crate) fn set(&self, value: u8) {
        debug_assert_ne!(value, UNSET);
        self.value.store(value, Ordering::Relaxed);
    }
}
