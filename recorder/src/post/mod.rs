//! Post-processing of a live class once it has ended: the RTP dumps of each track turned into
//! playable files, the composed review video, what the review page plays and shows, and clips.
//!
//! # Layout
//! - [`remux`]: one track's dump parts → one WebM file (VP8 / Opus), without transcoding, with
//!   its place on the lesson timeline and its gaps.
//! - [`compose`]: the remuxed tracks → the 1280×720 H.264 + AAC review video (`review.mp4`).
//! - [`thumbs`]: the poster and the storyboard sprite of the review video.
//! - [`hls`]: the review video as fMP4 HLS (stream copy, no re-encode).
//! - [`clip`]: a 晒课 clip: a title card and a cut of the review video, H.264 + AAC at the
//!   national platform's size and bitrate.

pub mod clip;
pub mod compose;
pub mod hls;
pub mod remux;
pub mod thumbs;
