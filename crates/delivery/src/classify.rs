use cronhook_core::AttemptOutcome;

/// What an HTTP status means for the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classified {
    /// Success, retryable failure or permanent failure.
    pub outcome: AttemptOutcome,
}

/// Classifies a response status:
///
/// | status | outcome |
/// |---|---|
/// | 2xx | success |
/// | 408, 425, 429, 5xx | retryable |
/// | 3xx (not followed), other 4xx | permanent failure |
pub fn classify(status: u16) -> Classified {
    let outcome = match status {
        200..=299 => AttemptOutcome::Success,
        408 | 425 | 429 | 500..=599 => AttemptOutcome::Retryable,
        _ => AttemptOutcome::Permanent,
    };
    Classified { outcome }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        assert_eq!(classify(200).outcome, AttemptOutcome::Success);
        assert_eq!(classify(204).outcome, AttemptOutcome::Success);
        assert_eq!(classify(301).outcome, AttemptOutcome::Permanent);
        assert_eq!(classify(404).outcome, AttemptOutcome::Permanent);
        assert_eq!(classify(408).outcome, AttemptOutcome::Retryable);
        assert_eq!(classify(429).outcome, AttemptOutcome::Retryable);
        assert_eq!(classify(503).outcome, AttemptOutcome::Retryable);
    }
}
