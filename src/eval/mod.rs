//! ARP-Eval, acoustic side: Acoustic Quality (signal metrics) and Acoustic Personalization
//! (speaker-embedding similarity to the character's real audio), and the optional LLM judge for
//! the content side.

pub mod clips;
pub mod judge;
pub mod quality;
pub mod report;
pub mod scores;
