//! # hippo-memory-tasks
//!
//! HippocampAI's background memory tasks on hippo-queue.
#![warn(missing_docs)]

pub mod embed;
pub mod model;
pub mod similarity;
pub mod store;
