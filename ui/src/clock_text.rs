//! How a clock difference reads: pure, so it is tested natively.

use api_types::{Language, Warning, WarningCode, CLOCK_OFFSET_WARNING_MS};

/// "5 min", "3 h", "2 days" in the UI's language (whole units, rounded down).
pub fn duration(lang: Language, ms: u64) -> String {
    let (key, n) = match ms / 1000 {
        s @ 0..=59 => ("clock.seconds", s),
        s @ 60..=7_199 => ("clock.minutes", s / 60),
        s @ 7_200..=172_799 => ("clock.hours", s / 3600),
        s => ("clock.days", s / 86_400),
    };
    i18n::tf(lang, key, &[("n", &n.to_string())])
}

/// "5 min ahead of" / "快 5 分钟": a difference with its direction.
pub fn offset(lang: Language, offset_ms: i64) -> String {
    let key = if offset_ms >= 0 {
        "clock.ahead"
    } else {
        "clock.behind"
    };
    i18n::tf(
        lang,
        key,
        &[("duration", &duration(lang, offset_ms.unsigned_abs()))],
    )
}

/// A peer's clock in the peers table: signed and short ("+5 min", "−3 h"), or "in
/// sync" within a second; flagged when it is off by more than the warning threshold.
pub fn peer_clock(lang: Language, offset_ms: Option<i64>) -> (String, bool) {
    match offset_ms {
        None => (String::new(), false),
        Some(o) if o.unsigned_abs() < 1000 => (i18n::t(lang, "clock.in_sync"), false),
        Some(o) => {
            let sign = if o > 0 { "+" } else { "−" };
            let off = o.unsigned_abs() > CLOCK_OFFSET_WARNING_MS.unsigned_abs();
            (format!("{sign}{}", duration(lang, o.unsigned_abs())), off)
        }
    }
}

/// A status warning in the UI's language (the node's English `message` is for scripts).
pub fn warning(lang: Language, w: &Warning) -> String {
    let offset_text = offset(lang, w.offset_ms.unwrap_or_default());
    match w.code {
        WarningCode::OpenLan => i18n::t(lang, "warning.open_lan"),
        WarningCode::WeakSecret => i18n::t(lang, "warning.weak_secret"),
        WarningCode::ClockOffset => {
            i18n::tf(lang, "warning.clock_offset", &[("offset", &offset_text)])
        }
        WarningCode::PeerClockOffset => {
            let name = w
                .display_name
                .clone()
                .filter(|n| !n.is_empty())
                .or_else(|| w.peer_id.clone())
                .unwrap_or_default();
            i18n::tf(
                lang,
                "warning.peer_clock_offset",
                &[("name", &name), ("offset", &offset_text)],
            )
        }
        WarningCode::DiskFull => i18n::t(lang, "warning.disk_full"),
        WarningCode::StorageError => {
            i18n::tf(lang, "warning.storage_error", &[("reason", &w.message)])
        }
        WarningCode::SettingsFile => {
            i18n::tf(lang, "warning.settings_file", &[("reason", &w.message)])
        }
        WarningCode::DuplicateIdentity => {
            let address = w.address.clone().unwrap_or_default();
            if w.addresses.is_empty() {
                i18n::tf(lang, "warning.duplicate_identity", &[("address", &address)])
            } else {
                let name = w
                    .display_name
                    .clone()
                    .filter(|n| !n.is_empty())
                    .or_else(|| w.peer_id.clone())
                    .unwrap_or_default();
                i18n::tf(
                    lang,
                    "warning.peer_duplicate_identity",
                    &[("name", &name), ("addresses", &w.addresses.join(", "))],
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_use_whole_units() {
        assert_eq!(duration(Language::EnUs, 2_500), "2 s");
        assert_eq!(duration(Language::EnUs, 300_000), "5 min");
        assert_eq!(duration(Language::EnUs, 3 * 3_600_000 + 5), "3 h");
        assert_eq!(duration(Language::EnUs, 3 * 86_400_000), "3 days");
        assert_eq!(duration(Language::ZhCn, 300_000), "5 分钟");
    }

    #[test]
    fn peer_clocks_are_signed_and_flagged_past_a_minute() {
        assert_eq!(peer_clock(Language::EnUs, None), (String::new(), false));
        assert_eq!(
            peer_clock(Language::EnUs, Some(-400)),
            ("in sync".to_string(), false)
        );
        assert_eq!(
            peer_clock(Language::EnUs, Some(30_000)),
            ("+30 s".to_string(), false)
        );
        assert_eq!(
            peer_clock(Language::EnUs, Some(-300_000)),
            ("−5 min".to_string(), true)
        );
    }

    #[test]
    fn warnings_read_in_both_languages() {
        let w = Warning {
            code: WarningCode::PeerClockOffset,
            message: String::new(),
            peer_id: Some("01ARZ3NDEKTSV4RRFFQ69G5FAV".into()),
            display_name: Some("Li".into()),
            offset_ms: Some(3 * 3_600_000),
            address: None,
            addresses: Vec::new(),
        };
        assert_eq!(
            warning(Language::EnUs, &w),
            "Li's clock is 3 h ahead of this computer's."
        );
        assert_eq!(warning(Language::ZhCn, &w), "Li 的时钟比本机快 3 小时。");
    }

    #[test]
    fn twin_warnings_name_the_other_address_in_both_languages() {
        let mine = Warning {
            code: WarningCode::DuplicateIdentity,
            message: String::new(),
            peer_id: Some("01ARZ3NDEKTSV4RRFFQ69G5FAV".into()),
            display_name: None,
            offset_ms: None,
            address: Some("10.0.0.9:19123".into()),
            addresses: Vec::new(),
        };
        assert!(warning(Language::EnUs, &mine).starts_with("The computer at 10.0.0.9:19123 "));
        assert!(warning(Language::ZhCn, &mine).starts_with("位于 10.0.0.9:19123 的电脑"));
        let theirs = Warning {
            display_name: Some("Li".into()),
            addresses: vec!["10.0.0.5:19123".into(), "10.0.0.9:19123".into()],
            ..mine
        };
        let text = warning(Language::EnUs, &theirs);
        assert!(
            text.starts_with("Li runs on two computers at once (10.0.0.5:19123, 10.0.0.9:19123)"),
            "{text}"
        );
        assert!(warning(Language::ZhCn, &theirs).starts_with("Li 同时在两台电脑上运行"));
    }
}
