//! Parsing SIPp's `-trace_stat` CSV (`-stf FILE`).
//!
//! The file has one header row of `;`-separated column names and one row per dump; the last row
//! holds the cumulative counters (`(C)` columns) at exit.

/// Cumulative call counters from a SIPp statistics file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SippStats {
    /// `SuccessfulCall(C)`: calls that reached the end of the scenario.
    pub successful_calls: u64,
    /// `FailedCall(C)`: calls that failed (unexpected message, timeout, regexp check...).
    pub failed_calls: u64,
    /// `TotalCallCreated`: calls started (incoming or outgoing).
    pub created_calls: u64,
}

impl SippStats {
    /// Parses the statistics file text; `None` when it has no data row or lacks the columns.
    pub fn parse(text: &str) -> Option<Self> {
        let mut lines = text.lines().filter(|line| !line.trim().is_empty());
        let header: Vec<&str> = lines.next()?.split(';').collect();
        let last: Vec<&str> = lines.next_back()?.split(';').collect();
        let column = |name: &str| -> Option<u64> {
            let index = header.iter().position(|h| h.trim() == name)?;
            last.get(index)?.trim().parse().ok()
        };
        Some(Self {
            successful_calls: column("SuccessfulCall(C)")?,
            failed_calls: column("FailedCall(C)")?,
            created_calls: column("TotalCallCreated").unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_last_row() {
        let text = "TotalCallCreated;SuccessfulCall(P);SuccessfulCall(C);FailedCall(P);FailedCall(C);\n\
                    0;0;0;0;0;\n\
                    3;1;2;1;1;\n";
        assert_eq!(
            SippStats::parse(text),
            Some(SippStats {
                successful_calls: 2,
                failed_calls: 1,
                created_calls: 3
            })
        );
    }

    #[test]
    fn header_only_is_none() {
        assert_eq!(SippStats::parse("SuccessfulCall(C);FailedCall(C)\n"), None);
    }
}
