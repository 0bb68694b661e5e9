//! ARP-Eval, acoustic side: Acoustic Quality (signal metrics) and Acoustic Personalization
//! (speaker-embedding similarity to the character's real audio).

pub mod quality;
pub mod speaker;
