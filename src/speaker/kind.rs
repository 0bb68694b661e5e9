//! Which speaker encoder.

/// The speaker encoders arp-train runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum EncoderKind {
    /// CAM++ (3D-Speaker), trained on Chinese and English speech: 192 values.
    #[value(name = "cam++", alias = "campplus")]
    CamPlusPlus,
    /// Resemblyzer's GE2E d-vector: 256 values.
    #[value(name = "resemblyzer")]
    Resemblyzer,
}

impl EncoderKind {
    pub fn name(self) -> &'static str {
        match self {
            EncoderKind::CamPlusPlus => "cam++",
            EncoderKind::Resemblyzer => "resemblyzer",
        }
    }
}
