//! The local API client. The bearer token reaches the page in the URL fragment
//! (`#token=…`, never sent to a server, so it lands in no log) or, in the desktop
//! window, through an init script; it is kept in sessionStorage and the fragment is
//! removed from the address bar at once.

use api_types::{
    ApiErrorBody, BlockState, ContactView, ConversationView, CreateGroup, FileStatusView,
    GroupInvitationView, GroupView, Language, MessagePageView, MessageView, PeerView,
    SearchResults, SendMessage, SettingsView, Status, UpdateGroup,
};
use gloo_net::http::{Request, RequestBuilder, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use wasm_bindgen::JsCast;

use crate::chat_model::{path_segment, query_value};

const TOKEN_KEY: &str = "lanchat.token";
/// Set to `1` by the desktop window's init script (src-tauri's `window`).
const DESKTOP_KEY: &str = "lanchat.desktop";

#[derive(Debug, Clone, PartialEq)]
pub enum UiError {
    NoToken,
    Api(ApiErrorBody),
    Network(String),
}

impl UiError {
    /// The request field the node refused (`400 invalid_field`, `403 forbidden`).
    pub fn field(&self) -> Option<&str> {
        match self {
            UiError::Api(body) => body.field.as_deref(),
            _ => None,
        }
    }

    /// The node does not know this endpoint or thing (`404 not_found`).
    pub fn is_not_found(&self) -> bool {
        matches!(self, UiError::Api(body) if body.code == "not_found")
    }

    pub fn message(&self, lang: Language) -> String {
        match self {
            UiError::NoToken => i18n::t(lang, "error.no_token"),
            UiError::Network(m) => i18n::tf(lang, "error.network", &[("message", m)]),
            UiError::Api(body) => i18n::tf(
                lang,
                &i18n::error_key(&body.code),
                &[
                    ("message", &body.message),
                    ("field", body.field.as_deref().unwrap_or("")),
                ],
            ),
        }
    }
}

/// Moves a token from the URL fragment into sessionStorage, then returns the stored one.
pub fn take_token() -> Option<String> {
    let window = web_sys::window()?;
    let storage = window.session_storage().ok().flatten()?;
    let location = window.location();
    if let Some(token) = location
        .hash()
        .ok()
        .as_deref()
        .and_then(token_from_fragment)
    {
        let _ = storage.set_item(TOKEN_KEY, &token);
        let clean = location.pathname().unwrap_or_else(|_| "/".into());
        if let Ok(history) = window.history() {
            let _ = history.replace_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(&clean));
        }
    }
    storage.get_item(TOKEN_KEY).ok().flatten()
}

/// Whether this page is the desktop window (not a browser): files can be opened and
/// shown in their folder on this desktop (`POST /api/v1/files/{id}/open`, `…/reveal`).
pub fn in_desktop_window() -> bool {
    web_sys::window()
        .and_then(|w| w.session_storage().ok().flatten())
        .and_then(|s| s.get_item(DESKTOP_KEY).ok().flatten())
        .is_some_and(|v| v == "1")
}

fn token_from_fragment(hash: &str) -> Option<String> {
    hash.trim_start_matches('#')
        .split('&')
        .find_map(|pair| pair.strip_prefix("token="))
        .filter(|t| !t.is_empty())
        .map(str::to_string)
}

#[derive(Clone, Debug)]
pub struct Client {
    token: Option<String>,
}

impl Client {
    pub fn from_page() -> Client {
        Client {
            token: take_token(),
        }
    }

    fn authorised(&self, req: RequestBuilder) -> Result<RequestBuilder, UiError> {
        let token = self.token.as_deref().ok_or(UiError::NoToken)?;
        Ok(req.header("Authorization", &format!("Bearer {token}")))
    }

    pub async fn status(&self) -> Result<Status, UiError> {
        self.get("/api/v1/status").await
    }

    /// The settings as the node shows them (never the shared secret: `secret_set`).
    pub async fn settings(&self) -> Result<SettingsView, UiError> {
        self.get("/api/v1/settings").await
    }

    /// A strong secret the node generated for the settings tab (nothing is saved).
    pub async fn generate_secret(&self) -> Result<String, UiError> {
        let resp = self.call(Request::post("/api/v1/settings/secret")).await?;
        decode::<api_types::GeneratedSecret>(resp)
            .await
            .map(|g| g.secret)
    }

    /// Gives this computer a new identity (`POST /api/v1/identity/new`).
    pub async fn new_identity(&self) -> Result<api_types::NewIdentity, UiError> {
        let resp = self.call(Request::post("/api/v1/identity/new")).await?;
        decode::<api_types::NewIdentity>(resp).await
    }

    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    pub async fn diagnostics(&self) -> Result<api_types::Diagnostics, UiError> {
        self.get("/api/v1/diagnostics").await
    }

    /// The export file: its suggested name (from `Content-Disposition`) and its text.
    pub async fn diagnostics_export(&self) -> Result<(String, String), UiError> {
        let resp = self
            .call(Request::get("/api/v1/diagnostics/export"))
            .await?;
        if !resp.ok() {
            return Err(error_of(resp).await);
        }
        let name = resp
            .headers()
            .get("content-disposition")
            .and_then(|v| {
                v.split("filename=\"")
                    .nth(1)
                    .and_then(|rest| rest.split('"').next())
                    .map(str::to_string)
            })
            .unwrap_or_else(|| "lanchat-diagnostics.json".to_string());
        let body = resp.text().await.map_err(network)?;
        Ok((name, body))
    }

    pub async fn peers(&self) -> Result<Vec<PeerView>, UiError> {
        self.get("/api/v1/peers").await
    }

    /// Blocks (`true`) or unblocks a peer.
    pub async fn set_blocked(&self, peer_id: &str, blocked: bool) -> Result<BlockState, UiError> {
        let action = if blocked { "block" } else { "unblock" };
        let resp = self
            .call(Request::post(&format!("/api/v1/peers/{peer_id}/{action}")))
            .await?;
        decode(resp).await
    }

    pub async fn update_settings(&self, patch: &Value) -> Result<SettingsView, UiError> {
        let resp = self
            .call_json(Request::put("/api/v1/settings"), patch)
            .await?;
        decode(resp).await
    }

    pub async fn contacts(&self) -> Result<Vec<ContactView>, UiError> {
        self.get("/api/v1/contacts").await
    }

    pub async fn conversations(&self) -> Result<Vec<ConversationView>, UiError> {
        self.get("/api/v1/conversations").await
    }

    /// One page of history, oldest first; `before` is the `older` cursor of the page
    /// after it (none: the newest page).
    pub async fn messages(
        &self,
        conversation_id: &str,
        before: Option<&str>,
        limit: u32,
    ) -> Result<MessagePageView, UiError> {
        let mut url = format!(
            "/api/v1/conversations/{}/messages?limit={limit}",
            path_segment(conversation_id)
        );
        if let Some(before) = before {
            url.push_str(&format!("&before={}", query_value(before)));
        }
        self.get(&url).await
    }

    /// `POST /api/v1/conversations/{id}/files` with a JSON list: files stored before
    /// with `POST /api/v1/files`, sent as one message (a folder, 64 files at a time).
    pub async fn send_stored_files(
        &self,
        conversation_id: &str,
        files: &[StoredFile],
    ) -> Result<MessageView, UiError> {
        let url = format!(
            "/api/v1/conversations/{}/files",
            path_segment(conversation_id)
        );
        let body = serde_json::json!({ "files": files });
        let resp = self.call_json(Request::post(&url), &body).await?;
        decode(resp).await
    }

    pub async fn send(&self, conversation_id: &str, text: &str) -> Result<MessageView, UiError> {
        let url = format!(
            "/api/v1/conversations/{}/messages",
            path_segment(conversation_id)
        );
        let resp = self
            .call_json(Request::post(&url), &SendMessage { text: text.into() })
            .await?;
        decode(resp).await
    }

    pub async fn presence(&self) -> Result<api_types::MyPresence, UiError> {
        self.get("/api/v1/presence").await
    }

    pub async fn set_presence(
        &self,
        presence: api_types::Presence,
    ) -> Result<api_types::MyPresence, UiError> {
        let body = api_types::SetPresence {
            presence: presence.as_str().to_string(),
        };
        let resp = self
            .call_json(Request::put("/api/v1/presence"), &body)
            .await?;
        decode(resp).await
    }

    /// The user did something here (ends an automatic `away`, restarts the idle timer).
    pub async fn report_activity(&self) -> Result<(), UiError> {
        let resp = self
            .call(Request::post("/api/v1/presence/activity"))
            .await?;
        if resp.ok() {
            Ok(())
        } else {
            Err(error_of(resp).await)
        }
    }

    pub async fn mark_read(&self, conversation_id: &str) -> Result<(), UiError> {
        let url = format!(
            "/api/v1/conversations/{}/read",
            path_segment(conversation_id)
        );
        let resp = self.call(Request::post(&url)).await?;
        if resp.ok() {
            Ok(())
        } else {
            Err(error_of(resp).await)
        }
    }

    pub async fn retry(
        &self,
        conversation_id: &str,
        message_id: &str,
    ) -> Result<MessageView, UiError> {
        let url = format!(
            "/api/v1/conversations/{}/messages/{}/retry",
            path_segment(conversation_id),
            path_segment(message_id)
        );
        let resp = self.call(Request::post(&url)).await?;
        decode(resp).await
    }

    pub async fn search(
        &self,
        q: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<SearchResults, UiError> {
        let mut url = format!("/api/v1/search?q={}&limit={limit}", query_value(q));
        if let Some(after) = after {
            url.push_str(&format!("&after={}", query_value(after)));
        }
        self.get(&url).await
    }

    pub async fn groups(&self) -> Result<Vec<GroupView>, UiError> {
        self.get("/api/v1/groups").await
    }

    pub async fn group(&self, id: &str) -> Result<GroupView, UiError> {
        self.get(&format!("/api/v1/groups/{}", path_segment(id)))
            .await
    }

    pub async fn create_group(&self, body: &CreateGroup) -> Result<GroupView, UiError> {
        let resp = self
            .call_json(Request::post("/api/v1/groups"), body)
            .await?;
        decode(resp).await
    }

    pub async fn update_group(&self, id: &str, body: &UpdateGroup) -> Result<GroupView, UiError> {
        let url = format!("/api/v1/groups/{}", path_segment(id));
        let resp = self.call_json(Request::put(&url), body).await?;
        decode(resp).await
    }

    /// `leave` or `dissolve`: both answer with the group as it is afterwards.
    pub async fn group_action(&self, id: &str, action: &str) -> Result<GroupView, UiError> {
        let url = format!("/api/v1/groups/{}/{action}", path_segment(id));
        let resp = self.call(Request::post(&url)).await?;
        decode(resp).await
    }

    pub async fn invitations(&self) -> Result<Vec<GroupInvitationView>, UiError> {
        self.get("/api/v1/group-invitations").await
    }

    /// Accepts (`true`) or declines an invitation; accepting answers with the group.
    pub async fn answer_invitation(
        &self,
        group_id: &str,
        accept: bool,
    ) -> Result<Option<GroupView>, UiError> {
        let action = if accept { "accept" } else { "decline" };
        let url = format!(
            "/api/v1/group-invitations/{}/{action}",
            path_segment(group_id)
        );
        let resp = self.call(Request::post(&url)).await?;
        if !resp.ok() {
            return Err(error_of(resp).await);
        }
        if accept {
            resp.json::<GroupView>().await.map(Some).map_err(network)
        } else {
            Ok(None)
        }
    }

    /// A file's download state on this node.
    pub async fn file_status(&self, file_id: &str) -> Result<FileStatusView, UiError> {
        self.get(&format!("/api/v1/files/{}/status", path_segment(file_id)))
            .await
    }

    /// Starts or retries (`fetch`) or stops (`cancel`) a file's download; in the
    /// desktop window, opens a complete one (`open`) or shows it in its folder
    /// (`reveal`).
    pub async fn file_action(&self, file_id: &str, action: &str) -> Result<(), UiError> {
        let url = format!("/api/v1/files/{}/{action}", path_segment(file_id));
        let resp = self.call(Request::post(&url)).await?;
        if resp.ok() {
            Ok(())
        } else {
            Err(error_of(resp).await)
        }
    }

    /// A complete file's content, kept by the browser (not copied into the page's
    /// memory): shown or saved through an object URL, since an `<img>` or a link cannot
    /// send the token.
    pub async fn file_blob(&self, file_id: &str) -> Result<web_sys::Blob, UiError> {
        let url = format!("/api/v1/files/{}", path_segment(file_id));
        let resp = self.call(Request::get(&url)).await?;
        if !resp.ok() {
            return Err(error_of(resp).await);
        }
        let raw: web_sys::Response = resp.into();
        let promise = raw.blob().map_err(js_error)?;
        wasm_bindgen_futures::JsFuture::from(promise)
            .await
            .map_err(js_error)?
            .dyn_into::<web_sys::Blob>()
            .map_err(js_error)
    }

    async fn get<T: DeserializeOwned>(&self, url: &str) -> Result<T, UiError> {
        decode(self.call(Request::get(url)).await?).await
    }

    /// Sends an authorised request; the answer's status is the caller's to judge.
    async fn call(&self, req: RequestBuilder) -> Result<Response, UiError> {
        self.authorised(req)?.send().await.map_err(network)
    }

    /// [`Self::call`] with a JSON body.
    async fn call_json<B: Serialize + ?Sized>(
        &self,
        req: RequestBuilder,
        body: &B,
    ) -> Result<Response, UiError> {
        self.authorised(req)?
            .json(body)
            .map_err(network)?
            .send()
            .await
            .map_err(network)
    }
}

/// A file stored with `POST /api/v1/files`, named for the message that sends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredFile {
    pub file_id: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// `POST /api/v1/files`: where a file of a folder is stored before its message.
pub const STORE_URL: &str = "/api/v1/files";

/// `POST /api/v1/conversations/{id}/files?name=NAME[&path=DIR]`: where one file is
/// sent (its bytes are the body).
pub fn upload_url(conversation_id: &str, name: &str, path: Option<&str>) -> String {
    let mut url = format!(
        "/api/v1/conversations/{}/files?name={}",
        path_segment(conversation_id),
        query_value(name)
    );
    if let Some(path) = path.filter(|p| !p.is_empty()) {
        url.push_str(&format!("&path={}", query_value(path)));
    }
    url
}

/// What a failed browser call (a JavaScript exception) tells the user.
pub fn js_error(e: wasm_bindgen::JsValue) -> UiError {
    let text = e
        .dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| e.as_string())
        .unwrap_or_else(|| format!("{e:?}"));
    UiError::Network(text)
}

fn network(e: gloo_net::Error) -> UiError {
    UiError::Network(e.to_string())
}

async fn decode<T: DeserializeOwned>(resp: Response) -> Result<T, UiError> {
    if resp.ok() {
        resp.json::<T>().await.map_err(network)
    } else {
        Err(error_of(resp).await)
    }
}

async fn error_of(resp: Response) -> UiError {
    let status = resp.status();
    match resp.json::<ApiErrorBody>().await {
        Ok(body) => UiError::Api(body),
        Err(_) => UiError::Network(format!("HTTP {status}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_read_from_the_fragment() {
        assert_eq!(token_from_fragment("#token=abc"), Some("abc".into()));
        assert_eq!(token_from_fragment("#x=1&token=abc"), Some("abc".into()));
        assert_eq!(token_from_fragment("#token="), None);
        assert_eq!(token_from_fragment(""), None);
    }

    #[test]
    fn upload_urls_carry_name_and_folder_encoded() {
        assert_eq!(
            upload_url("dm:lan:B", "a b.png", None),
            format!(
                "/api/v1/conversations/{}/files?name=a%20b.png",
                path_segment("dm:lan:B")
            )
        );
        let url = upload_url("group:G", "报告.pdf", Some("photos/2026"));
        assert!(url.ends_with(&format!(
            "?name={}&path={}",
            query_value("报告.pdf"),
            query_value("photos/2026")
        )));
        assert!(!upload_url("g", "a", Some("")).contains("path="));
    }

    #[test]
    fn api_errors_are_localised_by_code() {
        let e = UiError::Api(ApiErrorBody {
            code: "invalid_field".into(),
            message: "bad".into(),
            field: Some("lan_mesh.listen_port".into()),
        });
        assert_eq!(
            e.message(Language::EnUs),
            "Invalid value for lan_mesh.listen_port: bad"
        );
        assert!(UiError::NoToken.message(Language::ZhCn).contains("令牌"));
    }
}
