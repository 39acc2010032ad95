//! Files as messages (issue 17): the content document a file message carries, and how
//! the local API shows attachments and downloads.
//!
//! A file message is an ordinary message (signed, queued, acked, relayed, caught up)
//! whose text is [`FILE_MESSAGE_PREFIX`] followed by a JSON [`FileContent`]. Its
//! signature covers that text like any other, so a relay cannot change a name, a size
//! or a hash. The content itself follows separately, fetched by hash
//! (docs/PROTOCOL.md, "File messages" and "File transfer").

use serde::{Deserialize, Serialize};

use crate::limits::MAX_BODY_BYTES;

/// Begins the text of every file message. U+0001 cannot be typed, and `POST …/messages`
/// refuses a text that begins with it, so no text message is mistaken for one.
pub const FILE_MESSAGE_PREFIX: &str = "\u{1}lanchat-file/v1\n";
/// The largest thumbnail carried in a file message (its encoded image bytes).
pub const MAX_THUMBNAIL_BYTES: usize = 16 * 1024;
/// Files in one message: a folder of more is sent as several messages.
pub const MAX_FILES_PER_MESSAGE: usize = 64;
/// A relative path inside a sent folder: at most this many components.
pub const MAX_PATH_DEPTH: usize = 32;

/// What a file message says about its files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileContent {
    pub files: Vec<FileRef>,
}

/// One file: enough to fetch it (id, manifest hash, size, chunk size), show it (name,
/// type, thumbnail) and put it where it belongs (its folder path).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    /// SHA-256 of the whole content, lowercase hex.
    pub file_id: String,
    /// SHA-256 of the manifest (chunk hashes), lowercase hex.
    pub manifest: String,
    pub size: u64,
    pub chunk_size: u32,
    /// The file's name, without any directory.
    pub name: String,
    /// The folder it sits in when a folder was sent (`"photos/2026"`, `/`-separated,
    /// relative); absent for a single file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub mime: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnail: Option<Thumbnail>,
}

/// A small preview made by the sender.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Thumbnail {
    /// `image/jpeg` or `image/png`.
    pub mime: String,
    pub width: u32,
    pub height: u32,
    /// The image, standard base64.
    pub data: String,
}

/// Why a text is not a file message's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileContentError {
    NotAFileMessage,
    Malformed(String),
    Invalid(&'static str),
}

impl std::fmt::Display for FileContentError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileContentError::NotAFileMessage => f.write_str("not a file message"),
            FileContentError::Malformed(e) => write!(f, "malformed file message: {e}"),
            FileContentError::Invalid(why) => write!(f, "invalid file message: {why}"),
        }
    }
}

impl std::error::Error for FileContentError {}

/// Whether `text` is a file message's (without checking the rest).
pub fn is_file_message(text: &str) -> bool {
    text.starts_with(FILE_MESSAGE_PREFIX)
}

fn is_hex_digest(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A name as a file message may carry it: one path component, no control characters.
/// The receiver sanitises it again before writing anything (storage::blobs).
fn is_plain_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == '\\' || c.is_control())
}

impl FileRef {
    fn check(&self) -> Result<(), FileContentError> {
        let invalid = FileContentError::Invalid;
        if !is_hex_digest(&self.file_id) || !is_hex_digest(&self.manifest) {
            return Err(invalid("a hash is not 64 lowercase hex digits"));
        }
        if !is_plain_name(&self.name) {
            return Err(invalid(
                "a file name is empty, too long or not one path component",
            ));
        }
        if let Some(path) = &self.path {
            let parts: Vec<&str> = path.split('/').collect();
            if parts.len() > MAX_PATH_DEPTH || !parts.iter().all(|p| is_plain_name(p)) {
                return Err(invalid("a folder path is not relative plain components"));
            }
        }
        if self.mime.is_empty() || self.mime.len() > 127 || self.mime.chars().any(char::is_control)
        {
            return Err(invalid("a media type is empty or too long"));
        }
        if let Some(t) = &self.thumbnail {
            if !matches!(t.mime.as_str(), "image/jpeg" | "image/png")
                || t.data.len() > MAX_THUMBNAIL_BYTES.div_ceil(3) * 4
                || t.width == 0
                || t.height == 0
            {
                return Err(invalid("a thumbnail is not a small JPEG or PNG"));
            }
        }
        Ok(())
    }

    /// The path a receiver shows and saves under: `path/name` or `name`.
    pub fn display_path(&self) -> String {
        match &self.path {
            Some(p) => format!("{p}/{}", self.name),
            None => self.name.clone(),
        }
    }
}

impl FileContent {
    /// The message text carrying this content; an error when it would not fit a
    /// message or is not valid.
    pub fn to_text(&self) -> Result<String, FileContentError> {
        self.check()?;
        let json =
            serde_json::to_string(self).map_err(|e| FileContentError::Malformed(e.to_string()))?;
        let text = format!("{FILE_MESSAGE_PREFIX}{json}");
        if text.len() > MAX_BODY_BYTES {
            return Err(FileContentError::Invalid("too large for one message"));
        }
        Ok(text)
    }

    /// The content of a file message's text; `NotAFileMessage` for any other text.
    pub fn parse(text: &str) -> Result<FileContent, FileContentError> {
        let json = text
            .strip_prefix(FILE_MESSAGE_PREFIX)
            .ok_or(FileContentError::NotAFileMessage)?;
        let content: FileContent =
            serde_json::from_str(json).map_err(|e| FileContentError::Malformed(e.to_string()))?;
        content.check()?;
        Ok(content)
    }

    fn check(&self) -> Result<(), FileContentError> {
        if self.files.is_empty() || self.files.len() > MAX_FILES_PER_MESSAGE {
            return Err(FileContentError::Invalid(
                "a file message holds 1 to 64 files",
            ));
        }
        self.files.iter().try_for_each(FileRef::check)
    }

    /// What search and notifications show for it: the file names.
    pub fn summary(&self) -> String {
        self.files
            .iter()
            .map(FileRef::display_path)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Where a file's content stands on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileState {
    /// Complete and verified here: `GET /api/v1/files/{id}` serves it.
    Available,
    /// Chunks are arriving.
    Fetching,
    /// Not here yet and nothing arriving: larger than the auto-download size (see
    /// `waiting_for`), cancelled, or no peer that has it is online.
    Waiting,
    /// Given up (the content did not match its hash, the disk refused it); `…/fetch`
    /// tries again.
    Failed,
}

/// What a waiting download waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitingFor {
    /// A click (`POST /api/v1/files/{id}/fetch`): above the auto-download size, or
    /// cancelled.
    Download,
    /// A peer that has it (the sender, or a member that has it) to come online.
    Sender,
    /// The sender to send it again: the peers that have it stopped sending it (the
    /// sender's cancel). Asked again every 30 s; it goes on by itself then.
    Withdrawn,
}

/// A file attached to a message, as `MessageView.attachments` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentView {
    pub file_id: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub size: u64,
    /// The file id again (the content's SHA-256, hex), under the name scripts expect.
    pub sha256: String,
    pub mime: String,
    pub state: FileState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<WaitingFor>,
    /// Bytes verified here so far.
    pub have_bytes: u64,
    /// A `data:` URL of the sender's thumbnail, for images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumbnail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// This node stopped sending it (`POST …/withdraw`): it serves it to nobody.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub withdrawn: bool,
}

/// `GET /api/v1/files/{file_id}/status`, and the `file.progress` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileStatusView {
    pub file_id: String,
    pub state: FileState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<WaitingFor>,
    pub have_bytes: u64,
    pub size: u64,
    /// Bytes per second over the last few seconds, while fetching.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_per_sec: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// This node stopped sending it (`POST …/withdraw`): it serves it to nobody.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub withdrawn: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever a peer signs as a file message, parsing it never panics, and what
        /// parses is valid: it encodes again to a text that parses to the same.
        #[test]
        fn any_text_after_the_prefix_parses_or_is_refused(json in ".{0,400}") {
            let text = format!("{FILE_MESSAGE_PREFIX}{json}");
            if let Ok(content) = FileContent::parse(&text) {
                let again = content.to_text().unwrap();
                prop_assert_eq!(FileContent::parse(&again).unwrap(), content);
            }
        }

        /// Names with any characters: accepted only as one plain component.
        #[test]
        fn names_are_accepted_only_as_one_plain_component(name in "\\PC{0,40}") {
            let mut f = file("x");
            f.name = name.clone();
            let accepted = FileContent { files: vec![f] }.to_text().is_ok();
            let plain = !name.is_empty()
                && name != "."
                && name != ".."
                && !name.chars().any(|c| c == '/' || c == '\\' || c.is_control());
            prop_assert_eq!(accepted, plain);
        }
    }

    fn file(name: &str) -> FileRef {
        FileRef {
            file_id: "a".repeat(64),
            manifest: "b".repeat(64),
            size: 10,
            chunk_size: 131072,
            name: name.into(),
            path: None,
            mime: "text/plain".into(),
            thumbnail: None,
        }
    }

    #[test]
    fn a_file_message_round_trips_and_text_is_not_one() {
        let content = FileContent {
            files: vec![file("报告.pdf")],
        };
        let text = content.to_text().unwrap();
        assert!(is_file_message(&text));
        assert_eq!(FileContent::parse(&text).unwrap(), content);
        assert_eq!(
            FileContent::parse("hello"),
            Err(FileContentError::NotAFileMessage)
        );
    }

    #[test]
    fn traversal_names_paths_and_bad_hashes_are_refused() {
        for name in ["", "..", "a/b", "a\\b", "x\u{0}y"] {
            let content = FileContent {
                files: vec![file(name)],
            };
            assert!(content.to_text().is_err(), "{name:?} accepted");
        }
        let mut f = file("a.txt");
        f.path = Some("../etc".into());
        assert!(FileContent { files: vec![f] }.to_text().is_err());
        let mut f = file("a.txt");
        f.file_id = "A".repeat(64);
        assert!(FileContent { files: vec![f] }.to_text().is_err());
        let text = format!("{FILE_MESSAGE_PREFIX}{{\"files\":[]}}");
        assert!(matches!(
            FileContent::parse(&text),
            Err(FileContentError::Invalid(_))
        ));
        let text = format!("{FILE_MESSAGE_PREFIX}not json");
        assert!(matches!(
            FileContent::parse(&text),
            Err(FileContentError::Malformed(_))
        ));
    }
}
