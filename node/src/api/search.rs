//! `GET /api/v1/search?q=TEXT[&after=CURSOR&limit=N]`: full-text search over every
//! conversation's messages, newest first.
//!
//! The store's index is FTS5 trigram: any substring of three or more characters is
//! found through the index, Chinese and English alike, case-insensitively; terms
//! separated by spaces must all match. One- and two-character terms (`会议`, `ok`) work
//! too but are matched by scanning (see docs/STORAGE.md), so they are slower on a long
//! history.

use api_types::{FieldError, SearchResults};
use axum::extract::State;
use axum::Json;
use storage::{SearchCursor, SearchQuery, MAX_SEARCH_PAGE};

use super::params::Params;
use super::views::{self, Names};
use super::{ApiError, ApiState};

const DEFAULT_LIMIT: u32 = 50;
/// A search box, not a document: the store looks at the first 8 terms anyway.
const MAX_QUERY_BYTES: usize = 1024;

pub async fn search(
    State(state): State<ApiState>,
    params: Params,
) -> Result<Json<SearchResults>, ApiError> {
    let text = params.get("q").map(str::trim).unwrap_or_default();
    if text.is_empty() {
        return Err(FieldError::new("q", "type something to search for").into());
    }
    if text.len() > MAX_QUERY_BYTES {
        return Err(FieldError::new("q", format!("at most {MAX_QUERY_BYTES} bytes")).into());
    }
    let after =
        match params.get("after") {
            None => None,
            Some(cursor) => Some(cursor.parse::<SearchCursor>().map_err(|_| {
                FieldError::new("after", "not a search cursor (take it from `next`)")
            })?),
        };
    let limit = params.limit(DEFAULT_LIMIT, MAX_SEARCH_PAGE)?;
    let page = state
        .store()
        .search(SearchQuery {
            text: text.to_string(),
            after,
            limit,
        })
        .await?;
    let names = Names::load(&state).await?;
    let mut hits: Vec<_> = page
        .hits
        .iter()
        .map(|m| views::message_view(m, &names))
        .collect();
    state.files().fill_attachments(&mut hits).await;
    Ok(Json(SearchResults {
        hits,
        next: page.next.map(|c| c.to_string()),
    }))
}
