//! Signed media URLs and the file serving behind them (`GET /media/{lesson_id}/{*path}`).
//!
//! A player (a `<video>` element, an HLS player) cannot send the session's CSRF header or a
//! bearer token with each range request, so the API hands out short-lived signed URLs instead:
//! `/media/{lesson_id}/{path}?exp=<unix seconds>&sig=<hex>`, where `sig` is HMAC-SHA256 over
//! `lesson_id \n path \n exp` with a [`MediaSigner`] key derived from the gateway's token key
//! under its own label (so a media signature is never a join-token signature, nor the reverse).
//! Rendered clips use the same scheme with the namespace `clips` in place of the lesson id.
//!
//! Invariants: signatures are compared in constant time; a URL is refused after `exp`; only a
//! lesson's registered files, and files under a directory (`hls/`, `thumbs/`) holding a
//! registered file, are ever served, from inside the lesson's `file://` archive directory (a
//! path with `..` is refused before anything is looked up, and a symbolic link leading out of
//! the directory is refused after resolving it). Files are streamed, never read whole, except
//! HLS playlists (small, capped), whose relative URIs are rewritten into signed URLs so the
//! player's segment requests carry a signature too.
//!
//! Pure helpers ([`parse_range`], [`content_type`], [`check_path`], [`servable`],
//! [`sign_playlist`]) are unit-tested here; the handler is tested through the router.

use duet_sfu_proto::{JoinClaims, ParticipantId, Role, RoomId, TokenKey};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// The domain-separation label of the media-URL key.
const KEY_LABEL: &str = "duet-media-url-v1";
/// The namespace that stands for the lesson id in a rendered clip's URL.
pub const CLIP_NAMESPACE: &str = "clips";
/// Largest HLS playlist rewritten (bigger ones are refused).
pub const MAX_PLAYLIST_BYTES: u64 = 1024 * 1024;

/// Why a signed URL is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MediaUrlError {
    /// No signature, a malformed one, or one that does not match.
    #[error("the media link's signature is invalid")]
    BadSignature,
    /// Signed correctly, but past `exp`.
    #[error("the media link expired")]
    Expired,
}

/// Signs and checks media URLs with a key of its own.
#[derive(Clone)]
pub struct MediaSigner {
    key: [u8; 32],
}

impl std::fmt::Debug for MediaSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MediaSigner(..)")
    }
}

impl MediaSigner {
    /// Derives the media key from the gateway's token key. [`TokenKey`] does not expose its
    /// bytes, but its signature over a fixed claim set is HMAC-SHA256(token key, fixed text): a
    /// pseudo-random value only the key's holder can compute. The claims name the label as
    /// their room and expired at the epoch, so they admit to nothing; the media key is SHA-256
    /// of the label and that signature, and never leaves the process.
    pub fn derive(token_key: &TokenKey) -> Self {
        let claims = JoinClaims {
            room: RoomId(KEY_LABEL.into()),
            sub: ParticipantId(KEY_LABEL.into()),
            name: String::new(),
            role: Role::Recorder,
            grants: Role::Recorder.default_grants(),
            iat: 0,
            exp: 0,
        };
        let material = token_key.sign(&claims);
        let mut h = Sha256::new();
        h.update(KEY_LABEL.as_bytes());
        h.update(b"\n");
        h.update(material.as_bytes());
        Self {
            key: h.finalize().into(),
        }
    }

    fn mac(&self, namespace: &str, path: &str, exp: u64) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC accepts 32-byte keys");
        mac.update(namespace.as_bytes());
        mac.update(b"\n");
        mac.update(path.as_bytes());
        mac.update(b"\n");
        mac.update(exp.to_string().as_bytes());
        mac
    }

    /// The lower-case hex signature of `path` of `namespace` (a lesson id, or
    /// [`CLIP_NAMESPACE`]) until `exp`.
    pub fn sign(&self, namespace: &str, path: &str, exp: u64) -> String {
        hex::encode(self.mac(namespace, path, exp).finalize().into_bytes())
    }

    /// The query string `exp=…&sig=…` for `path`.
    pub fn query(&self, namespace: &str, path: &str, exp: u64) -> String {
        format!("exp={exp}&sig={}", self.sign(namespace, path, exp))
    }

    /// Checks a signature (in constant time), then the expiry against `now` (unix seconds).
    pub fn verify(
        &self,
        namespace: &str,
        path: &str,
        exp: u64,
        sig: &str,
        now: u64,
    ) -> Result<(), MediaUrlError> {
        let bytes = hex::decode(sig).map_err(|_| MediaUrlError::BadSignature)?;
        self.mac(namespace, path, exp)
            .verify_slice(&bytes)
            .map_err(|_| MediaUrlError::BadSignature)?;
        if now >= exp {
            return Err(MediaUrlError::Expired);
        }
        Ok(())
    }
}

/// What to answer to a request's `Range` header for a file of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeAnswer {
    /// No usable range: the whole file, 200.
    Full,
    /// Bytes `start..=end`, 206.
    Partial {
        /// First byte.
        start: u64,
        /// Last byte (inclusive).
        end: u64,
    },
    /// A range that lies outside the file: 416.
    Unsatisfiable,
}

/// Parses a single byte range (`bytes=a-b`, `bytes=a-`, `bytes=-n`). A header that is not a
/// single byte range is ignored (the whole file), as HTTP allows.
pub fn parse_range(header: Option<&str>, len: u64) -> RangeAnswer {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeAnswer::Full;
    };
    if spec.contains(',') {
        return RangeAnswer::Full;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return RangeAnswer::Full;
    };
    let num = |s: &str| -> Option<u64> {
        let s = s.trim();
        if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    };
    match (a.trim().is_empty(), b.trim().is_empty()) {
        // bytes=-n: the last n bytes.
        (true, false) => match num(b) {
            Some(0) => RangeAnswer::Unsatisfiable,
            Some(_) if len == 0 => RangeAnswer::Unsatisfiable,
            Some(n) => RangeAnswer::Partial {
                start: len.saturating_sub(n),
                end: len - 1,
            },
            None => RangeAnswer::Full,
        },
        // bytes=a-: from a to the end.
        (false, true) => match num(a) {
            Some(start) if start >= len => RangeAnswer::Unsatisfiable,
            Some(start) => RangeAnswer::Partial {
                start,
                end: len - 1,
            },
            None => RangeAnswer::Full,
        },
        (false, false) => match (num(a), num(b)) {
            (Some(start), Some(end)) if start <= end => {
                if start >= len {
                    RangeAnswer::Unsatisfiable
                } else {
                    RangeAnswer::Partial {
                        start,
                        end: end.min(len - 1),
                    }
                }
            }
            _ => RangeAnswer::Full,
        },
        (true, true) => RangeAnswer::Full,
    }
}

/// The content type of a served file, by its extension.
pub fn content_type(path: &str) -> &'static str {
    let ext = path
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    match ext.as_str() {
        "mp4" => "video/mp4",
        "m4a" => "audio/mp4",
        "webm" => "video/webm",
        "m3u8" => "application/vnd.apple.mpegurl",
        "m4s" => "video/iso.segment",
        "ts" => "video/mp2t",
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "webp" => "image/webp",
        "json" => "application/json",
        "vtt" => "text/vtt; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// Why a requested path is refused before any lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// It climbs (`..`) or is absolute: 400.
    Traversal,
    /// Empty segments, `.`, backslashes, control characters, too long: 400.
    Malformed,
}

/// Checks a requested path relative to the archive.
pub fn check_path(path: &str) -> Result<(), PathError> {
    if path.starts_with('/') || path.split('/').any(|s| s == "..") {
        return Err(PathError::Traversal);
    }
    let ok = !path.is_empty()
        && path.len() <= 1024
        && !path.contains('\\')
        && !path.chars().any(char::is_control)
        && path.split('/').all(|s| !s.is_empty() && s != ".");
    if ok {
        Ok(())
    } else {
        Err(PathError::Malformed)
    }
}

/// The directories whose whole content is servable once they hold a registered file.
pub const SERVABLE_DIRS: [&str; 2] = ["hls", "thumbs"];

/// Whether `path` may be served for a lesson whose registered files are `files`: one of them,
/// or anything under `hls/` or `thumbs/` when a registered file lies there.
pub fn servable<'a>(path: &str, files: impl IntoIterator<Item = &'a str> + Clone) -> bool {
    if files.clone().into_iter().any(|f| f == path) {
        return true;
    }
    let Some((top, _)) = path.split_once('/') else {
        return false;
    };
    SERVABLE_DIRS.contains(&top)
        && files
            .into_iter()
            .any(|f| f.split_once('/').is_some_and(|(t, _)| t == top))
}

/// Rewrites the relative URIs of an HLS playlist at `playlist_path` (relative to the archive)
/// into signed ones, valid until `exp`: URI lines and `URI="…"` attributes. Absolute URIs,
/// URIs with a query and URIs that climb out are left alone (the latter are refused when asked).
pub fn sign_playlist(
    text: &str,
    playlist_path: &str,
    namespace: &str,
    signer: &MediaSigner,
    exp: u64,
) -> String {
    let dir = playlist_path
        .rsplit_once('/')
        .map(|(d, _)| format!("{d}/"))
        .unwrap_or_default();
    let sign_uri = |uri: &str| -> String {
        if uri.is_empty() || uri.contains("://") || uri.contains('?') || uri.starts_with('/') {
            return uri.to_owned();
        }
        let full = format!("{dir}{uri}");
        if check_path(&full).is_err() {
            return uri.to_owned();
        }
        format!("{uri}?{}", signer.query(namespace, &full, exp))
    };
    let mut out = String::with_capacity(text.len() * 2);
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            out.push_str(line);
        } else if trimmed.starts_with('#') {
            out.push_str(&rewrite_uri_attribute(line, &sign_uri));
        } else {
            out.push_str(&sign_uri(trimmed));
        }
        out.push('\n');
    }
    out
}

/// Rewrites every `URI="…"` attribute of a tag line.
fn rewrite_uri_attribute(line: &str, sign_uri: &dyn Fn(&str) -> String) -> String {
    const KEY: &str = "URI=\"";
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(i) = rest.find(KEY) {
        let (head, tail) = rest.split_at(i + KEY.len());
        out.push_str(head);
        match tail.find('"') {
            Some(j) => {
                out.push_str(&sign_uri(&tail[..j]));
                rest = &tail[j..];
            }
            None => {
                rest = tail;
                break;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> MediaSigner {
        MediaSigner::derive(&TokenKey::new(*b"media test key, 16+ bytes").expect("long enough"))
    }

    #[test]
    fn signatures_bind_lesson_path_and_expiry() {
        let s = signer();
        let sig = s.sign("les_1", "review.mp4", 1000);
        assert_eq!(s.verify("les_1", "review.mp4", 1000, &sig, 999), Ok(()));
        assert_eq!(
            s.verify("les_1", "review.mp4", 1000, &sig, 1000),
            Err(MediaUrlError::Expired)
        );
        for (lesson, path, exp) in [
            ("les_2", "review.mp4", 1000),
            ("les_1", "tracks/a.webm", 1000),
            ("les_1", "review.mp4", 1001),
        ] {
            assert_eq!(
                s.verify(lesson, path, exp, &sig, 0),
                Err(MediaUrlError::BadSignature),
                "{lesson} {path} {exp}"
            );
        }
        assert_eq!(
            s.verify("les_1", "review.mp4", 1000, "zz", 0),
            Err(MediaUrlError::BadSignature)
        );
        let other = MediaSigner::derive(&TokenKey::new(*b"another key, 16+ bytes").unwrap());
        assert_ne!(other.sign("les_1", "review.mp4", 1000), sig);
    }

    #[test]
    fn ranges_follow_http() {
        use RangeAnswer::*;
        let p = |h: &str, len| parse_range(Some(h), len);
        assert_eq!(parse_range(None, 10), Full);
        assert_eq!(p("bytes=2-5", 10), Partial { start: 2, end: 5 });
        assert_eq!(p("bytes=2-50", 10), Partial { start: 2, end: 9 });
        assert_eq!(p("bytes=7-", 10), Partial { start: 7, end: 9 });
        assert_eq!(p("bytes=-3", 10), Partial { start: 7, end: 9 });
        assert_eq!(p("bytes=-30", 10), Partial { start: 0, end: 9 });
        assert_eq!(p("bytes=10-", 10), Unsatisfiable);
        assert_eq!(p("bytes=10-20", 10), Unsatisfiable);
        assert_eq!(p("bytes=-0", 10), Unsatisfiable);
        assert_eq!(p("bytes=0-", 0), Unsatisfiable);
        assert_eq!(p("bytes=5-2", 10), Full, "an invalid range is ignored");
        assert_eq!(
            p("bytes=0-1,4-5", 10),
            Full,
            "several ranges: the whole file"
        );
        assert_eq!(p("items=0-1", 10), Full);
        assert_eq!(p("bytes=a-b", 10), Full);
    }

    #[test]
    fn paths_and_what_is_servable() {
        assert_eq!(check_path("../x"), Err(PathError::Traversal));
        assert_eq!(
            check_path("hls/../../etc/passwd"),
            Err(PathError::Traversal)
        );
        assert_eq!(check_path("/etc/passwd"), Err(PathError::Traversal));
        assert_eq!(check_path("a//b"), Err(PathError::Malformed));
        assert_eq!(check_path("./a"), Err(PathError::Malformed));
        assert_eq!(check_path("a\\b"), Err(PathError::Malformed));
        assert_eq!(check_path("hls/seg-1.m4s"), Ok(()));
        let files = ["review.mp4", "hls/index.m3u8", "tracks/a.webm"];
        let f = || files.iter().copied();
        assert!(servable("review.mp4", f()));
        assert!(servable("hls/seg-7.m4s", f()), "under a registered hls/");
        assert!(
            !servable("thumbs/poster.jpg", f()),
            "no registered file in thumbs/"
        );
        assert!(
            !servable("tracks/b.webm", f()),
            "tracks/ is not a servable directory"
        );
        assert!(!servable("metadata.json", f()));
    }

    #[test]
    fn playlists_get_signed_relative_uris() {
        let s = signer();
        let text = "#EXTM3U\n#EXT-X-MAP:URI=\"init.mp4\"\n#EXTINF:6.0,\nseg-1.m4s\n\
                    https://cdn/x.m4s\n../escape.m4s\n";
        let out = sign_playlist(text, "hls/index.m3u8", "les_1", &s, 500);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[1],
            format!(
                "#EXT-X-MAP:URI=\"init.mp4?{}\"",
                s.query("les_1", "hls/init.mp4", 500)
            )
        );
        assert_eq!(
            lines[3],
            format!("seg-1.m4s?{}", s.query("les_1", "hls/seg-1.m4s", 500))
        );
        assert_eq!(lines[4], "https://cdn/x.m4s");
        assert_eq!(lines[5], "../escape.m4s");
    }

    #[test]
    fn content_types_by_extension() {
        assert_eq!(content_type("review.mp4"), "video/mp4");
        assert_eq!(content_type("tracks/a.WEBM"), "video/webm");
        assert_eq!(
            content_type("hls/index.m3u8"),
            "application/vnd.apple.mpegurl"
        );
        assert_eq!(content_type("hls/s.m4s"), "video/iso.segment");
        assert_eq!(content_type("thumbs/p.jpg"), "image/jpeg");
        assert_eq!(content_type("st.json"), "application/json");
        assert_eq!(content_type("noext"), "application/octet-stream");
    }
}
