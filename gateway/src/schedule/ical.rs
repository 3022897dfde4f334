//! iCalendar feeds (RFC 5545) of occurrences, for teachers' and classrooms' calendar apps, and
//! the strong ETag that lets those apps poll cheaply.
//!
//! Drive it with [`calendar()`]: a calendar name, the occurrences (any order; they are written
//! sorted as [`expand`](super::expand()) sorts them), a `stamp` and a closure giving each
//! occurrence's display text; then [`etag()`] of the body for the `ETag` header.
//!
//! The body is a pure function of the arguments, so an unchanged timetable yields a byte-equal
//! body and the same ETag. That is why there is no "now" here: `DTSTAMP` is the caller's
//! `stamp`, which should be the last time the underlying data changed (e.g. the newest
//! `created_at`/update time among the term, bells, series and exceptions involved). RFC 5545
//! §3.8.7.2 defines `DTSTAMP` exactly so for a calendar without a `METHOD`, which this is.
//!
//! Output: CRLF line endings; lines folded at 75 octets on UTF-8 character boundaries (Chinese
//! text is 3 octets a character); TEXT values escaped (`\\`, `\;`, `\,`, `\n`; other control
//! characters dropped); times in UTC (`…Z`), with `X-WR-TIMEZONE:Asia/Shanghai` so clients show
//! school-local time; `UID` is `<series>-<origin date>@duet`, stable when a lesson is moved.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::expand::Occurrence;

/// The display text of one event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventText {
    /// `SUMMARY`, e.g. "初二数学 · 同步课堂".
    pub summary: String,
    /// `DESCRIPTION` (may hold newlines); left out when empty.
    pub description: String,
    /// `LOCATION`, e.g. the lead classroom's name; left out when empty.
    pub location: String,
}

/// The maximum length of a content line in octets, excluding CRLF (RFC 5545 §3.1).
const MAX_LINE: usize = 75;

/// An RFC 5545 calendar named `name` with one `VEVENT` per occurrence. `stamp` becomes every
/// event's `DTSTAMP` (see the module doc: the data's last modification, not the clock).
pub fn calendar(
    name: &str,
    occurrences: &[Occurrence],
    stamp: DateTime<Utc>,
    describe: impl Fn(&Occurrence) -> EventText,
) -> String {
    let mut sorted: Vec<&Occurrence> = occurrences.iter().collect();
    sorted.sort_by(|a, b| a.order_key().cmp(&b.order_key()));

    let mut out = String::with_capacity(256 + 400 * sorted.len());
    let mut line = |text: &str| push_folded(&mut out, text);
    line("BEGIN:VCALENDAR");
    line("VERSION:2.0");
    line("PRODID:-//Duet//Timetable//ZH");
    line("CALSCALE:GREGORIAN");
    line(&format!("X-WR-CALNAME:{}", escape_text(name)));
    line("X-WR-TIMEZONE:Asia/Shanghai");
    line("REFRESH-INTERVAL;VALUE=DURATION:PT1H");
    line("X-PUBLISHED-TTL:PT1H");
    let stamp = utc_stamp(stamp);
    for o in sorted {
        let text = describe(o);
        line("BEGIN:VEVENT");
        line(&format!(
            "UID:{}",
            escape_text(&format!("{}-{}@duet", o.series, o.origin_date()))
        ));
        line(&format!("DTSTAMP:{stamp}"));
        line(&format!("DTSTART:{}", utc_stamp(o.start)));
        line(&format!("DTEND:{}", utc_stamp(o.end)));
        line(&format!("SUMMARY:{}", escape_text(&text.summary)));
        if !text.description.is_empty() {
            line(&format!("DESCRIPTION:{}", escape_text(&text.description)));
        }
        if !text.location.is_empty() {
            line(&format!("LOCATION:{}", escape_text(&text.location)));
        }
        line("STATUS:CONFIRMED");
        line("END:VEVENT");
    }
    line("END:VCALENDAR");
    out
}

/// A strong ETag for `body`: the first 22 characters (132 bits) of the base64url SHA-256,
/// quoted, e.g. `"q0bS9ck3Xx…"`.
pub fn etag(body: &str) -> String {
    let digest = URL_SAFE_NO_PAD.encode(Sha256::digest(body.as_bytes()));
    format!("\"{}\"", &digest[..22])
}

/// `YYYYMMDDTHHMMSSZ` (RFC 5545 §3.3.5, form #2).
fn utc_stamp(t: DateTime<Utc>) -> String {
    t.format("%Y%m%dT%H%M%SZ").to_string()
}

/// Escapes a TEXT value (RFC 5545 §3.3.11): backslash, semicolon and comma get a backslash, a
/// line break (LF, CRLF or CR) becomes `\n`, other control characters except tab are dropped.
fn escape_text(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    let mut chars = value.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push_str("\\\\"),
            ';' => out.push_str("\\;"),
            ',' => out.push_str("\\,"),
            '\n' => out.push_str("\\n"),
            '\r' => {
                chars.next_if_eq(&'\n');
                out.push_str("\\n");
            }
            '\t' => out.push('\t'),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Appends `line` with CRLF, folded so no physical line exceeds [`MAX_LINE`] octets: each
/// continuation starts with a space (which counts), and folds fall between UTF-8 characters.
fn push_folded(out: &mut String, line: &str) {
    let mut rest = line;
    let mut room = MAX_LINE;
    while rest.len() > room {
        let mut cut = room;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        out.push_str(&rest[..cut]);
        out.push_str("\r\n ");
        rest = &rest[cut..];
        room = MAX_LINE - 1;
    }
    out.push_str(rest);
    out.push_str("\r\n");
}

#[cfg(test)]
mod tests {
    use chrono::Weekday;
    use icalendar::parser::{read_calendar, unfold};

    use super::*;
    use crate::schedule::expand::{Exception, expand};
    use crate::schedule::fixtures::{SCHOOL_A, SCHOOL_B, autumn_2026, bells, d, series, utc};

    const LONG_SUMMARY: &str =
        "初二数学·同步课堂：分数的意义（第二课时）——城关一中主讲，三河小学、柳林教学点接收";

    fn lessons() -> Vec<Occurrence> {
        let mut paired = series(
            "ser_paired",
            Weekday::Mon,
            2,
            SCHOOL_A,
            "cls_a1",
            &["cls_r"],
            "usr_wang",
        );
        paired.subject = "数学".into();
        paired.exceptions.push(Exception::Move {
            date: d("2026-10-19"),
            new_date: d("2026-10-14"),
            new_period: 3,
        });
        let local = series(
            "ser_local",
            Weekday::Tue,
            1,
            SCHOOL_B,
            "cls_r",
            &[],
            "usr_li",
        );
        expand(
            &autumn_2026(),
            &bells(),
            &[paired, local],
            d("2026-10-12"),
            d("2026-10-18"),
        )
        .unwrap()
    }

    fn describe(o: &Occurrence) -> EventText {
        EventText {
            summary: if o.series.as_str() == "ser_paired" {
                LONG_SUMMARY.to_owned()
            } else {
                "三河小学语文".to_owned()
            },
            description: format!("第{}节; 教师: {}, 备注\\无\n第二行", o.period, o.teacher),
            location: "城关一中 录播教室(1)".to_owned(),
        }
    }

    fn stamp() -> DateTime<Utc> {
        utc("2026-09-30T08:15:42.5Z")
    }

    #[test]
    fn round_trip_through_the_icalendar_parser() {
        let occurrences = lessons();
        assert_eq!(occurrences.len(), 3);
        let body = calendar("三河小学四(1)班 课表", &occurrences, stamp(), describe);

        let unfolded = unfold(&body);
        let parsed = read_calendar(&unfolded).expect("our feed parses");
        let prop = |name: &str| {
            parsed
                .properties
                .iter()
                .find(|p| p.name.as_str() == name)
                .map(|p| p.val.as_str().to_owned())
        };
        assert_eq!(prop("VERSION").as_deref(), Some("2.0"));
        assert_eq!(prop("PRODID").as_deref(), Some("-//Duet//Timetable//ZH"));
        assert_eq!(
            prop("X-WR-CALNAME").as_deref(),
            Some("三河小学四(1)班 课表")
        );
        assert_eq!(prop("X-WR-TIMEZONE").as_deref(), Some("Asia/Shanghai"));

        let events: Vec<_> = parsed
            .components
            .iter()
            .filter(|c| c.name.as_str() == "VEVENT")
            .collect();
        assert_eq!(events.len(), 3);
        let get = |i: usize, name: &str| {
            events[i]
                .find_prop(name)
                .map(|p| p.val.as_str().to_owned())
                .unwrap_or_else(|| panic!("event {i} has {name}"))
        };
        // Sorted by start: Mon 10-12 p2 at A, Tue 10-13 p1 at B, Wed 10-14 p3 at A (moved).
        let uids: Vec<String> = (0..3).map(|i| get(i, "UID")).collect();
        assert_eq!(
            uids,
            [
                "ser_paired-2026-10-12@duet",
                "ser_local-2026-10-13@duet",
                "ser_paired-2026-10-19@duet", // moved from Monday 10-19: keeps its identity
            ]
        );
        let starts: Vec<String> = (0..3).map(|i| get(i, "DTSTART")).collect();
        assert_eq!(
            starts,
            ["20261012T005000Z", "20261013T000500Z", "20261014T014000Z"]
        );
        assert_eq!(get(0, "DTEND"), "20261012T013000Z");
        assert_eq!(get(0, "DTSTAMP"), "20260930T081542Z");
        assert_eq!(get(0, "SUMMARY"), LONG_SUMMARY);
        assert_eq!(get(1, "SUMMARY"), "三河小学语文");
        assert_eq!(
            get(0, "DESCRIPTION"),
            "第2节; 教师: usr_wang, 备注\\无\n第二行"
        );
        assert_eq!(get(0, "LOCATION"), "城关一中 录播教室(1)");
        assert_eq!(get(2, "STATUS"), "CONFIRMED");
    }

    #[test]
    fn lines_are_crlf_and_at_most_75_octets() {
        let body = calendar("课表", &lessons(), stamp(), describe);
        assert!(body.ends_with("END:VCALENDAR\r\n"));
        assert!(!body.replace("\r\n", "").contains('\n'), "no bare LF");
        assert!(!body.replace("\r\n", "").contains('\r'), "no bare CR");
        let lines: Vec<&str> = body.split_terminator("\r\n").collect();
        assert!(lines.iter().all(|l| l.len() <= MAX_LINE), "{lines:#?}");
        // The long Chinese summary really was folded.
        assert!(lines.iter().any(|l| l.starts_with(' ')));
        assert!(!body.contains(LONG_SUMMARY));
    }

    #[test]
    fn folding_respects_character_boundaries() {
        for prefix in ["", "a", "ab"] {
            // Shift the 3-octet characters against the 75/74-octet limits.
            let line = format!("SUMMARY:{prefix}{}", "课".repeat(100));
            let mut out = String::new();
            push_folded(&mut out, &line);
            let physical: Vec<&str> = out.split_terminator("\r\n").collect();
            assert!(physical.len() > 1);
            assert!(physical.iter().all(|l| l.len() <= MAX_LINE));
            // The first line uses as much as fits, continuations at most 74 after the space.
            assert!(physical[0].len() > MAX_LINE - 3);
            assert_eq!(unfold(&out), format!("{line}\r\n"));
        }
        let mut out = String::new();
        push_folded(&mut out, &"x".repeat(75));
        assert_eq!(
            out,
            format!("{}\r\n", "x".repeat(75)),
            "75 octets fit on one line"
        );
        let mut out = String::new();
        push_folded(&mut out, &"x".repeat(76));
        assert_eq!(out, format!("{}\r\n x\r\n", "x".repeat(75)));
    }

    #[test]
    fn text_values_are_escaped() {
        assert_eq!(escape_text("a,b;c\\d"), "a\\,b\\;c\\\\d");
        assert_eq!(escape_text("一\n二\r\n三\r四"), "一\\n二\\n三\\n四");
        assert_eq!(escape_text("tab\there\u{0}\u{7}\u{7f}"), "tab\there");
        assert_eq!(escape_text(""), "");
    }

    #[test]
    fn etag_is_stable_and_tracks_changes() {
        let body = calendar("课表", &lessons(), stamp(), describe);
        let tag = etag(&body);
        assert_eq!(tag.len(), 24);
        assert!(tag.starts_with('"') && tag.ends_with('"'));
        assert!(
            tag[1..23]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );

        // Same data, input in another order: byte-equal body, same tag.
        let mut reversed = lessons();
        reversed.reverse();
        let again = calendar("课表", &reversed, stamp(), describe);
        assert_eq!(again, body);
        assert_eq!(etag(&again), tag);

        // One lesson moved by a period: a different tag.
        let mut changed = lessons();
        changed[1].start += chrono::Duration::minutes(50);
        changed[1].end += chrono::Duration::minutes(50);
        assert_ne!(etag(&calendar("课表", &changed, stamp(), describe)), tag);
        // A new stamp: a different tag.
        assert_ne!(
            etag(&calendar(
                "课表",
                &lessons(),
                utc("2026-10-01T00:00:00Z"),
                describe
            )),
            tag
        );
    }

    #[test]
    fn an_empty_calendar_is_valid() {
        let body = calendar("空", &[], stamp(), describe);
        let unfolded = unfold(&body);
        let parsed = read_calendar(&unfolded).expect("an empty feed parses");
        assert!(parsed.components.is_empty());
        assert!(!body.contains("BEGIN:VEVENT"));
    }

    #[test]
    fn empty_description_and_location_are_left_out() {
        let body = calendar("课表", &lessons(), stamp(), |_| EventText {
            summary: "数学".into(),
            ..EventText::default()
        });
        assert!(!body.contains("DESCRIPTION"));
        assert!(!body.contains("LOCATION"));
        assert_eq!(body.matches("SUMMARY:数学\r\n").count(), 3);
    }
}
