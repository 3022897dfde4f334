//! What the programme shows: a [`Shot`], generic over what names its sources. The config writes
//! shots by [`Role`] ([`ShotTemplate`]); the director resolves them once, through the room's
//! [`SourceMap`](super::SourceMap), into shots of [`SourceId`]s, which is what the mixer gets.
//!
//! Invariant: a shot names one or two sources, never none; [`Shot::without`] returns `None` rather
//! than an empty shot.

use super::sources::{Role, SourceId};
use serde::{Deserialize, Serialize};
use std::fmt;

/// One programme layout of movie mode (电影模式).
///
/// In TOML: `{ single = "pupils_wide" }`,
/// `{ picture_in_picture = { main = "courseware", inset = "teacher_close_up" } }`,
/// `{ side_by_side = ["blackboard", "teacher_close_up"] }`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Shot<S = SourceId> {
    /// One source, full frame.
    Single(S),
    /// `main` full frame with `inset` in a small window (画中画).
    PictureInPicture {
        /// The full-frame source.
        main: S,
        /// The small window.
        inset: S,
    },
    /// Two sources side by side (二分屏), `.0` on the left.
    SideBySide(S, S),
}

/// A shot written by role, as rules and the config name it.
pub type ShotTemplate = Shot<Role>;

impl<S: Copy + PartialEq> Shot<S> {
    /// The sources the shot shows: the main (or left) one first.
    pub fn sources(&self) -> impl Iterator<Item = S> + use<S> {
        let (first, second) = match *self {
            Shot::Single(a) => (a, None),
            Shot::PictureInPicture { main, inset } => (main, Some(inset)),
            Shot::SideBySide(a, b) => (a, Some(b)),
        };
        std::iter::once(first).chain(second)
    }

    /// Whether the shot shows `source`.
    pub fn uses(&self, source: S) -> bool {
        self.sources().any(|s| s == source)
    }

    /// The same layout with every source mapped by `f`; `None` if `f` has no answer for one.
    pub fn try_map<T>(self, mut f: impl FnMut(S) -> Option<T>) -> Option<Shot<T>> {
        Some(match self {
            Shot::Single(a) => Shot::Single(f(a)?),
            Shot::PictureInPicture { main, inset } => Shot::PictureInPicture {
                main: f(main)?,
                inset: f(inset)?,
            },
            Shot::SideBySide(a, b) => Shot::SideBySide(f(a)?, f(b)?),
        })
    }

    /// What is left of the shot once the sources `gone` says are missing are taken out: a
    /// picture-in-picture without its inset is its main source alone, a split without one half is
    /// the other half; `None` when the main source (or both halves) is gone.
    pub fn without(self, gone: impl Fn(S) -> bool) -> Option<Shot<S>> {
        match self {
            Shot::Single(a) => (!gone(a)).then_some(self),
            Shot::PictureInPicture { main, inset } => match (gone(main), gone(inset)) {
                (true, _) => None,
                (false, true) => Some(Shot::Single(main)),
                (false, false) => Some(self),
            },
            Shot::SideBySide(a, b) => match (gone(a), gone(b)) {
                (true, true) => None,
                (true, false) => Some(Shot::Single(b)),
                (false, true) => Some(Shot::Single(a)),
                (false, false) => Some(self),
            },
        }
    }
}

impl<S: fmt::Display> fmt::Display for Shot<S> {
    /// Stable tokens for logs: `SINGLE(#3)`, `PIP(#6+#1)`, `SPLIT(#5|#1)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Shot::Single(a) => write!(f, "SINGLE({a})"),
            Shot::PictureInPicture { main, inset } => write!(f, "PIP({main}+{inset})"),
            Shot::SideBySide(a, b) => write!(f, "SPLIT({a}|{b})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shot_loses_its_gone_sources_but_never_becomes_empty() {
        let pip = Shot::PictureInPicture { main: 6, inset: 1 };
        assert_eq!(pip.without(|s| s == 1), Some(Shot::Single(6)));
        assert_eq!(pip.without(|s| s == 6), None);
        assert_eq!(pip.without(|_| false), Some(pip));
        let split = Shot::SideBySide(5, 1);
        assert_eq!(split.without(|s| s == 5), Some(Shot::Single(1)));
        assert_eq!(split.without(|s| s == 1), Some(Shot::Single(5)));
        assert_eq!(split.without(|_| true), None);
        assert_eq!(Shot::Single(3).without(|s| s == 3), None);
        assert!(split.uses(1) && !split.uses(6));
    }
}
