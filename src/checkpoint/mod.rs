//! Reading and writing checkpoints in the layouts users bring and expect back.

pub mod tensors;
pub mod named;
