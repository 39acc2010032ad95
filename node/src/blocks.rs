//! The settings' `blocked_peers` and `blocked_subnets` are the one place blocks live:
//! discovery and the transport take them with the rest of the mesh settings, and the
//! store gets them here, at every start and change (`Store::apply_blocks`), so the
//! database's `peers.blocked` is only their mirror (docs/STORAGE.md, "Blocks").

use api_types::{Event, LanMeshSettings, MessageStatus};
use storage::{BlockList, ConversationId, Store, StoreError};

/// Gives the store the blocks in `settings` and tells every client that the messages a
/// newly blocked peer's dropped queue carried have failed. Applying the same blocks
/// again does nothing.
pub async fn apply(
    store: &Store,
    settings: &LanMeshSettings,
    publish: impl Fn(Event),
) -> Result<(), StoreError> {
    let began = store
        .apply_blocks(BlockList {
            peers: settings.blocked_peers.clone(),
            subnets: settings.blocked_subnets.clone(),
        })
        .await?;
    for blocked in began {
        let conversation_id = ConversationId::dm(&blocked.peer).to_string();
        for message_id in blocked.failed {
            publish(Event::MessageStatus {
                conversation_id: conversation_id.clone(),
                message_id: message_id.to_string(),
                status: MessageStatus::Failed,
            });
        }
    }
    Ok(())
}
