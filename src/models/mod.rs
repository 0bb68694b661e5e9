//! Model definitions. Each file mirrors its reference module tree.

pub mod glm4_config;
