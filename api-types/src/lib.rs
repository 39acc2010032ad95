//! Types that cross the local API boundary: the settings document, the status report,
//! the error body, and the small value types they are made of (`Cidr`, `NodeId`).
//!
//! This crate is compiled both natively (the node) and to wasm (the UI), so it holds
//! no I/O: only data, parsing and validation, which both sides must agree on.

pub mod chat;
pub mod cidr;
pub mod diagnostics;
pub mod error;
pub mod events;
pub mod files;
pub mod groups;
pub mod limits;
pub mod node_id;
pub mod peers;
pub mod presence;
pub mod settings;
pub mod status;

pub use chat::{
    ContactView, ConversationKind, ConversationView, MessagePageView, MessageStatus, MessageView,
    ReadBy, SearchResults, SendMessage,
};
pub use cidr::{Cidr, CidrError};
pub use diagnostics::{
    Diagnostics, DropCount, Fault, FileCounters, LinkState, MemoryDiagnostics, NodeDiagnostics,
    PeerDiagnostics, ReceiptCounters,
};
pub use error::{ApiErrorBody, FieldError};
pub use events::Event;
pub use files::{
    is_file_message, AttachmentView, FileContent, FileContentError, FileRef, FileState,
    FileStatusView, Thumbnail, WaitingFor, FILE_MESSAGE_PREFIX,
};
pub use groups::{
    CreateGroup, GroupInvitationView, GroupMemberView, GroupPermissions, GroupView, UpdateGroup,
};
pub use node_id::{NodeId, NodeIdError};
pub use peers::{
    AddPeerAddress, BlockState, DiscoveryCounters, PeerView, TransportCounters,
    CLOCK_OFFSET_WARNING_MS,
};
pub use presence::{MyPresence, Presence, PresenceSource, SetPresence};
pub use settings::{
    DesktopSettings, FileSettings, GeneratedSecret, LanMeshSettings, LanMeshView, Language,
    Settings, SettingsView, UiSettings,
};
pub use status::{MeshState, NewIdentity, Status, Warning, WarningCode};
