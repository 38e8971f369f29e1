//! The built-in policies by name, for command lines and config files: `two-phase`, `frozen`,
//! `full`, `gradual` (clap and serde parse them through [`FromStr`]).

use std::fmt;
use std::str::FromStr;

use crate::GrafterError;

use super::{FreezePolicy, Frozen, GradualUnfreeze, TrainAll, TwoPhase};

/// One of the built-in freeze policies, chosen by name.
///
/// ```
/// use grafter_core::policy::{FreezePolicy, PolicyName, TwoPhase};
///
/// let name: PolicyName = "two-phase".parse().unwrap();
/// assert_eq!(name.policy(1).name(), TwoPhase::new(1, 10.0).name());
/// assert!("thaw".parse::<PolicyName>().unwrap_err().to_string().contains("two-phase"));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyName {
    /// fastai's `fine_tune`: the head alone for `freeze_epochs`, then everything, the stages at
    /// discriminative rates spanning a factor of 10 ([`TwoPhase`]).
    TwoPhase,
    /// The backbone frozen throughout: feature extraction ([`Frozen`]).
    Frozen,
    /// Everything trains from the first step ([`TrainAll`]).
    Full,
    /// One more stage unfrozen every epoch, from the top ([`GradualUnfreeze`]).
    Gradual,
}

impl PolicyName {
    /// Every name, in the order of the variants.
    pub const ALL: [Self; 4] = [Self::TwoPhase, Self::Frozen, Self::Full, Self::Gradual];

    /// The name as parsed and printed.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TwoPhase => "two-phase",
            Self::Frozen => "frozen",
            Self::Full => "full",
            Self::Gradual => "gradual",
        }
    }

    /// The policy; `freeze_epochs` is used by `two-phase` only.
    pub fn policy(self, freeze_epochs: usize) -> Box<dyn FreezePolicy> {
        match self {
            Self::TwoPhase => Box::new(TwoPhase::new(freeze_epochs, 10.0)),
            Self::Frozen => Box::new(Frozen),
            Self::Full => Box::new(TrainAll),
            Self::Gradual => Box::new(GradualUnfreeze::new(1)),
        }
    }
}

impl fmt::Display for PolicyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PolicyName {
    type Err = GrafterError;

    fn from_str(s: &str) -> Result<Self, GrafterError> {
        let wanted = s.trim().to_ascii_lowercase().replace('_', "-");
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == wanted)
            .ok_or_else(|| {
                let names: Vec<_> = Self::ALL.iter().map(|p| p.as_str()).collect();
                GrafterError::Config(format!(
                    "unknown policy '{s}' (one of: {})",
                    names.join(", ")
                ))
            })
    }
}
