//! Dates and times in the UI's language, formatted by the browser (`Intl`), and the
//! local day of a time (which needs the browser's timezone). The decisions (today,
//! yesterday, this week) are `chat_model`'s pure functions.

use api_types::Language;
use js_sys::{Date, Object, Reflect};
use wasm_bindgen::JsValue;

use crate::chat_model::{day_name, local_day, DayName};

fn date(ms: u64) -> Date {
    Date::new(&JsValue::from_f64(ms as f64))
}

fn options(pairs: &[(&str, &str)]) -> JsValue {
    let o = Object::new();
    for (k, v) in pairs {
        // Setting a property on a fresh plain object cannot fail.
        let _ = Reflect::set(&o, &JsValue::from_str(k), &JsValue::from_str(v));
    }
    o.into()
}

pub fn now_ms() -> u64 {
    Date::now() as u64
}

/// The local day number of a Unix-ms time.
pub fn day_of(ms: u64) -> i64 {
    local_day(ms, date(ms).get_timezone_offset())
}

pub fn today() -> i64 {
    day_of(now_ms())
}

/// `14:05` (or `下午2:05`…, as the language writes it).
pub fn time_of_day(lang: Language, ms: u64) -> String {
    date(ms)
        .to_locale_time_string_with_options(
            lang.tag(),
            &options(&[("hour", "2-digit"), ("minute", "2-digit")]),
        )
        .into()
}

/// The full date and time, for tooltips and "last seen".
pub fn date_time(lang: Language, ms: u64) -> String {
    date(ms)
        .to_locale_string(
            lang.tag(),
            &options(&[
                ("year", "numeric"),
                ("month", "short"),
                ("day", "numeric"),
                ("hour", "2-digit"),
                ("minute", "2-digit"),
            ]),
        )
        .into()
}

/// The separator above a day's messages: Today, Yesterday, a weekday, or a full date.
pub fn day_label(lang: Language, day: i64, ms: u64) -> String {
    match day_name(day, today()) {
        DayName::Today => i18n::t(lang, "chat.day.today"),
        DayName::Yesterday => i18n::t(lang, "chat.day.yesterday"),
        DayName::Weekday => date(ms)
            .to_locale_date_string(
                lang.tag(),
                &options(&[("weekday", "long"), ("month", "long"), ("day", "numeric")]),
            )
            .into(),
        DayName::Date => date(ms)
            .to_locale_date_string(
                lang.tag(),
                &options(&[
                    ("weekday", "long"),
                    ("year", "numeric"),
                    ("month", "long"),
                    ("day", "numeric"),
                ]),
            )
            .into(),
    }
}

/// The short time in a list row: the time today, the weekday this week, else the date.
pub fn list_time(lang: Language, ms: u64) -> String {
    match day_name(day_of(ms), today()) {
        DayName::Today => time_of_day(lang, ms),
        DayName::Yesterday => i18n::t(lang, "chat.day.yesterday"),
        DayName::Weekday => date(ms)
            .to_locale_date_string(lang.tag(), &options(&[("weekday", "short")]))
            .into(),
        DayName::Date => date(ms)
            .to_locale_date_string(
                lang.tag(),
                &options(&[
                    ("year", "numeric"),
                    ("month", "numeric"),
                    ("day", "numeric"),
                ]),
            )
            .into(),
    }
}
