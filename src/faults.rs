//! Failures a test injects into a run: NaN losses at given steps, a crash halfway through a
//! given checkpoint or through packaging. They travel as a value from the CLI (which reads
//! them from `ARP_FAULT_*` environment variables, see `commands::injected_faults`) to the
//! training driver and the package; nothing else reads the environment for them.

/// One training part's faults (steps as logged: the first step is 1).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PartFaults {
    /// Steps whose losses are made NaN.
    pub nan_steps: Vec<usize>,
    /// Steps whose checkpoint write aborts the process after the part's weights are written.
    pub abort_in_checkpoint: Vec<usize>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Faults {
    pub lm: PartFaults,
    pub flow: PartFaults,
    pub hift: PartFaults,
    /// Abort the process halfway through assembling the package.
    pub abort_in_package: bool,
}
