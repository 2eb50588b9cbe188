//! The shapes of the IDs SSM hands out, for the semantic checks the model's
//! patterns do not make (a command ID the model only knows as 36 characters
//! must be a UUID to name anything).

/// `mi-` and 17 word characters, or `i-` and 8 or 17: a managed instance or
/// an EC2 instance, as the model's `InstanceId` pattern has it.
pub fn is_instance_id(s: &str) -> bool {
    let word = |t: &str| t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    match (s.strip_prefix("mi-"), s.strip_prefix("i-")) {
        (Some(rest), _) => rest.len() == 17 && word(rest),
        (_, Some(rest)) => (rest.len() == 8 || rest.len() == 17) && word(rest),
        _ => false,
    }
}

/// A managed instance's ID (`mi-` and 17 characters).
pub fn is_managed_instance_id(s: &str) -> bool {
    s.starts_with("mi-") && is_instance_id(s)
}

/// A lowercase UUID, as command, activation and association IDs are.
pub fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(c),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_ssm_shapes() {
        assert!(is_instance_id("mi-0123456789abcdef0"));
        assert!(is_instance_id("i-0b387c665628f5f9b"));
        assert!(is_instance_id("i-0b387c66"));
        assert!(!is_instance_id("mi-123"));
        assert!(!is_instance_id("x-0123456789abcdef0"));
        assert!(is_managed_instance_id("mi-0123456789abcdef0"));
        assert!(!is_managed_instance_id("i-0b387c665628f5f9b"));
        assert!(is_uuid("8d0d0b5f-6a5c-4f2e-9b1a-2c3d4e5f6a7b"));
        assert!(!is_uuid("8D0D0B5F-6A5C-4F2E-9B1A-2C3D4E5F6A7B"));
        assert!(!is_uuid("8d0d0b5f6a5c4f2e9b1a2c3d4e5f6a7b0000"));
        assert!(!is_uuid("nope"));
    }
}
