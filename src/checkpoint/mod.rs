//! Reading and writing checkpoints in the layouts users bring and expect back.

pub mod named;
pub mod tensors;
