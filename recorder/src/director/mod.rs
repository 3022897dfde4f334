//! The auto-director (导播) of movie mode (电影模式): a sans-IO rule engine that decides which shot
//! the programme shows.
//!
//! # What it owns
//! The choice of shot, nothing else: no clock, no I/O, no threads, no mixer. Events from devices
//! or the API come in ([`Event`]), time comes in as an `Instant` argument, and [`Cut`]s come out;
//! the capture shell applies them to the compositor and logs them.
//!
//! # Rules are data
//! A [`DirectorConfig`] (TOML, see [`DEFAULT_CONFIG_TOML`]) holds an ordered list of [`Rule`]s
//! `{ name, when: Condition, show: Shot by role, priority }`, the hold, the static first minute, the
//! opening and the idle shot. Shots name [`Role`]s (teacher close-up, pupils' panorama, ...); the
//! room's [`SourceMap`] maps each role to a [`SourceId`] once, when the [`Director`] is built. The
//! default config follows the schools' rules: a pupil stands → pupil close-up; courseware touched
//! in the last 10 s → courseware with the teacher's close-up inset; the teacher speaks at the podium
//! → teacher close-up; the teacher leaves the podium → teacher panorama; otherwise the pupils'
//! panorama.
//!
//! # Behaviour
//! - The first `static_first` (60 s) the programme stays on the opening shot; events are recorded
//!   but cut nothing.
//! - The rules want one shot at any time: the highest-priority matching rule whose shot can be
//!   shown (a picture-in-picture whose inset is lost shows its main source alone), else the idle
//!   shot, else the widest working source.
//! - Hysteresis: the programme cuts to a wanted shot only once the rules have wanted it without a
//!   break for `min_hold` (4 s) *and* the shot on air has been on for `min_hold`, so at most one
//!   cut per hold and a flicker shorter than the hold never cuts. When a hold ends, the wanted shot
//!   is cut to if it differs.
//! - A lost source is never cut to; a shot on air that loses a source is cut away from at once,
//!   hold and static minute notwithstanding ([`Cut::forced_by`]). A source back is eligible again
//!   (after the usual hold).
//!
//! # How to drive it
//! ```
//! # use std::time::{Duration, Instant};
//! use duet_recorder::director::{Director, DirectorConfig, Event, Role, SourceId, SourceMap};
//! let sources = SourceMap::new()
//!     .with(Role::TeacherCloseUp, SourceId(1))
//!     .with(Role::TeacherWide, SourceId(2))
//!     .with(Role::PupilsWide, SourceId(3))
//!     .with(Role::PupilCloseUp, SourceId(4))
//!     .with(Role::Courseware, SourceId(6));
//! let start = Instant::now(); // the shell's clock; the director never reads one
//! let mut director = Director::new(DirectorConfig::default(), sources, start)?;
//! director.handle_event(start + Duration::from_secs(61), Event::PupilStood);
//! // The shell sleeps until `poll_timeout`, or the next event, whichever comes first.
//! let wake = director.poll_timeout().expect("a pupil close-up is wanted");
//! director.handle_timeout(wake);
//! while let Some(cut) = director.poll_output() {
//!     println!("{} cut to {} ({})", cut.at.duration_since(start).as_secs(), cut.shot, cut.reason);
//! }
//! # Ok::<(), duet_recorder::director::DirectorError>(())
//! ```
//!
//! # Layout
//! - `sources`: [`Role`], [`SourceId`], [`SourceMap`], [`Mic`].
//! - `shot`: [`Shot`], [`ShotTemplate`].
//! - `config`: [`DirectorConfig`], [`Rule`], [`Condition`], [`DirectorError`], the TOML sample.
//! - `engine`: [`Director`], [`Event`], [`Cut`], [`CutReason`].
//! - `tests`: scenarios in simulated time, and a seeded event storm checking the invariants.

mod config;
mod engine;
mod shot;
mod sources;
#[cfg(test)]
mod tests;

pub use config::{
    Condition, DEFAULT_CONFIG_TOML, DirectorConfig, DirectorError, MAX_SECONDS, Rule,
};
pub use engine::{Cut, CutReason, Director, Event};
pub use shot::{Shot, ShotTemplate};
pub use sources::{Mic, Role, SourceId, SourceMap};
