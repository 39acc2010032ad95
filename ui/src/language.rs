//! Which language the UI speaks: the user's saved choice, else the browser's, else
//! English. Plain functions so they are tested natively.

use api_types::Language;

pub fn choose(saved: Option<Language>, browser_tag: Option<&str>) -> Language {
    saved
        .or_else(|| browser_tag.and_then(Language::from_tag))
        .unwrap_or(Language::EnUs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_choice_wins_then_browser_then_english() {
        assert_eq!(choose(Some(Language::ZhCn), Some("en-US")), Language::ZhCn);
        assert_eq!(choose(None, Some("zh-TW")), Language::ZhCn);
        assert_eq!(choose(None, Some("de-DE")), Language::EnUs);
        assert_eq!(choose(None, None), Language::EnUs);
    }
}
