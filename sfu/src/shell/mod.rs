//! The webrtc-rs I/O shell around the forwarding core.
//!
//! - [`media`]: codecs, header extensions, interceptors, the media port allocator.
//! - [`room`]: a live room: the core behind one lock, the class state (participants, hands,
//!   spotlight, link quality), publishers' remote tracks and subscribers' send queues.
//!
//! The shell reads the clock and passes `Instant`s into the core; it owns every task it spawns
//! (track readers, feedback readers, subscriber writers, the room ticker) and ends them when the
//! track, subscription or room goes away.

pub mod media;
pub mod room;
