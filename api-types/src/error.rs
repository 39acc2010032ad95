//! The error body of every failed local API request, and the field-level validation
//! error it is most often made from.

use std::fmt;

use serde::{Deserialize, Serialize};

/// `{code, message}` (+ `field` for validation errors). `code` is a stable machine
/// word the UI localises; `message` is English for logs and curl users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiErrorBody {
    pub code: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// A rejected value, named by its dotted path in the settings document
/// (`lan_mesh.allowed_subnets`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for FieldError {}

impl From<FieldError> for ApiErrorBody {
    fn from(e: FieldError) -> Self {
        // The field travels in `field`; the message says what is wrong with it.
        ApiErrorBody {
            code: "invalid_field".into(),
            message: e.message,
            field: Some(e.field),
        }
    }
}
