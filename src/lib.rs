//! arp-train: a trainer for audio role-play (ARP) models on GLM-4-Voice, after the AudioRole
//! paper's decoupled two-stage recipe. See README.md for the commands and the data layout.

pub mod atomic;
pub mod audio;
pub mod backend;
pub mod bench;
pub mod build_data;
pub mod character;
pub mod checkpoint;
pub mod commands;
pub mod data;
pub mod eval;
pub mod faults;
pub mod import;
pub mod listing;
pub mod logfile;
pub mod logging;
pub mod models;
pub mod package;
pub mod pipeline;
pub mod plan;
pub mod progress;
pub mod recipe;
pub mod report;
pub mod rng;
pub mod run_dir;
pub mod run_lock;
pub mod speaker;
pub mod stop;
pub mod sweep;
pub mod train;
