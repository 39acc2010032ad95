//! Limits on text that users write, and the checks that enforce them — written once
//! here, the lowest crate, so the UI, the API, the store and the wire all refuse the
//! same things with the same words.

use std::fmt;

/// Longest message body accepted (bytes). Chat text, not file transfer: a larger body is
/// refused with an error instead of bloating every node's database and search index.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Longest display name, in characters. Discovery carries it in every packet, which
/// must not fragment (see `MAX_DISPLAY_NAME_BYTES`).
pub const MAX_DISPLAY_NAME_CHARS: usize = 64;
/// Room for 64 display-name characters of up to 4 UTF-8 bytes each.
pub const MAX_DISPLAY_NAME_BYTES: usize = 4 * MAX_DISPLAY_NAME_CHARS;
/// Longest group name, in characters.
pub const MAX_GROUP_NAME_CHARS: usize = 128;
/// Longest group announcement, in characters.
pub const MAX_ANNOUNCEMENT_CHARS: usize = 4096;
/// A group is an office team, not a broadcast list; this bounds fan-out work per send.
pub const MAX_GROUP_MEMBERS: usize = 500;

/// Why a piece of text was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextError {
    Empty,
    TooManyChars(usize),
    TooManyBytes(usize),
    ControlCharacters,
}

impl fmt::Display for TextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TextError::Empty => f.write_str("must not be empty"),
            TextError::TooManyChars(max) => write!(f, "must be at most {max} characters"),
            TextError::TooManyBytes(max) => write!(f, "must be at most {max} bytes"),
            TextError::ControlCharacters => f.write_str("must not contain control characters"),
        }
    }
}

impl std::error::Error for TextError {}

/// A message body: not blank, at most [`MAX_BODY_BYTES`]. Newlines and tabs are text.
pub fn check_body(body: &str) -> Result<(), TextError> {
    if body.trim().is_empty() {
        return Err(TextError::Empty);
    }
    if body.len() > MAX_BODY_BYTES {
        return Err(TextError::TooManyBytes(MAX_BODY_BYTES));
    }
    Ok(())
}

/// A display name, trimmed: at most [`MAX_DISPLAY_NAME_CHARS`] characters and
/// [`MAX_DISPLAY_NAME_BYTES`] bytes, one line. Empty is allowed (the node then shows
/// its host name).
pub fn check_display_name(name: &str) -> Result<&str, TextError> {
    let name = name.trim();
    if name.len() > MAX_DISPLAY_NAME_BYTES {
        return Err(TextError::TooManyBytes(MAX_DISPLAY_NAME_BYTES));
    }
    one_line(name, MAX_DISPLAY_NAME_CHARS)
}

/// A group name, trimmed: not empty, at most [`MAX_GROUP_NAME_CHARS`], one line.
pub fn check_group_name(name: &str) -> Result<&str, TextError> {
    let name = one_line(name.trim(), MAX_GROUP_NAME_CHARS)?;
    if name.is_empty() {
        return Err(TextError::Empty);
    }
    Ok(name)
}

/// An announcement: at most [`MAX_ANNOUNCEMENT_CHARS`]; several lines allowed.
pub fn check_announcement(text: &str) -> Result<&str, TextError> {
    if text.chars().count() > MAX_ANNOUNCEMENT_CHARS {
        return Err(TextError::TooManyChars(MAX_ANNOUNCEMENT_CHARS));
    }
    Ok(text)
}

fn one_line(text: &str, max_chars: usize) -> Result<&str, TextError> {
    if text.chars().count() > max_chars {
        return Err(TextError::TooManyChars(max_chars));
    }
    if text.chars().any(char::is_control) {
        return Err(TextError::ControlCharacters);
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies() {
        assert_eq!(check_body(" \n\t"), Err(TextError::Empty));
        assert_eq!(check_body("line one\nline two"), Ok(()));
        assert_eq!(check_body(&"a".repeat(MAX_BODY_BYTES)), Ok(()));
        assert_eq!(
            check_body(&"a".repeat(MAX_BODY_BYTES + 1)),
            Err(TextError::TooManyBytes(MAX_BODY_BYTES))
        );
    }

    #[test]
    fn display_names() {
        assert_eq!(check_display_name("  Ann  "), Ok("Ann"));
        assert_eq!(check_display_name(""), Ok(""));
        assert_eq!(
            check_display_name(&"张".repeat(64)),
            Ok("张".repeat(64).as_str())
        );
        assert_eq!(
            check_display_name(&"张".repeat(65)),
            Err(TextError::TooManyChars(64))
        );
        assert_eq!(
            check_display_name("a\u{7}b"),
            Err(TextError::ControlCharacters)
        );
        // 64 four-byte characters fit; the byte bound is what a packet can carry.
        assert_eq!(check_display_name(&"😀".repeat(64)).map(str::len), Ok(256));
    }

    #[test]
    fn group_names_and_announcements() {
        assert_eq!(check_group_name("  "), Err(TextError::Empty));
        assert_eq!(check_group_name(" Team "), Ok("Team"));
        assert_eq!(
            check_group_name(&"x".repeat(129)),
            Err(TextError::TooManyChars(128))
        );
        assert_eq!(check_announcement("a\nb"), Ok("a\nb"));
        assert_eq!(
            check_announcement(&"x".repeat(4097)),
            Err(TextError::TooManyChars(4096))
        );
    }
}
