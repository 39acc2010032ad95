//! History search results (the rail's search box feeds it): hits across every
//! conversation, newest first, the query highlighted; a click opens the conversation
//! at that message.

use std::time::Duration;

use api_types::MessageView;
use leptos::prelude::*;
use leptos::task::spawn_local;

use crate::api::UiError;
use crate::app::Lang;
use crate::chat_model::highlight;
use crate::messenger::Chat;
use crate::time_text;

/// Typing pauses this long before a search is sent: one request per word, not per key.
const DEBOUNCE: Duration = Duration::from_millis(250);
const HITS_PER_PAGE: u32 = 30;

#[derive(Clone, Debug, Default, PartialEq)]
struct Found {
    query: String,
    hits: Vec<MessageView>,
    next: Option<String>,
    done: bool,
    error: Option<UiError>,
}

#[component]
pub fn SearchResults() -> impl IntoView {
    let lang = expect_context::<Lang>();
    let chat = expect_context::<Chat>();
    let found = RwSignal::new(Found::default());
    let generation = StoredValue::new(0_u64);

    let fetch = move |query: String, after: Option<String>| {
        let this_gen = generation.get_value();
        spawn_local(async move {
            let got = chat
                .client()
                .search(query.trim(), after.as_deref(), HITS_PER_PAGE)
                .await;
            // An answer for a query the user has since changed is dropped.
            if generation.get_value() != this_gen {
                return;
            }
            found.update(|f| {
                if f.query != query {
                    return;
                }
                f.done = true;
                match got {
                    Ok(r) => {
                        f.hits.extend(r.hits);
                        f.next = r.next;
                        f.error = None;
                    }
                    Err(e) => f.error = Some(e),
                }
            });
        });
    };

    Effect::new(move |_| {
        let query = chat.search.get();
        generation.update_value(|g| *g += 1);
        let this_gen = generation.get_value();
        found.set(Found {
            query: query.clone(),
            ..Found::default()
        });
        if query.trim().is_empty() {
            return;
        }
        set_timeout(
            move || {
                if generation.get_value() == this_gen {
                    fetch(query, None);
                }
            },
            DEBOUNCE,
        );
    });

    let more = move |_| {
        let (query, next) = found.with_untracked(|f| (f.query.clone(), f.next.clone()));
        if let Some(next) = next {
            found.update(|f| f.next = None);
            fetch(query, Some(next));
        }
    };

    view! {
        <section class="search-results" data-testid="search-results" aria-live="polite">
            <header class="conv-head">
                <div class="conv-title">
                    <h2>{move || i18n::tf(lang.0.get(), "chat.search.heading", &[("query", found.with(|f| f.query.trim().to_string()).as_str())])}</h2>
                    <p class="conv-sub">{move || lang.t("chat.search.escape")}</p>
                </div>
            </header>
            <div class="results-body">
                {move || found.with(|f| f.error.clone()).map(|e| view! { <p class="error inline">{e.message(lang.0.get())}</p> })}
                {move || {
                    let (done, empty) = found.with(|f| (f.done, f.hits.is_empty()));
                    if !done {
                        view! { <p class="muted center">{lang.t("chat.search.searching")}</p> }.into_any()
                    } else if empty {
                        view! { <p class="muted center" data-testid="search-empty">{lang.t("chat.search.none")}</p> }.into_any()
                    } else {
                        ().into_any()
                    }
                }}
                <ul class="hits" data-testid="search-hits">
                    {move || {
                        let (query, hits) = found.with(|f| (f.query.clone(), f.hits.clone()));
                        hits.into_iter().map(|hit| hit_view(lang, chat, &query, hit)).collect_view()
                    }}
                </ul>
                {move || found.with(|f| f.next.is_some()).then(|| view! {
                    <button type="button" class="link more" data-testid="search-more" on:click=more>
                        {lang.t("chat.search.more")}
                    </button>
                })}
            </div>
        </section>
    }
}

fn hit_view(lang: Lang, chat: Chat, query: &str, hit: MessageView) -> impl IntoView {
    let l = lang.0.get();
    let conversation = chat.name_of(&hit.conversation_id);
    let who = if hit.outgoing {
        Some(i18n::t(l, "chat.search.you"))
    } else {
        // In a DM the conversation's name already says who wrote it.
        (hit.sender_name != conversation).then(|| hit.sender_name.clone())
    };
    let pieces = highlight(&crate::files_model::message_summary(&hit), query)
        .into_iter()
        .map(|(text, hit)| {
            if hit {
                view! { <mark>{text}</mark> }.into_any()
            } else {
                view! { <span>{text}</span> }.into_any()
            }
        })
        .collect_view();
    let when = time_text::date_time(l, hit.sent_at);
    let id = hit.id.clone();
    view! {
        <li>
            <button type="button" class="hit" data-testid=format!("search-hit-{id}")
                on:click=move |_| chat.jump_to(&hit)>
                <span class="row-line">
                    <span class="row-title">{conversation}</span>
                    <span class="row-time">{when}</span>
                </span>
                {who.map(|w| view! { <span class="hit-who">{w}</span> })}
                <span class="hit-text">{pieces}</span>
            </button>
        </li>
    }
}
