fn main() {
    // The UI is embedded by lanchat-node (its build script makes sure ui/dist exists);
    // the window loads it from the node's local address.
    tauri_build::build();
}
