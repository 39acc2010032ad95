//! The lanchat UI: a Leptos client-side app, compiled to wasm, served by the node and
//! shown in the desktop window or any browser. It talks only to the local API.

mod api;
mod app;
mod attachments;
mod chat_model;
mod clock_text;
mod conversation_view;
mod desktop_prefs;
mod diagnostics_view;
mod events;
mod file_settings;
mod files_model;
mod group_dialog;
mod group_info;
mod group_model;
mod group_state;
mod identity_banner;
mod invitations;
mod language;
mod messenger;
mod notices;
mod peers_view;
mod presence_picker;
mod rail;
mod search_view;
mod settings_form;
mod settings_view;
mod status_view;
mod switcher;
mod time_text;
mod upload;
mod welcome;

fn main() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(app::App);
}
