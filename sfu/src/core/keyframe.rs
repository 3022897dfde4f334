//! Keyframe detection from RTP payloads, per codec, without decoding.
//!
//! Forwarding starts (and a subscription switches source) only at a keyframe, so a receiver
//! never gets a delta frame it cannot decode. Untrusted payloads: every index is checked; a
//! payload too short to tell is "not a keyframe".

/// The codecs the SFU forwards (no transcoding).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Codec {
    /// VP8 (RFC 7741).
    Vp8,
    /// H.264, packetization-mode 1 (RFC 6184).
    H264,
    /// Opus (RFC 7587).
    Opus,
    /// Opus inside RFC 2198 redundancy (RED): forwarded as is, decoded by the subscriber.
    Red,
}

impl Codec {
    /// From an SDP mime type such as `video/VP8`, case-insensitively.
    pub fn from_mime(mime: &str) -> Option<Codec> {
        let sub = mime.rsplit('/').next()?;
        if sub.eq_ignore_ascii_case("vp8") {
            Some(Codec::Vp8)
        } else if sub.eq_ignore_ascii_case("h264") {
            Some(Codec::H264)
        } else if sub.eq_ignore_ascii_case("opus") {
            Some(Codec::Opus)
        } else if sub.eq_ignore_ascii_case("red") {
            Some(Codec::Red)
        } else {
            None
        }
    }

    /// RTP clock rate.
    pub fn clock_rate(self) -> u32 {
        match self {
            Codec::Vp8 | Codec::H264 => 90_000,
            Codec::Opus | Codec::Red => 48_000,
        }
    }

    /// Whether this is an audio codec.
    pub fn is_audio(self) -> bool {
        matches!(self, Codec::Opus | Codec::Red)
    }

    /// Whether `payload` is the first packet of a keyframe (audio: every packet is a "keyframe").
    pub fn is_keyframe_start(self, payload: &[u8]) -> bool {
        match self {
            Codec::Opus | Codec::Red => true,
            Codec::Vp8 => vp8_keyframe_start(payload),
            Codec::H264 => h264_keyframe(payload),
        }
    }
}

/// VP8 payload descriptor (RFC 7741 §4.2) then the VP8 frame header's P bit (0 = keyframe).
fn vp8_keyframe_start(p: &[u8]) -> bool {
    let Some(&b0) = p.first() else { return false };
    let x = b0 & 0x80 != 0;
    let s = b0 & 0x10 != 0;
    let pid = b0 & 0x07;
    if !s || pid != 0 {
        return false;
    }
    let mut i = 1;
    if x {
        let Some(&ext) = p.get(i) else { return false };
        i += 1;
        if ext & 0x80 != 0 {
            // I: PictureID, 7 or 15 bits.
            let Some(&pic) = p.get(i) else { return false };
            i += if pic & 0x80 != 0 { 2 } else { 1 };
        }
        if ext & 0x40 != 0 {
            i += 1; // L: TL0PICIDX
        }
        if ext & 0x30 != 0 {
            i += 1; // T or K: TID/Y/KEYIDX
        }
    }
    p.get(i).is_some_and(|h| h & 0x01 == 0)
}

/// An IDR slice or SPS in a single NAL unit, a STAP-A aggregate, or the start of a FU-A.
fn h264_keyframe(p: &[u8]) -> bool {
    let Some(&b0) = p.first() else { return false };
    match b0 & 0x1f {
        5 | 7 => true,
        24 => {
            // STAP-A: [hdr][size16][nal]...
            let mut i = 1;
            while i + 2 < p.len() {
                let size = usize::from(u16::from_be_bytes([p[i], p[i + 1]]));
                let Some(&nal) = p.get(i + 2) else {
                    return false;
                };
                if matches!(nal & 0x1f, 5 | 7) {
                    return true;
                }
                i += 2 + size;
            }
            false
        }
        28 => p.get(1).is_some_and(|fu| fu & 0x80 != 0 && fu & 0x1f == 5),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vp8() {
        // S=1, PID=0, no extension, then a frame header with P=0 (keyframe).
        assert!(Codec::Vp8.is_keyframe_start(&[0x10, 0x50, 0x2a]));
        assert!(!Codec::Vp8.is_keyframe_start(&[0x10, 0x51, 0x2a]));
        // Not the start of a partition.
        assert!(!Codec::Vp8.is_keyframe_start(&[0x00, 0x50]));
        // Extended with a 15-bit picture id, then keyframe header.
        assert!(Codec::Vp8.is_keyframe_start(&[0x90, 0x80, 0x81, 0x02, 0x00]));
        // Truncated: not a keyframe, no panic.
        assert!(!Codec::Vp8.is_keyframe_start(&[0x90, 0x80, 0x81]));
        assert!(!Codec::Vp8.is_keyframe_start(&[]));
    }

    #[test]
    fn h264() {
        assert!(Codec::H264.is_keyframe_start(&[0x65, 0x88]));
        assert!(Codec::H264.is_keyframe_start(&[0x67, 0x42]));
        assert!(!Codec::H264.is_keyframe_start(&[0x41, 0x9a]));
        // STAP-A with SPS inside.
        assert!(Codec::H264.is_keyframe_start(&[0x78, 0x00, 0x02, 0x67, 0x42]));
        // STAP-A with a bogus size: no panic.
        assert!(!Codec::H264.is_keyframe_start(&[0x78, 0xff, 0xff, 0x41]));
        // FU-A start of IDR, and a continuation.
        assert!(Codec::H264.is_keyframe_start(&[0x7c, 0x85, 0x00]));
        assert!(!Codec::H264.is_keyframe_start(&[0x7c, 0x05, 0x00]));
    }

    #[test]
    fn mime() {
        assert_eq!(Codec::from_mime("video/VP8"), Some(Codec::Vp8));
        assert_eq!(Codec::from_mime("video/h264"), Some(Codec::H264));
        assert_eq!(Codec::from_mime("audio/opus"), Some(Codec::Opus));
        assert_eq!(Codec::from_mime("audio/red"), Some(Codec::Red));
        assert!(Codec::Red.is_audio() && Codec::Red.is_keyframe_start(&[]));
        assert_eq!(Codec::from_mime("video/AV1"), None);
    }
}
