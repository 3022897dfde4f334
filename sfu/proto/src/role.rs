//! Roles in a live class, the media sources a participant can publish, and grants.
//!
//! A role bounds what any token may grant: even a correctly signed token cannot let a
//! receiving classroom (接收课堂) publish a screen share or a recorder publish anything.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Who a participant is in a live class.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// The lead classroom (主讲课堂) and its lead teacher (主讲教师).
    Lead,
    /// A receiving classroom (接收课堂) run by an assistant teacher (辅导教师).
    Receiving,
    /// A reviewer or principal who watches and listens without publishing.
    Observer,
    /// Duet's own recorder: hidden from the others and receive-only.
    Recorder,
}

impl Role {
    /// Stable lower-case token used in logs, metrics and the wire format.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Lead => "lead",
            Role::Receiving => "receiving",
            Role::Observer => "observer",
            Role::Recorder => "recorder",
        }
    }

    /// The sources this role may ever publish, whatever a token says.
    pub fn publishable_sources(self) -> &'static [Source] {
        match self {
            Role::Lead => &[Source::Camera, Source::Microphone, Source::Screen],
            Role::Receiving => &[Source::Camera, Source::Microphone],
            Role::Observer | Role::Recorder => &[],
        }
    }

    /// Whether other participants are told this participant exists.
    pub fn is_hidden(self) -> bool {
        matches!(self, Role::Recorder)
    }

    /// The grants this role gets by default: every source it may publish, and subscribe.
    pub fn default_grants(self) -> Grants {
        Grants {
            publish: !self.publishable_sources().is_empty(),
            subscribe: true,
            sources: self.publishable_sources().to_vec(),
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a published track carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// A classroom or teacher camera.
    Camera,
    /// A classroom or teacher microphone.
    Microphone,
    /// The lead teacher's shared screen: courseware (课件).
    Screen,
}

impl Source {
    /// Stable lower-case token used in logs, metrics and the wire format.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Camera => "camera",
            Source::Microphone => "microphone",
            Source::Screen => "screen",
        }
    }

    /// Whether this source carries audio (otherwise video).
    pub fn is_audio(self) -> bool {
        matches!(self, Source::Microphone)
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a token allows, always further bounded by the [`Role`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grants {
    /// May publish at all.
    pub publish: bool,
    /// May receive other participants' media.
    pub subscribe: bool,
    /// Which sources may be published.
    pub sources: Vec<Source>,
}

impl Grants {
    /// Whether a participant with these grants and `role` may publish `source`.
    pub fn allows_publish(&self, role: Role, source: Source) -> bool {
        self.publish
            && self.sources.contains(&source)
            && role.publishable_sources().contains(&source)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_bounds_grants_even_when_a_token_over_grants() {
        let everything = Grants {
            publish: true,
            subscribe: true,
            sources: vec![Source::Camera, Source::Microphone, Source::Screen],
        };
        assert!(everything.allows_publish(Role::Lead, Source::Screen));
        assert!(!everything.allows_publish(Role::Receiving, Source::Screen));
        assert!(everything.allows_publish(Role::Receiving, Source::Camera));
        assert!(!everything.allows_publish(Role::Observer, Source::Microphone));
        assert!(!everything.allows_publish(Role::Recorder, Source::Camera));
    }

    #[test]
    fn default_grants_follow_the_role() {
        assert!(!Role::Observer.default_grants().publish);
        assert!(
            Role::Receiving
                .default_grants()
                .allows_publish(Role::Receiving, Source::Camera)
        );
        assert!(
            !Role::Receiving
                .default_grants()
                .allows_publish(Role::Receiving, Source::Screen)
        );
        assert!(Role::Recorder.is_hidden() && !Role::Lead.is_hidden());
    }
}
