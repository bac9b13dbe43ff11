//! The reference-value line the host-verifier policy reads: the top-level TOML key
//! `measurements`, a list of MEASUREMENT values as 96 lower-case hex digits. A report passes
//! the measurement check when its MEASUREMENT equals one of them.
//!
//! ```toml
//! measurements = ["e9c10ab9…2840"]
//! ```

use crate::digest::Measurement;
use core::fmt::Write as _;

/// The `measurements` line allowing exactly `allowed`, preceded by `comment` lines (each
/// prefixed with `# `; pass an empty slice for none).
pub fn measurement_section(allowed: &[Measurement], comment: &[&str]) -> String {
    let mut out = String::new();
    for line in comment {
        for l in line.lines() {
            let _ = writeln!(out, "# {l}");
        }
    }
    out.push_str("measurements = [");
    for (i, m) in allowed.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "\"{m}\"");
    }
    out.push_str("]\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape() {
        let s = measurement_section(
            &[Measurement([0x11; 48]), Measurement([0x22; 48])],
            &["a\nb"],
        );
        assert!(s.starts_with("# a\n# b\nmeasurements = [\""));
        assert!(s.ends_with("\"]\n"));
        assert_eq!(s.matches(&"11".repeat(48)).count(), 1);
    }
}
