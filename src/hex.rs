//! Lowercase hex, the one spelling of bytes in names, tags, keys and tokens.

/// `[0xab, 0x01]` -> `"ab01"`.
pub fn encode(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The bytes of an even-length hex string (surrounding whitespace ignored);
/// none when it is not one.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_what_is_not_hex() {
        let text = "/srv/containers/db 1";
        assert_eq!(decode(&encode(text.as_bytes())).expect("hex"), text.as_bytes());
        assert_eq!(encode(&[0xab, 0x01]), "ab01");
        assert_eq!(decode(" ab01\n"), Some(vec![0xab, 0x01]));
        assert_eq!(decode("abc"), None);
        assert_eq!(decode("zz"), None);
    }
}
