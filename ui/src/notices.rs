//! Short notes over the page (toasts): a group's new announcement, a peer refused for
//! changed keys. Text is a catalog key plus arguments, so a language switch re-renders
//! them; warnings stay until dismissed, information goes by itself.

use std::time::Duration;

use leptos::prelude::*;

use crate::app::Lang;

/// Long enough to read two lines; the same text also stays where it belongs (the
/// announcement banner), so nothing is lost when it goes.
const INFO_VISIBLE: Duration = Duration::from_secs(8);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoticeKind {
    Info,
    Warning,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notice {
    pub id: u64,
    pub kind: NoticeKind,
    pub key: &'static str,
    pub args: Vec<(&'static str, String)>,
    /// What makes two notices the same (a peer's repeated dial attempts show once).
    pub topic: String,
}

#[derive(Clone, Copy)]
pub struct Notices {
    pub list: RwSignal<Vec<Notice>>,
    next: StoredValue<u64>,
}

impl Notices {
    pub fn new() -> Notices {
        Notices {
            list: RwSignal::new(Vec::new()),
            next: StoredValue::new(1),
        }
    }

    /// Shows a notice unless one on the same topic is still shown (then its text is
    /// refreshed in place).
    pub fn push(
        &self,
        kind: NoticeKind,
        topic: String,
        key: &'static str,
        args: Vec<(&'static str, String)>,
    ) {
        let mut refreshed = false;
        self.list.update(|list| {
            if let Some(n) = list.iter_mut().find(|n| n.topic == topic) {
                n.args = args.clone();
                refreshed = true;
            }
        });
        if refreshed {
            return;
        }
        let id = self.next.get_value();
        self.next.set_value(id + 1);
        self.list.update(|list| {
            list.push(Notice {
                id,
                kind,
                key,
                args,
                topic,
            })
        });
        if kind == NoticeKind::Info {
            let this = *self;
            set_timeout(move || this.dismiss(id), INFO_VISIBLE);
        }
    }

    pub fn dismiss(&self, id: u64) {
        self.list.update(|list| list.retain(|n| n.id != id));
    }
}

#[component]
pub fn Toasts() -> impl IntoView {
    let lang = expect_context::<Lang>();
    let notices = expect_context::<Notices>();
    view! {
        <div class="toasts" data-testid="toasts">
            <For each=move || notices.list.get() key=|n| n.id let:n>
                {
                    let id = n.id;
                    let warning = n.kind == NoticeKind::Warning;
                    let text = move || {
                        let args: Vec<(&str, &str)> =
                            n.args.iter().map(|(k, v)| (*k, v.as_str())).collect();
                        i18n::tf(lang.0.get(), n.key, &args)
                    };
                    view! {
                        <div class="toast" class:warning=warning
                            role=if warning { "alert" } else { "status" }
                            data-testid=if warning { "toast-warning" } else { "toast-info" }>
                            <span class="toast-text">{text}</span>
                            <button type="button" class="link" data-testid="toast-dismiss"
                                aria-label=move || lang.t("notice.dismiss")
                                on:click=move |_| notices.dismiss(id)>"×"</button>
                        </div>
                    }
                }
            </For>
        </div>
    }
}
