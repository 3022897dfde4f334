//! The directing rules as data: [`DirectorConfig`] (serde, loadable from TOML, [`validate`]d), its
//! ordered [`Rule`]s and their [`Condition`]s, the [`DEFAULT_CONFIG_TOML`] sample, and
//! [`DirectorError`].
//!
//! Invariants once [`DirectorConfig::validate`] has passed: every duration is finite, positive
//! (`static_first_s` may be 0) and at most [`MAX_SECONDS`], so adding it to an `Instant` cannot
//! overflow in practice; every rule has a unique, non-empty name (it is the reason logged with a
//! cut); every threshold is a number. [`DirectorConfig::validate_sources`] adds that every role the
//! config shows has a source in the room.
//!
//! [`validate`]: DirectorConfig::validate

use super::shot::{Shot, ShotTemplate};
use super::sources::{Mic, Role, SourceMap};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::time::Duration;

/// The longest duration the config accepts, in seconds (a day; a lesson is 40–45 minutes).
pub const MAX_SECONDS: f64 = 86_400.0;

/// The sample config: every key, commented. It parses to [`DirectorConfig::default`] (a test holds
/// the two together).
pub const DEFAULT_CONFIG_TOML: &str = r#"
# Auto-director (导播) for movie mode (电影模式). Durations are in seconds.

# Shortest time a shot stays on air: at most one cut per hold (a lost camera is cut away at once),
# and a rule must keep wanting a new shot this long before the programme cuts to it.
min_hold_s = 4.0
# The programme stays on `opening` for this long after the start, whatever happens.
static_first_s = 60.0
# The opening shot: the pupils' panorama (or { single = "teacher_wide" }).
opening = { single = "pupils_wide" }
# Shown when no rule matches.
idle = { single = "pupils_wide" }

# Rules. Of the rules whose `when` holds, the one with the highest `priority` wins; ties go to the
# rule written first. Shots: { single = ROLE }, { picture_in_picture = { main = ROLE, inset = ROLE } },
# { side_by_side = [ROLE, ROLE] }. Roles: teacher_close_up, teacher_wide, pupils_wide,
# pupil_close_up, blackboard, courseware. Conditions: "teacher_speaking",
# "teacher_speaking_at_podium", "teacher_away_from_podium", "pupil_standing",
# { courseware_active = { within_s = S } }, { loud = { mic = "teacher" | "pupils", above_dbfs = L } },
# { all = [C, ...] }, { any = [C, ...] }, { not = C }.

# A pupil stands to answer: show them.
[[rules]]
name = "pupil_answering"
priority = 40
when = "pupil_standing"
show = { single = "pupil_close_up" }

# Mouse or touch on the teacher's PC in the last 10 s: the courseware, the teacher in a window.
[[rules]]
name = "courseware"
priority = 30
when = { courseware_active = { within_s = 10.0 } }
show = { picture_in_picture = { main = "courseware", inset = "teacher_close_up" } }

# The teacher speaks at the podium: close-up.
[[rules]]
name = "teacher_at_podium"
priority = 20
when = "teacher_speaking_at_podium"
show = { single = "teacher_close_up" }

# The teacher walks away from the podium: teacher panorama.
[[rules]]
name = "teacher_away"
priority = 10
when = "teacher_away_from_podium"
show = { single = "teacher_wide" }
"#;

/// The auto-director's rules and timings. Missing keys take their defaults; a config without
/// `rules` gets the default rules (write `rules = []` for none).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DirectorConfig {
    /// Shortest time a shot stays on air, in seconds (default 4). At most one cut per hold, except
    /// to leave a lost source; a rule must also want a new shot this long before it is cut to.
    pub min_hold_s: f64,
    /// How long the programme stays on [`opening`](Self::opening) after the start, in seconds
    /// (default 60): the first minute is static.
    pub static_first_s: f64,
    /// The shot on air from the start (default the pupils' panorama).
    pub opening: ShotTemplate,
    /// The shot when no rule matches (default the pupils' panorama).
    pub idle: ShotTemplate,
    /// The directing rules; see [`Rule`] for how one is chosen.
    pub rules: Vec<Rule>,
}

/// One directing rule: when `when` holds, the programme wants `show`. Of the rules that hold (and
/// whose shot can be shown), the highest `priority` wins; ties go to the rule listed first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// Unique name, reported as the reason of the cuts the rule causes.
    pub name: String,
    /// When the rule applies.
    pub when: Condition,
    /// What it shows.
    pub show: ShotTemplate,
    /// Higher wins (default 0).
    #[serde(default)]
    pub priority: i32,
}

/// What must be true of the room for a rule to apply.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum Condition {
    /// Mouse or touch on the teacher's PC less than `within_s` seconds ago.
    CoursewareActive {
        /// The window, in seconds.
        within_s: f64,
    },
    /// The teacher is speaking, wherever they are.
    TeacherSpeaking,
    /// The teacher is speaking at the podium (讲台).
    TeacherSpeakingAtPodium,
    /// The teacher has left the podium (speaking or not).
    TeacherAwayFromPodium,
    /// A pupil is standing (to answer).
    PupilStanding,
    /// The last level reported for `mic` is at or above `above_dbfs`.
    Loud {
        /// Which microphone.
        mic: Mic,
        /// Threshold in dBFS (0 is full scale, speech is typically −40 to −20).
        above_dbfs: f32,
    },
    /// Every one of these holds (an empty list always holds).
    All(Vec<Condition>),
    /// At least one of these holds (an empty list never holds).
    Any(Vec<Condition>),
    /// This does not hold.
    Not(Box<Condition>),
}

/// A config the director refuses, or a TOML text that is not a config.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DirectorError {
    /// `min_hold_s` is not in (0, [`MAX_SECONDS`]].
    #[error("min_hold_s must be more than 0 and at most 86400 seconds, not {value}")]
    MinHold {
        /// The refused value.
        value: f64,
    },
    /// `static_first_s` is not in [0, [`MAX_SECONDS`]].
    #[error("static_first_s must be 0 to 86400 seconds, not {value}")]
    StaticFirst {
        /// The refused value.
        value: f64,
    },
    /// A `courseware_active` window is not in (0, [`MAX_SECONDS`]].
    #[error(
        "rule {rule:?}: courseware_active.within_s must be more than 0 and at most 86400 seconds, not {value}"
    )]
    Window {
        /// The rule holding it.
        rule: String,
        /// The refused value.
        value: f64,
    },
    /// A `loud` threshold is not a finite number.
    #[error("rule {rule:?}: loud.above_dbfs must be a finite number, not {value}")]
    Threshold {
        /// The rule holding it.
        rule: String,
        /// The refused value.
        value: f32,
    },
    /// A rule's name is empty or used by an earlier rule.
    #[error("rule #{index} needs a unique, non-empty name, not {name:?}")]
    RuleName {
        /// Position of the rule in the list, from 0.
        index: usize,
        /// The refused name.
        name: String,
    },
    /// The config shows a role that the room has no source for.
    #[error("{used_by} shows {role}, but the room has no source for it")]
    NoSource {
        /// The role without a source.
        role: Role,
        /// `opening`, `idle` or the rule's name.
        used_by: String,
    },
    /// The text is not TOML, or not the shape of a [`DirectorConfig`].
    #[error("director config is not valid: {0}")]
    Toml(#[from] toml::de::Error),
}

impl Default for DirectorConfig {
    /// The rules of DOMAIN.md: a standing pupil → pupil close-up; courseware activity in the last
    /// 10 s → courseware with the teacher's close-up inset; the teacher speaking at the podium →
    /// teacher close-up; the teacher away from the podium → teacher panorama; otherwise the pupils'
    /// panorama. Hold 4 s; static for the first 60 s on the pupils' panorama.
    fn default() -> Self {
        let rule = |name: &str, priority, when, show| Rule {
            name: name.to_owned(),
            when,
            show,
            priority,
        };
        DirectorConfig {
            min_hold_s: 4.0,
            static_first_s: 60.0,
            opening: Shot::Single(Role::PupilsWide),
            idle: Shot::Single(Role::PupilsWide),
            rules: vec![
                rule(
                    "pupil_answering",
                    40,
                    Condition::PupilStanding,
                    Shot::Single(Role::PupilCloseUp),
                ),
                rule(
                    "courseware",
                    30,
                    Condition::CoursewareActive { within_s: 10.0 },
                    Shot::PictureInPicture {
                        main: Role::Courseware,
                        inset: Role::TeacherCloseUp,
                    },
                ),
                rule(
                    "teacher_at_podium",
                    20,
                    Condition::TeacherSpeakingAtPodium,
                    Shot::Single(Role::TeacherCloseUp),
                ),
                rule(
                    "teacher_away",
                    10,
                    Condition::TeacherAwayFromPodium,
                    Shot::Single(Role::TeacherWide),
                ),
            ],
        }
    }
}

impl DirectorConfig {
    /// Parses a TOML text and [`validate`](Self::validate)s it.
    pub fn from_toml(text: &str) -> Result<Self, DirectorError> {
        let config: DirectorConfig = toml::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what can be checked without the room: durations, windows, thresholds, rule names.
    /// Reports the first problem found, in key order.
    pub fn validate(&self) -> Result<(), DirectorError> {
        if seconds(self.min_hold_s).is_none_or(|d| d.is_zero()) {
            return Err(DirectorError::MinHold {
                value: self.min_hold_s,
            });
        }
        if seconds(self.static_first_s).is_none() {
            return Err(DirectorError::StaticFirst {
                value: self.static_first_s,
            });
        }
        let mut names = BTreeSet::new();
        for (index, rule) in self.rules.iter().enumerate() {
            if rule.name.is_empty() || !names.insert(rule.name.as_str()) {
                return Err(DirectorError::RuleName {
                    index,
                    name: rule.name.clone(),
                });
            }
            rule.when.check(&rule.name)?;
        }
        Ok(())
    }

    /// Checks that the room has a source for every role the config shows.
    pub fn validate_sources(&self, sources: &SourceMap) -> Result<(), DirectorError> {
        let shots = [("opening", &self.opening), ("idle", &self.idle)]
            .into_iter()
            .chain(self.rules.iter().map(|r| (r.name.as_str(), &r.show)));
        for (used_by, shot) in shots {
            if let Some(role) = shot.sources().find(|r| sources.get(*r).is_none()) {
                return Err(DirectorError::NoSource {
                    role,
                    used_by: used_by.to_owned(),
                });
            }
        }
        Ok(())
    }

    /// `min_hold_s` as a duration. Meaningful once [`validate`](Self::validate) has passed.
    pub fn min_hold(&self) -> Duration {
        seconds(self.min_hold_s).unwrap_or_default()
    }

    /// `static_first_s` as a duration. Meaningful once [`validate`](Self::validate) has passed.
    pub fn static_first(&self) -> Duration {
        seconds(self.static_first_s).unwrap_or_default()
    }
}

impl Condition {
    /// Refuses windows and thresholds that are not usable numbers.
    fn check(&self, rule: &str) -> Result<(), DirectorError> {
        match self {
            Condition::CoursewareActive { within_s }
                if seconds(*within_s).is_none_or(|d| d.is_zero()) =>
            {
                return Err(DirectorError::Window {
                    rule: rule.to_owned(),
                    value: *within_s,
                });
            }
            Condition::Loud { above_dbfs, .. } if !above_dbfs.is_finite() => {
                return Err(DirectorError::Threshold {
                    rule: rule.to_owned(),
                    value: *above_dbfs,
                });
            }
            Condition::All(all) | Condition::Any(all) => {
                for c in all {
                    c.check(rule)?;
                }
            }
            Condition::Not(c) => c.check(rule)?,
            _ => {}
        }
        Ok(())
    }

    /// Calls `f` with every courseware window in this condition.
    pub(crate) fn for_each_window(&self, f: &mut impl FnMut(Duration)) {
        match self {
            Condition::CoursewareActive { within_s } => f(window(*within_s)),
            Condition::All(all) | Condition::Any(all) => {
                all.iter().for_each(|c| c.for_each_window(f));
            }
            Condition::Not(c) => c.for_each_window(f),
            _ => {}
        }
    }
}

/// A courseware window as a duration; the engine uses this one conversion both to evaluate the
/// condition and to time its expiry, so the two agree to the nanosecond.
pub(crate) fn window(within_s: f64) -> Duration {
    seconds(within_s).unwrap_or_default()
}

/// `s` seconds as a duration, if it is a number in [0, MAX_SECONDS].
fn seconds(s: f64) -> Option<Duration> {
    (0.0..=MAX_SECONDS)
        .contains(&s)
        .then(|| Duration::from_secs_f64(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_toml_is_the_default_config() {
        let parsed = DirectorConfig::from_toml(DEFAULT_CONFIG_TOML).unwrap();
        assert_eq!(parsed, DirectorConfig::default());
        DirectorConfig::default().validate().unwrap();
    }

    #[test]
    fn missing_keys_take_defaults_and_typos_are_refused() {
        let config = DirectorConfig::from_toml("min_hold_s = 6").unwrap();
        assert_eq!(config.min_hold(), Duration::from_secs(6));
        assert_eq!(config.rules, DirectorConfig::default().rules);
        assert!(matches!(
            DirectorConfig::from_toml("min_hold = 6"),
            Err(DirectorError::Toml(_))
        ));
        assert!(matches!(
            DirectorConfig::from_toml("idle = { single = \"teacher_closeup\" }"),
            Err(DirectorError::Toml(_))
        ));
    }

    #[test]
    fn compound_conditions_and_every_layout_parse() {
        let config = DirectorConfig::from_toml(
            r#"
            static_first_s = 0
            opening = { single = "teacher_wide" }

            [[rules]]
            name = "board"
            when = { all = ["teacher_away_from_podium", { not = "pupil_standing" }] }
            show = { side_by_side = ["blackboard", "teacher_close_up"] }

            [[rules]]
            name = "discussion"
            priority = 5
            when = { any = [{ loud = { mic = "pupils", above_dbfs = -30 } }, "teacher_speaking"] }
            show = { single = "pupils_wide" }
            "#,
        )
        .unwrap();
        assert_eq!(config.static_first(), Duration::ZERO);
        assert_eq!(
            config.rules[0].when,
            Condition::All(vec![
                Condition::TeacherAwayFromPodium,
                Condition::Not(Box::new(Condition::PupilStanding)),
            ])
        );
        assert_eq!(
            config.rules[0].show,
            Shot::SideBySide(Role::Blackboard, Role::TeacherCloseUp)
        );
        assert_eq!(config.rules[1].priority, 5);
        assert_eq!(config.rules[0].priority, 0);
    }

    #[test]
    fn bad_numbers_and_names_are_refused_with_typed_errors() {
        let bad = DirectorConfig {
            min_hold_s: 0.0,
            static_first_s: -1.0,
            ..DirectorConfig::default()
        };
        assert!(matches!(bad.validate(), Err(DirectorError::MinHold { value }) if value == 0.0));
        let bad = DirectorConfig {
            static_first_s: -1.0,
            ..DirectorConfig::default()
        };
        assert!(matches!(
            bad.validate(),
            Err(DirectorError::StaticFirst { .. })
        ));
        let bad = DirectorConfig {
            min_hold_s: f64::NAN,
            ..DirectorConfig::default()
        };
        assert!(matches!(bad.validate(), Err(DirectorError::MinHold { .. })));

        let mut bad = DirectorConfig::default();
        bad.rules[1].when = Condition::Not(Box::new(Condition::CoursewareActive { within_s: 0.0 }));
        assert!(
            matches!(bad.validate(), Err(DirectorError::Window { rule, .. }) if rule == "courseware")
        );
        let mut bad = DirectorConfig::default();
        bad.rules[0].when = Condition::Loud {
            mic: Mic::Pupils,
            above_dbfs: f32::NAN,
        };
        assert!(matches!(
            bad.validate(),
            Err(DirectorError::Threshold { .. })
        ));
        let mut bad = DirectorConfig::default();
        bad.rules[2].name = "courseware".into();
        assert!(matches!(
            bad.validate(),
            Err(DirectorError::RuleName { index: 2, .. })
        ));
        assert!(matches!(
            DirectorConfig::from_toml("min_hold_s = 0\nstatic_first_s = -5"),
            Err(DirectorError::MinHold { .. })
        ));
    }
}
