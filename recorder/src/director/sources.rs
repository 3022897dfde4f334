//! Who is who in a recording classroom: the camera [`Role`]s the rules speak of, the [`SourceId`]s the
//! mixer knows, the [`SourceMap`] from one to the other (from the room config), and the [`Mic`]s whose
//! levels the rules may watch.
//!
//! Invariant: rules never name a [`SourceId`]; they name roles, and the room's [`SourceMap`] says which
//! input plays each role, so one rule set serves every room.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// A video input of the programme mixer, numbered by the room config (the capture input index).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SourceId(pub u32);

impl fmt::Display for SourceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// What a video source shows, as the directing rules name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Teacher close-up (教师特写).
    TeacherCloseUp,
    /// Teacher panorama (教师全景).
    TeacherWide,
    /// Pupils' front panorama (学生全景).
    PupilsWide,
    /// Close-up of the pupil who stands, from the tracking camera (学生特写).
    PupilCloseUp,
    /// The blackboard (板书).
    Blackboard,
    /// The teacher's PC: courseware through VGA/HDMI capture (课件).
    Courseware,
}

impl Role {
    /// Every role, widest first: the order in which the director falls back to a bare source when
    /// neither a rule nor the idle shot can be shown.
    pub const WIDEST_FIRST: [Role; 6] = [
        Role::PupilsWide,
        Role::TeacherWide,
        Role::TeacherCloseUp,
        Role::Blackboard,
        Role::Courseware,
        Role::PupilCloseUp,
    ];

    /// The config and log name, as in TOML (`teacher_close_up`).
    pub fn name(self) -> &'static str {
        match self {
            Role::TeacherCloseUp => "teacher_close_up",
            Role::TeacherWide => "teacher_wide",
            Role::PupilsWide => "pupils_wide",
            Role::PupilCloseUp => "pupil_close_up",
            Role::Blackboard => "blackboard",
            Role::Courseware => "courseware",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A microphone whose level (`Event::AudioLevel`) rules may watch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mic {
    /// The teacher's (wireless or podium) microphone.
    Teacher,
    /// The ceiling or array microphones over the pupils (拾音).
    Pupils,
}

impl Mic {
    /// Number of microphones; [`Mic::index`] is below it.
    pub(crate) const COUNT: usize = 2;

    /// Dense index for per-microphone arrays.
    pub(crate) fn index(self) -> usize {
        match self {
            Mic::Teacher => 0,
            Mic::Pupils => 1,
        }
    }
}

/// Which source plays each role in one room. Several roles may share a source (a small room whose
/// one wide camera shows both teacher and pupils); a role may have none (no blackboard camera).
///
/// In TOML: a table `teacher_close_up = 1`, `pupils_wide = 3`, ...
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SourceMap(BTreeMap<Role, SourceId>);

impl SourceMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// This map with `role` played by `source`.
    pub fn with(mut self, role: Role, source: SourceId) -> Self {
        self.insert(role, source);
        self
    }

    /// Sets the source of `role`, returning the one it replaces.
    pub fn insert(&mut self, role: Role, source: SourceId) -> Option<SourceId> {
        self.0.insert(role, source)
    }

    /// The source playing `role`, if the room has one.
    pub fn get(&self, role: Role) -> Option<SourceId> {
        self.0.get(&role).copied()
    }

    /// Every role the room has, with its source, in role order.
    pub fn iter(&self) -> impl Iterator<Item = (Role, SourceId)> + '_ {
        self.0.iter().map(|(r, s)| (*r, *s))
    }
}
