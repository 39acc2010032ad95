//! Message catalogs. Every visible string of the UI and the desktop shell comes from
//! here, in zh-CN and en-US, which must have exactly the same keys and placeholders
//! (checked by this crate's tests, so a missing translation fails CI).
//!
//! Catalogs are flat JSON objects compiled into the binary; placeholders are `{name}`.

use std::collections::HashMap;
use std::sync::OnceLock;

pub use api_types::Language;

type Catalog = HashMap<String, String>;

const EN_US: &str = include_str!("../locales/en-US.json");
const ZH_CN: &str = include_str!("../locales/zh-CN.json");

fn source(lang: Language) -> &'static str {
    match lang {
        Language::EnUs => EN_US,
        Language::ZhCn => ZH_CN,
    }
}

fn catalog(lang: Language) -> &'static Catalog {
    static EN: OnceLock<Catalog> = OnceLock::new();
    static ZH: OnceLock<Catalog> = OnceLock::new();
    let cell = match lang {
        Language::EnUs => &EN,
        Language::ZhCn => &ZH,
    };
    // The catalogs are compiled in and checked by the tests below; should one ever be
    // malformed, the UI shows keys instead of crashing.
    cell.get_or_init(|| serde_json::from_str(source(lang)).unwrap_or_default())
}

/// The text for `key`, or the key itself when it is missing (visible, never a crash).
pub fn t(lang: Language, key: &str) -> String {
    catalog(lang)
        .get(key)
        .cloned()
        .unwrap_or_else(|| key.to_string())
}

/// The text for `key` with each `{name}` replaced by its value.
pub fn tf(lang: Language, key: &str, args: &[(&str, &str)]) -> String {
    let mut text = t(lang, key);
    for (name, value) in args {
        text = text.replace(&format!("{{{name}}}"), value);
    }
    text
}

/// The catalog key for an API error code (`invalid_field` → `error.invalid_field`),
/// falling back to the generic internal-error text for codes the UI does not know.
pub fn error_key(code: &str) -> String {
    let key = format!("error.{code}");
    if catalog(Language::EnUs).contains_key(&key) {
        key
    } else {
        "error.internal".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn parsed(lang: Language) -> Catalog {
        serde_json::from_str(source(lang)).expect("catalog is valid JSON")
    }

    fn placeholders(text: &str) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        let mut rest = text;
        while let Some(start) = rest.find('{') {
            let after = &rest[start + 1..];
            match after.find('}') {
                Some(end) => {
                    out.insert(after[..end].to_string());
                    rest = &after[end + 1..];
                }
                None => break,
            }
        }
        out
    }

    #[test]
    fn catalogs_have_the_same_keys_non_empty_and_same_placeholders() {
        let en = parsed(Language::EnUs);
        let zh = parsed(Language::ZhCn);
        let en_keys: BTreeSet<_> = en.keys().collect();
        let zh_keys: BTreeSet<_> = zh.keys().collect();
        assert_eq!(en_keys, zh_keys, "zh-CN and en-US must have the same keys");
        for (key, en_text) in &en {
            let zh_text = &zh[key];
            assert!(!en_text.trim().is_empty(), "en-US {key} is empty");
            assert!(!zh_text.trim().is_empty(), "zh-CN {key} is empty");
            assert_eq!(
                placeholders(en_text),
                placeholders(zh_text),
                "placeholders of {key}"
            );
        }
    }

    #[test]
    fn lookup_and_formatting() {
        assert_eq!(t(Language::EnUs, "status.node_id"), "Node ID");
        assert_eq!(t(Language::ZhCn, "status.node_id"), "节点 ID");
        assert_eq!(t(Language::EnUs, "no.such.key"), "no.such.key");
        assert_eq!(
            tf(
                Language::EnUs,
                "status.mesh.failed",
                &[("reason", "port in use")]
            ),
            "Failed: port in use"
        );
    }

    #[test]
    fn error_codes_map_to_keys() {
        // Every code the local API sends has its own text.
        for code in [
            "bad_request",
            "invalid_field",
            "unauthorized",
            "forbidden_host",
            "forbidden_origin",
            "not_found",
            "method_not_allowed",
            "unsupported_media_type",
            "mesh_off",
            "peer_blocked",
            "not_failed",
            "forbidden",
            "internal",
        ] {
            assert_eq!(error_key(code), format!("error.{code}"));
        }
        assert_eq!(error_key("unauthorized"), "error.unauthorized");
        assert_eq!(error_key("something_new"), "error.internal");
    }

    #[test]
    fn every_language_has_a_name() {
        for lang in Language::ALL {
            assert_ne!(
                t(lang, &format!("lang.{}", lang.tag())),
                format!("lang.{}", lang.tag())
            );
        }
    }
}
