//! Data: manifests, the quality scan that decides which utterances are used, and its reports.

pub mod buckets;
pub mod cache;
pub mod decoder_data;
pub mod manifest;
pub mod prompt;
pub mod samples;
pub mod scan;
pub mod speaker_names;
pub mod split;
