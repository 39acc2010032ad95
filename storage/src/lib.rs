//! `storage` owns every byte the node keeps: the data directory and its lock, the
//! settings file, private files (API token), and the SQLite chat and mesh store.
//! It does no networking.

pub mod data_dir;
pub mod private_file;
pub mod settings_file;

pub use data_dir::{DataDir, DataDirError};
pub use settings_file::SettingsFileError;
