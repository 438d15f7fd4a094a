//! Property tests of every parser that takes input from callers: snapshot
//! names and container ids (never a way out of the daemon's folders), cron
//! expressions (an answer for anything, never a panic), and the daemon's
//! configuration file (same). No root needed.

use proptest::prelude::*;
use rollpoint::config::Config;
use rollpoint::engine::names;
use rollpoint::scheduler::CronSchedule;

/// Strings from a grammar that mixes what path tricks and cron syntax use.
fn tricky() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            Just("/".to_string()),
            Just("..".to_string()),
            Just(".".to_string()),
            Just("\0".to_string()),
            Just("*".to_string()),
            Just(",".to_string()),
            Just("-".to_string()),
            Just(" ".to_string()),
            Just("@".to_string()),
            "[a-z0-9]{1,4}",
            any::<char>().prop_map(|c| c.to_string()),
        ],
        0..12,
    )
    .prop_map(|parts| parts.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn accepted_snapshot_names_stay_in_their_folder(name in tricky()) {
        if names::snapshot_name("name", &name).is_ok() {
            let folder = std::path::Path::new("/fs/.rollpoint/db-1");
            let joined = folder.join(&name);
            prop_assert_eq!(joined.parent(), Some(folder), "{:?} escapes", name);
            prop_assert!(!name.starts_with('.') && !name.contains('/') && !name.contains('\0'));
            prop_assert!(name.len() <= names::MAX_SNAPSHOT_NAME);
        }
    }

    #[test]
    fn accepted_container_ids_are_single_path_components(id in tricky()) {
        if names::container_id("id", &id).is_ok() {
            prop_assert!(id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
            prop_assert!(!id.starts_with('-'));
        }
    }

    #[test]
    fn cron_parsing_answers_without_panicking(expression in tricky(), zone in prop_oneof![Just("UTC".to_string()), Just("Europe/Berlin".to_string()), "[A-Za-z/_]{0,12}"]) {
        if let Ok(schedule) = CronSchedule::parse(&expression, &zone) {
            let now = chrono::Utc::now();
            if let Some(next) = schedule.next_after(now) {
                prop_assert!(next > now);
            }
        }
    }

    #[test]
    fn five_numeric_fields_always_get_an_answer(fields in proptest::collection::vec(0u32..100, 5)) {
        let expression = fields.iter().map(u32::to_string).collect::<Vec<_>>().join(" ");
        match CronSchedule::parse(&expression, "UTC") {
            Ok(_) => {}
            Err(error) => prop_assert!(!error.message.is_empty()),
        }
    }

    #[test]
    fn config_parsing_answers_without_panicking(text in "[a-z_ =\"0-9.\\[\\]\n]{0,80}") {
        let _ = Config::parse(&text);
    }
}
