//! The rules for text that clients send, checked at the edge so that both
//! databases see the same text (PostgreSQL cannot store U+0000; SQLite
//! can) and bad input is refused with a clear message instead of failing
//! in the database.
//!
//! - **Identifiers** (user, organization, plan, pack and provider ids,
//!   model names, the JWT `sub` and `org`): 1 to 256 bytes, not blank, no
//!   control characters (Unicode `Cc`, U+0000 to U+001F and U+007F to
//!   U+009F).
//! - **Keys** (idempotency keys): 1 to 200 bytes after trimming, no
//!   control characters.
//! - **Free text** (reasons, message contents, any other string): no
//!   U+0000. Other characters are kept as sent.
//! - **Display text from tokens** (`name`, `email`, `team`, `org_name`
//!   claims): never refused, since a user cannot change what their identity
//!   provider sends: control characters are removed and the text is clipped
//!   to 256 characters.

/// Longest identifier, in bytes.
pub const MAX_ID_BYTES: usize = 256;
/// Longest idempotency key, in bytes.
pub const MAX_KEY_BYTES: usize = 200;
/// Longest display text from a token, in characters.
pub const MAX_DISPLAY_CHARS: usize = 256;

/// Why a piece of text was refused; the message names the field, not the
/// text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    #[error("`{field}` must have 1 to {max} bytes")]
    Length { field: &'static str, max: usize },
    #[error("`{field}` must not contain control characters")]
    Control { field: &'static str },
    #[error("`{field}` must not contain the character U+0000")]
    Nul { field: &'static str },
}

/// Checks an identifier (see the module's rules).
pub fn check_id<'a>(field: &'static str, value: &'a str) -> Result<&'a str, TextError> {
    if value.trim().is_empty() || value.len() > MAX_ID_BYTES {
        return Err(TextError::Length {
            field,
            max: MAX_ID_BYTES,
        });
    }
    if value.chars().any(char::is_control) {
        return Err(TextError::Control { field });
    }
    Ok(value)
}

/// Checks an idempotency key and returns it trimmed.
pub fn check_key<'a>(field: &'static str, value: &'a str) -> Result<&'a str, TextError> {
    let value = value.trim();
    if value.is_empty() || value.len() > MAX_KEY_BYTES {
        return Err(TextError::Length {
            field,
            max: MAX_KEY_BYTES,
        });
    }
    if value.chars().any(char::is_control) {
        return Err(TextError::Control { field });
    }
    Ok(value)
}

/// Checks free text: anything but U+0000.
pub fn check_text<'a>(field: &'static str, value: &'a str) -> Result<&'a str, TextError> {
    if value.contains('\0') {
        return Err(TextError::Nul { field });
    }
    Ok(value)
}

/// Display text from a token: control characters removed, clipped; `None`
/// when nothing is left.
pub fn clean_display(value: &str) -> Option<String> {
    let cleaned: String = value
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_DISPLAY_CHARS)
        .collect();
    let trimmed = cleaned.trim();
    (!trimmed.is_empty()).then(|| trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn identifiers() {
        assert_eq!(check_id("sub", "alice"), Ok("alice"));
        assert_eq!(check_id("sub", "ålice 42"), Ok("ålice 42"));
        assert!(matches!(check_id("sub", ""), Err(TextError::Length { .. })));
        assert!(matches!(check_id("sub", "  "), Err(TextError::Length { .. })));
        assert!(matches!(
            check_id("sub", &"a".repeat(257)),
            Err(TextError::Length { .. })
        ));
        assert_eq!(check_id("sub", "a\0b"), Err(TextError::Control { field: "sub" }));
        assert_eq!(check_id("sub", "a\u{85}b"), Err(TextError::Control { field: "sub" }));
        assert_eq!(check_id("sub", "a\nb"), Err(TextError::Control { field: "sub" }));
    }

    #[test]
    fn keys_are_trimmed() {
        assert_eq!(check_key("idempotencyKey", "  k1 "), Ok("k1"));
        assert!(check_key("idempotencyKey", "k\0x").is_err());
        assert!(check_key("idempotencyKey", &"k".repeat(201)).is_err());
    }

    #[test]
    fn display_text_is_cleaned_not_refused() {
        assert_eq!(clean_display("Ali\0ce\u{7}"), Some("Alice".to_owned()));
        assert_eq!(clean_display("\0\0"), None);
        assert_eq!(clean_display(&"é".repeat(300)).map(|s| s.chars().count()), Some(256));
    }

    proptest! {
        #[test]
        fn whatever_passes_holds_no_nul(s in any::<String>()) {
            if let Ok(v) = check_id("x", &s) { prop_assert!(!v.contains('\0')); }
            if let Ok(v) = check_key("x", &s) { prop_assert!(!v.contains('\0')); }
            if let Ok(v) = check_text("x", &s) { prop_assert!(!v.contains('\0')); }
            if let Some(v) = clean_display(&s) {
                prop_assert!(!v.chars().any(char::is_control));
                prop_assert!(v.chars().count() <= MAX_DISPLAY_CHARS);
            }
        }
    }
}
