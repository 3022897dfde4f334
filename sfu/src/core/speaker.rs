//! Active-speaker detection from RFC 6464 audio levels (0 = loudest, 127 = silence, in −dBov).
//!
//! Each audio packet's level updates a per-participant activity score (an exponential moving
//! average of "this packet carried voice"). On each tick the loudest participant above a threshold
//! becomes the active speaker, but only after it has led for a hold time, so brief noises do not
//! make the highlight flicker between classrooms.

use duet_sfu_proto::ParticipantId;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Audio level (−dBov) at or below which a packet counts as voice.
const VOICE_LEVEL: u8 = 50;
/// Weight of the newest packet in the moving average.
const ALPHA: f32 = 0.05;
/// Score above which a participant counts as speaking.
const SPEAKING_SCORE: f32 = 0.3;
/// How long a new leader must lead before it is announced.
const HOLD: Duration = Duration::from_millis(600);

/// The detector of one room.
#[derive(Debug, Default)]
pub struct SpeakerDetector {
    scores: HashMap<ParticipantId, f32>,
    current: Option<ParticipantId>,
    candidate: Option<(Option<ParticipantId>, Instant)>,
}

impl SpeakerDetector {
    /// Feeds one audio packet's level.
    pub fn on_level(&mut self, participant: &ParticipantId, level: u8) {
        let voice = if level <= VOICE_LEVEL { 1.0 } else { 0.0 };
        match self.scores.get_mut(participant) {
            Some(s) => *s += ALPHA * (voice - *s),
            None => {
                self.scores.insert(participant.clone(), ALPHA * voice);
            }
        }
    }

    /// Forgets a participant that left.
    pub fn remove(&mut self, participant: &ParticipantId) {
        self.scores.remove(participant);
        if self.current.as_ref() == Some(participant) {
            self.current = None;
        }
    }

    /// Re-evaluates at `now`; returns the new active speaker when it changed. Allocates only
    /// when the leader changes (this runs on every tick of every room).
    pub fn tick(&mut self, now: Instant) -> Option<Option<ParticipantId>> {
        let leader = self
            .scores
            .iter()
            .filter(|(_, s)| **s >= SPEAKING_SCORE)
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(p, _)| p);
        if leader == self.current.as_ref() {
            self.candidate = None;
            return None;
        }
        match &self.candidate {
            Some((c, since)) if c.as_ref() == leader => {
                if now.duration_since(*since) >= HOLD {
                    let leader = leader.cloned();
                    self.current = leader.clone();
                    self.candidate = None;
                    return Some(leader);
                }
            }
            _ => self.candidate = Some((leader.cloned(), now)),
        }
        None
    }

    /// The current active speaker.
    pub fn current(&self) -> Option<&ParticipantId> {
        self.current.as_ref()
    }
}
