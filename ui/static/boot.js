// Loads the wasm app. Kept in a file (not inline) so the page's Content-Security-Policy
// can forbid inline scripts.
import init from "/ui.js";
init();
