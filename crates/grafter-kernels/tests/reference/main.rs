//! grafter's kernels against Burn's reference ops on the same tensors, one test binary for all
//! of them (each binary links Burn: one per kernel cost a link and ~110 MB of disk apiece).
//! `switch.rs` stays a binary of its own: it changes the process-wide kernel choice, which
//! would route the comparisons here to Burn itself.

mod batch_norm;
mod conv;
mod conv_bn;
mod fused_relu;
mod pool;
mod relu;
