//! # grafter-data
//!
//! Everything between image files on disk and batches on the device.

#![warn(missing_docs)]
