//! The caller's deadline, from the `grpc-timeout` header (the gRPC over
//! HTTP/2 spec: up to 8 digits and a unit, H M S m u n). tonic enforces it
//! too, by dropping the call when it passes; the engine needs it as a value
//! to stop waiting for a slot in time to answer DEADLINE_EXCEEDED itself.

use std::time::Duration;

use tonic::metadata::MetadataMap;

/// How much sooner than the caller's deadline a call stops waiting for its
/// turn. tonic's timer for the same deadline started a moment earlier and
/// answers CANCELLED ("Timeout expired"); stopping first, the caller gets
/// DEADLINE_EXCEEDED and the reason. More than tokio's 1 ms timer tick.
const ANSWER_MARGIN: Duration = Duration::from_millis(5);

/// How long a call may wait for its turn, given its metadata.
pub fn admission_deadline(metadata: &MetadataMap) -> Option<Duration> {
    deadline_of(metadata).map(|deadline| deadline.saturating_sub(ANSWER_MARGIN))
}

/// The time the caller gives the call; `None` without a header or with a
/// malformed one (tonic ignores those as well).
pub fn deadline_of(metadata: &MetadataMap) -> Option<Duration> {
    let text = metadata.get("grpc-timeout")?.to_str().ok()?;
    let unit_at = text.len().checked_sub(1)?;
    let (amount, unit) = (text.get(..unit_at)?, text.get(unit_at..)?);
    if amount.is_empty() || amount.len() > 8 || !amount.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let amount: u64 = amount.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount * 3600),
        "M" => Duration::from_secs(amount * 60),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_timeout(value: &str) -> MetadataMap {
        let mut metadata = MetadataMap::new();
        metadata.insert("grpc-timeout", value.parse().unwrap());
        metadata
    }

    #[test]
    fn every_unit_of_the_spec_is_read() {
        let cases = [
            ("2H", Duration::from_secs(7200)),
            ("3M", Duration::from_secs(180)),
            ("5S", Duration::from_secs(5)),
            ("50m", Duration::from_millis(50)),
            ("7u", Duration::from_micros(7)),
            ("9n", Duration::from_nanos(9)),
        ];
        for (header, expected) in cases {
            assert_eq!(deadline_of(&with_timeout(header)), Some(expected), "{header}");
        }
    }

    #[test]
    fn the_wait_ends_before_the_deadline() {
        assert_eq!(admission_deadline(&with_timeout("50m")), Some(Duration::from_millis(45)));
        assert_eq!(admission_deadline(&with_timeout("2m")), Some(Duration::ZERO));
        assert_eq!(admission_deadline(&MetadataMap::new()), None);
    }

    #[test]
    fn no_header_or_a_malformed_one_means_no_deadline() {
        assert_eq!(deadline_of(&MetadataMap::new()), None);
        for header in ["", "m", "12", "5x", "123456789S", "-5S", "+5S"] {
            assert_eq!(deadline_of(&with_timeout(header)), None, "{header:?}");
        }
    }
}
