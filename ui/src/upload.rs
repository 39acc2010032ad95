//! Sending files (issue 17): one `POST …/files` per file, one after another, each shown
//! as an "uploading" row with its progress in its conversation's composer. A folder is
//! its files, each with its folder as `path`. What the node refuses becomes a notice
//! with its message; the text composer is not involved.

use std::collections::VecDeque;

use api_types::files::MAX_FILES_PER_MESSAGE;
use api_types::{ApiErrorBody, MessageView};
use leptos::prelude::*;
use leptos::task::spawn_local;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;
use web_sys::{File, ProgressEvent, XmlHttpRequest};

use crate::api::{js_error, upload_url, StoredFile, UiError, STORE_URL};
use crate::app::Lang;
use crate::files_model::split_relative;
use crate::messenger::Chat;
use crate::notices::{NoticeKind, Notices};

/// One file to send: its content, its name and the folder it sits in (a sent folder).
#[derive(Clone, Debug)]
pub struct Outgoing {
    pub file: File,
    pub name: String,
    pub path: Option<String>,
}

impl Outgoing {
    /// A single picked, dropped or pasted file (sent under `name`).
    pub fn single(file: File, name: String) -> Outgoing {
        Outgoing {
            file,
            name,
            path: None,
        }
    }

    /// A file of a picked or dropped folder, by its path relative to the folder's
    /// parent (`photos/2026/a.jpg`); `None` when that has no name.
    pub fn in_folder(file: File, relative: &str) -> Option<Outgoing> {
        let (name, path) = split_relative(relative)?;
        Some(Outgoing { file, name, path })
    }

    /// `path/name`, as the composer and notices show it.
    pub fn label(&self) -> String {
        match &self.path {
            Some(p) => format!("{p}/{}", self.name),
            None => self.name.clone(),
        }
    }
}

/// A file being sent or waiting for its turn, as the composer shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct UploadRow {
    pub id: u64,
    pub conversation_id: String,
    /// `path/name`.
    pub label: String,
    pub size: u64,
    /// Bytes the browser has sent so far.
    pub sent: u64,
    /// Being sent now (the others wait).
    pub active: bool,
}

#[derive(Clone, Copy)]
pub struct Uploads {
    pub rows: RwSignal<Vec<UploadRow>>,
    queue: StoredValue<VecDeque<(u64, String, Outgoing)>, LocalStorage>,
    running: StoredValue<bool>,
    next: StoredValue<u64>,
    chat: Chat,
    notices: Notices,
    lang: Lang,
}

impl Uploads {
    pub fn new(chat: Chat, notices: Notices, lang: Lang) -> Uploads {
        Uploads {
            rows: RwSignal::new(Vec::new()),
            queue: StoredValue::new_local(VecDeque::new()),
            running: StoredValue::new(false),
            next: StoredValue::new(1),
            chat,
            notices,
            lang,
        }
    }

    /// Queues files for a conversation; they are sent in order after those queued
    /// before.
    pub fn send(self, conversation_id: &str, files: Vec<Outgoing>) {
        if files.is_empty() {
            return;
        }
        let mut rows = Vec::with_capacity(files.len());
        for f in files {
            let id = self.next.get_value();
            self.next.set_value(id + 1);
            rows.push(UploadRow {
                id,
                conversation_id: conversation_id.to_string(),
                label: f.label(),
                size: f.file.size() as u64,
                sent: 0,
                active: false,
            });
            self.queue
                .update_value(|q| q.push_back((id, conversation_id.to_string(), f)));
        }
        self.rows.update(|r| r.extend(rows));
        if !self.running.get_value() {
            self.running.set_value(true);
            spawn_local(async move { self.run().await });
        }
    }

    /// Sends the queue in order: a single file as its own message; the files of a
    /// folder stored one by one, then sent 64 to a message (a folder of 1000 files is
    /// 16 messages, not 1000).
    async fn run(self) {
        let mut batch: Vec<StoredFile> = Vec::new();
        loop {
            let Some((id, conversation_id, f)) =
                self.queue.try_update_value(|q| q.pop_front()).flatten()
            else {
                break;
            };
            self.set_row(id, |r| r.active = true);
            if f.path.is_none() {
                let sent = self.post(id, &conversation_id, &f).await;
                self.rows.update(|r| r.retain(|r| r.id != id));
                match sent {
                    Ok(message) => self.chat.add_message(message),
                    Err(e) => self.failed(id, &f.label(), &e),
                }
                continue;
            }
            let stored = self.store(id, &f).await;
            self.rows.update(|r| r.retain(|r| r.id != id));
            match stored {
                Ok(file_id) => batch.push(StoredFile {
                    file_id,
                    name: f.name.clone(),
                    path: f.path.clone(),
                }),
                Err(e) => self.failed(id, &f.label(), &e),
            }
            let more_of_it = self.queue.with_value(|q| {
                q.front()
                    .is_some_and(|(_, c, next)| *c == conversation_id && next.path.is_some())
            });
            if !batch.is_empty() && (batch.len() >= MAX_FILES_PER_MESSAGE || !more_of_it) {
                let files = std::mem::take(&mut batch);
                match self
                    .chat
                    .client()
                    .send_stored_files(&conversation_id, &files)
                    .await
                {
                    Ok(message) => self.chat.add_message(message),
                    Err(e) => {
                        let label = files.first().map(|f| f.name.clone()).unwrap_or_default();
                        self.failed(id, &label, &e);
                    }
                }
            }
        }
        self.running.set_value(false);
    }

    fn failed(self, id: u64, label: &str, e: &UiError) {
        self.notices.push(
            NoticeKind::Warning,
            format!("upload:{id}"),
            "files.upload_failed",
            vec![
                ("name", label.to_string()),
                ("message", e.message(self.lang.0.get_untracked())),
            ],
        );
    }

    /// Stores one file of a folder (`POST /api/v1/files`): its id.
    async fn store(self, id: u64, f: &Outgoing) -> Result<String, UiError> {
        let (status, body) = self.xhr_upload(id, STORE_URL, f).await?;
        stored_answer(status, &body)
    }

    fn set_row(self, id: u64, f: impl FnOnce(&mut UploadRow)) {
        self.rows.update(|rows| {
            if let Some(r) = rows.iter_mut().find(|r| r.id == id) {
                f(r);
            }
        });
    }

    /// One file sent as its own message.
    async fn post(
        self,
        id: u64,
        conversation_id: &str,
        f: &Outgoing,
    ) -> Result<MessageView, UiError> {
        let url = upload_url(conversation_id, &f.name, f.path.as_deref());
        let (status, body) = self.xhr_upload(id, &url, f).await?;
        upload_answer(status, &body)
    }

    /// One file's bytes to `url`, through XMLHttpRequest for its upload progress: the
    /// answer's status and body.
    async fn xhr_upload(self, id: u64, url: &str, f: &Outgoing) -> Result<(u16, String), UiError> {
        let token = self
            .chat
            .client()
            .token()
            .map(str::to_string)
            .ok_or(UiError::NoToken)?;
        let xhr = XmlHttpRequest::new().map_err(js_error)?;
        xhr.open_with_async("POST", url, true).map_err(js_error)?;
        xhr.set_request_header("Authorization", &format!("Bearer {token}"))
            .map_err(js_error)?;
        xhr.set_request_header("Content-Type", "application/octet-stream")
            .map_err(js_error)?;
        let rows = self.rows;
        let on_progress = Closure::<dyn FnMut(ProgressEvent)>::new(move |ev: ProgressEvent| {
            let loaded = ev.loaded() as u64;
            rows.update(|rows| {
                if let Some(r) = rows.iter_mut().find(|r| r.id == id) {
                    r.sent = loaded;
                }
            });
        });
        let upload = xhr.upload().ok();
        if let Some(upload) = &upload {
            upload.set_onprogress(Some(on_progress.as_ref().unchecked_ref()));
        }
        let done = js_sys::Promise::new(&mut |resolve, reject| {
            xhr.set_onload(Some(&resolve));
            xhr.set_onerror(Some(&reject));
            xhr.set_onabort(Some(&reject));
        });
        xhr.send_with_opt_blob(Some(&f.file)).map_err(js_error)?;
        let finished = JsFuture::from(done).await;
        // The handlers go with this call (the closure is dropped below).
        if let Some(upload) = &upload {
            upload.set_onprogress(None);
        }
        xhr.set_onload(None);
        xhr.set_onerror(None);
        xhr.set_onabort(None);
        drop(on_progress);
        if finished.is_err() {
            return Err(UiError::Network("the upload was interrupted".into()));
        }
        let status = xhr.status().map_err(js_error)?;
        let body = xhr.response_text().ok().flatten().unwrap_or_default();
        Ok((status, body))
    }
}

/// The node's answer to storing a file: its id (`201`), or its error.
pub fn stored_answer(status: u16, body: &str) -> Result<String, UiError> {
    if (200..300).contains(&status) {
        let value: serde_json::Value = serde_json::from_str(body)
            .map_err(|e| UiError::Network(format!("unreadable answer: {e}")))?;
        return value["file_id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| UiError::Network("no file id in the answer".into()));
    }
    upload_answer(status, body).map(|m| m.id)
}

/// The node's answer to an upload: the message (`201`), or its error.
pub fn upload_answer(status: u16, body: &str) -> Result<MessageView, UiError> {
    if (200..300).contains(&status) {
        return serde_json::from_str::<MessageView>(body)
            .map_err(|e| UiError::Network(format!("unreadable answer: {e}")));
    }
    if let Ok(error) = serde_json::from_str::<ApiErrorBody>(body) {
        return Err(UiError::Api(error));
    }
    // No JSON (a proxy, or the connection cut short): say what the status means.
    let code = match status {
        413 => "too_large",
        507 => "disk_full",
        403 => "peer_blocked",
        _ => return Err(UiError::Network(format!("HTTP {status}"))),
    };
    Err(UiError::Api(ApiErrorBody {
        code: code.into(),
        message: format!("HTTP {status}"),
        field: None,
    }))
}

/// The pasted images of a paste (other pastes, text, are left to the text area), named
/// after the time they were pasted.
pub fn pasted_images(data: &web_sys::DataTransfer) -> Vec<Outgoing> {
    let items = data.items();
    let now = js_sys::Date::new_0();
    let date = (now.get_full_year(), now.get_month() + 1, now.get_date());
    let time = (now.get_hours(), now.get_minutes(), now.get_seconds());
    let mut out = Vec::new();
    for i in 0..items.length() {
        let Some(item) = items.get(i) else { continue };
        if item.kind() != "file" || !item.type_().starts_with("image/") {
            continue;
        }
        if let Ok(Some(file)) = item.get_as_file() {
            let name = crate::files_model::screenshot_name(date, time, &item.type_());
            let name = if out.is_empty() {
                name
            } else {
                // Several images in one paste: keep the names apart.
                name.replacen('.', &format!("-{}.", out.len() + 1), 1)
            };
            out.push(Outgoing::single(file, name));
        }
    }
    out
}

/// The files of an `<input type=file>` (with `webkitdirectory`: each with its folder).
pub fn picked_files(input: &web_sys::HtmlInputElement, folder: bool) -> Vec<Outgoing> {
    let Some(list) = input.files() else {
        return Vec::new();
    };
    (0..list.length())
        .filter_map(|i| list.get(i))
        .filter_map(|file| {
            if folder {
                let relative = js_sys::Reflect::get(&file, &"webkitRelativePath".into())
                    .ok()
                    .and_then(|v| v.as_string())
                    .filter(|r| !r.is_empty())
                    .unwrap_or_else(|| file.name());
                Outgoing::in_folder(file, &relative)
            } else {
                let name = file.name();
                Some(Outgoing::single(file, name))
            }
        })
        .collect()
}

/// What a drop holds: its files, and its folders walked (`webkitGetAsEntry`), each
/// file with its folder path. Must start while the drop event is dispatched (the
/// browser empties its items afterwards); the walk itself goes on after.
pub struct Dropped {
    files: Vec<Outgoing>,
    folders: Vec<web_sys::FileSystemDirectoryEntry>,
}

impl Dropped {
    pub fn of(data: &web_sys::DataTransfer) -> Dropped {
        let mut files = Vec::new();
        let mut folders = Vec::new();
        let items = data.items();
        for i in 0..items.length() {
            let Some(item) = items.get(i) else { continue };
            if item.kind() != "file" {
                continue;
            }
            let entry = item.webkit_get_as_entry().ok().flatten();
            if let Some(dir) = entry
                .filter(|e| e.is_directory())
                .and_then(|e| e.dyn_into::<web_sys::FileSystemDirectoryEntry>().ok())
            {
                folders.push(dir);
            } else if let Ok(Some(file)) = item.get_as_file() {
                let name = file.name();
                files.push(Outgoing::single(file, name));
            }
        }
        // No items (an older engine): the plain file list.
        if files.is_empty() && folders.is_empty() {
            if let Some(list) = data.files() {
                for file in (0..list.length()).filter_map(|i| list.get(i)) {
                    let name = file.name();
                    files.push(Outgoing::single(file, name));
                }
            }
        }
        Dropped { files, folders }
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.folders.is_empty()
    }

    /// Every file, the folders' ones with their paths; `Err` with the files found so
    /// far when a folder could not be read.
    pub async fn collect(self) -> Result<Vec<Outgoing>, Vec<Outgoing>> {
        let mut out = self.files;
        let mut ok = true;
        let mut stack: Vec<web_sys::FileSystemDirectoryEntry> = self.folders;
        while let Some(dir) = stack.pop() {
            let reader = dir.create_reader();
            loop {
                // readEntries answers in batches until an empty one.
                let Ok(batch) = read_entries(&reader).await else {
                    ok = false;
                    break;
                };
                if batch.is_empty() {
                    break;
                }
                for entry in batch {
                    if entry.is_directory() {
                        if let Ok(d) = entry.dyn_into::<web_sys::FileSystemDirectoryEntry>() {
                            stack.push(d);
                        }
                    } else if let Ok(f) = entry.clone().dyn_into::<web_sys::FileSystemFileEntry>() {
                        match file_of(&f).await {
                            Ok(file) => {
                                if let Some(o) = Outgoing::in_folder(file, &entry.full_path()) {
                                    out.push(o);
                                }
                            }
                            Err(_) => ok = false,
                        }
                    }
                }
            }
        }
        if ok {
            Ok(out)
        } else {
            Err(out)
        }
    }
}

async fn read_entries(
    reader: &web_sys::FileSystemDirectoryReader,
) -> Result<Vec<web_sys::FileSystemEntry>, wasm_bindgen::JsValue> {
    let promise = js_sys::Promise::new(&mut |resolve, reject| {
        if let Err(e) = reader.read_entries_with_callback_and_callback(&resolve, &reject) {
            let _ = reject.call1(&wasm_bindgen::JsValue::NULL, &e);
        }
    });
    let value = JsFuture::from(promise).await?;
    let array: js_sys::Array = value.dyn_into()?;
    Ok(array
        .iter()
        .filter_map(|v| v.dyn_into::<web_sys::FileSystemEntry>().ok())
        .collect())
}

async fn file_of(entry: &web_sys::FileSystemFileEntry) -> Result<File, wasm_bindgen::JsValue> {
    let promise = js_sys::Promise::new(&mut |resolve, reject| {
        entry.file_with_callback_and_callback(&resolve, &reject);
    });
    JsFuture::from(promise).await?.dyn_into::<File>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_answers() {
        let error = r#"{"code":"invalid_field","message":"bad name","field":"name"}"#;
        match upload_answer(400, error) {
            Err(UiError::Api(body)) => assert_eq!(body.field.as_deref(), Some("name")),
            other => panic!("{other:?}"),
        }
        match upload_answer(413, "") {
            Err(UiError::Api(body)) => assert_eq!(body.code, "too_large"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(upload_answer(502, ""), Err(UiError::Network(_))));
        assert!(matches!(upload_answer(201, "{}"), Err(UiError::Network(_))));
    }

    #[test]
    fn stored_answers() {
        let id = "ab".repeat(32);
        let body = format!(r#"{{"file_id":"{id}","size":3}}"#);
        assert_eq!(stored_answer(201, &body).unwrap(), id);
        assert!(matches!(stored_answer(201, "{}"), Err(UiError::Network(_))));
        match stored_answer(507, "") {
            Err(UiError::Api(body)) => assert_eq!(body.code, "disk_full"),
            other => panic!("{other:?}"),
        }
    }
}
