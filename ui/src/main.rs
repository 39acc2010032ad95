//! The lanchat UI: a Leptos client-side app, compiled to wasm, served by the node and
//! shown in the desktop window or any browser. It talks only to the local API.

mod api;
mod app;
mod events;
mod language;
mod peers_view;
mod settings_form;
mod settings_view;
mod status_view;

fn main() {
    console_error_panic_hook::set_once();
    leptos::mount::mount_to_body(app::App);
}
