//! Join tokens: `v1.<claims>.<signature>`, both parts base64url without padding, the signature an
//! HMAC-SHA256 over `v1.<claims>` with a key the gateway and the SFU share.
//!
//! Verification takes the current time as an argument (this crate never reads the clock) and
//! returns a typed [`TokenError`] saying exactly why a token was refused, so the SFU can close
//! signalling with a precise code.

use crate::ids::{ParticipantId, RoomId, is_valid_id};
use crate::role::{Grants, Role};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const VERSION: &str = "v1";
/// Longest token accepted, in bytes; anything longer is refused before any decoding.
pub const MAX_TOKEN_LEN: usize = 4096;
/// Longest display name accepted, in characters.
pub const MAX_NAME_CHARS: usize = 64;

/// What a join token says about its bearer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinClaims {
    /// The live class this token admits to.
    pub room: RoomId,
    /// The bearer's identity in the room.
    pub sub: ParticipantId,
    /// Display name shown to others, e.g. "城关小学 三年级(2)班".
    pub name: String,
    /// The bearer's role; the SFU never accepts a role from anywhere else.
    pub role: Role,
    /// What the bearer may do, further bounded by the role.
    pub grants: Grants,
    /// Issued at, seconds since the Unix epoch.
    pub iat: u64,
    /// Expires at, seconds since the Unix epoch.
    pub exp: u64,
}

/// Why a token was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// No token at all.
    #[error("no join token was presented")]
    Missing,
    /// Not of the `v1.<claims>.<signature>` shape, or too long.
    #[error("the join token is malformed")]
    Malformed,
    /// The signature does not match: forged, or signed with another key.
    #[error("the join token's signature is invalid")]
    BadSignature,
    /// Signed correctly but past its expiry.
    #[error("the join token expired at {exp} (now {now})")]
    Expired {
        /// The token's expiry.
        exp: u64,
        /// The time of verification.
        now: u64,
    },
    /// Signed correctly but the claims are unusable (bad identifiers or name).
    #[error("the join token's claims are invalid: {0}")]
    InvalidClaims(&'static str),
}

/// The shared HMAC key.
#[derive(Clone)]
pub struct TokenKey(Vec<u8>);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

impl TokenKey {
    /// A key from raw bytes; at least 16 bytes are required.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Option<Self> {
        let bytes = bytes.into();
        (bytes.len() >= 16).then_some(Self(bytes))
    }

    fn mac(&self) -> HmacSha256 {
        HmacSha256::new_from_slice(&self.0).expect("HMAC accepts keys of any length")
    }

    /// Signs `claims` into a token.
    pub fn sign(&self, claims: &JoinClaims) -> String {
        let json = serde_json::to_vec(claims).expect("claims always serialize");
        let body = format!("{VERSION}.{}", URL_SAFE_NO_PAD.encode(json));
        let mut mac = self.mac();
        mac.update(body.as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{body}.{sig}")
    }

    /// Verifies `token` at `now_unix` (seconds) and returns its claims.
    pub fn verify(&self, token: &str, now_unix: u64) -> Result<JoinClaims, TokenError> {
        if token.is_empty() {
            return Err(TokenError::Missing);
        }
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed);
        }
        let (body, sig) = token.rsplit_once('.').ok_or(TokenError::Malformed)?;
        let (version, claims_b64) = body.split_once('.').ok_or(TokenError::Malformed)?;
        if version != VERSION {
            return Err(TokenError::Malformed);
        }
        let sig = URL_SAFE_NO_PAD
            .decode(sig)
            .map_err(|_| TokenError::Malformed)?;
        let mut mac = self.mac();
        mac.update(body.as_bytes());
        mac.verify_slice(&sig)
            .map_err(|_| TokenError::BadSignature)?;
        let json = URL_SAFE_NO_PAD
            .decode(claims_b64)
            .map_err(|_| TokenError::Malformed)?;
        let claims: JoinClaims =
            serde_json::from_slice(&json).map_err(|_| TokenError::Malformed)?;
        if claims.exp <= now_unix {
            return Err(TokenError::Expired {
                exp: claims.exp,
                now: now_unix,
            });
        }
        if !is_valid_id(claims.room.as_str()) {
            return Err(TokenError::InvalidClaims("room id"));
        }
        if !is_valid_id(claims.sub.as_str()) {
            return Err(TokenError::InvalidClaims("participant id"));
        }
        let name_chars = claims.name.chars().count();
        if name_chars == 0
            || name_chars > MAX_NAME_CHARS
            || claims.name.chars().any(char::is_control)
        {
            return Err(TokenError::InvalidClaims("display name"));
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: u64) -> JoinClaims {
        JoinClaims {
            room: "demo-class".into(),
            sub: "room-a".into(),
            name: "城关小学 三年级(2)班".into(),
            role: Role::Receiving,
            grants: Role::Receiving.default_grants(),
            iat: 1000,
            exp,
        }
    }

    fn key() -> TokenKey {
        TokenKey::new(*b"0123456789abcdef0123").unwrap()
    }

    #[test]
    fn round_trip() {
        let t = key().sign(&claims(2000));
        assert_eq!(key().verify(&t, 1500).unwrap(), claims(2000));
    }

    #[test]
    fn expired_missing_forged_and_malformed_are_told_apart() {
        let k = key();
        let t = k.sign(&claims(2000));
        assert_eq!(
            k.verify(&t, 2000),
            Err(TokenError::Expired {
                exp: 2000,
                now: 2000
            })
        );
        assert_eq!(k.verify("", 0), Err(TokenError::Missing));
        assert_eq!(k.verify("v1.abc", 0), Err(TokenError::Malformed));
        assert_eq!(
            k.verify(&"x".repeat(MAX_TOKEN_LEN + 1), 0),
            Err(TokenError::Malformed)
        );
        let other = TokenKey::new(*b"another key, 16+ bytes").unwrap();
        assert_eq!(other.verify(&t, 1500), Err(TokenError::BadSignature));
        // Swap in claims that say `lead` but keep the old signature: forged.
        let mut lead = claims(2000);
        lead.role = Role::Lead;
        let forged_body = k.sign(&lead);
        let (forged_body, _) = forged_body.rsplit_once('.').unwrap();
        let (_, sig) = t.rsplit_once('.').unwrap();
        assert_eq!(
            k.verify(&format!("{forged_body}.{sig}"), 1500),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn unusable_claims_are_refused_even_when_signed() {
        let k = key();
        let mut c = claims(2000);
        c.sub = "room a; DROP".into();
        assert_eq!(
            k.verify(&k.sign(&c), 1500),
            Err(TokenError::InvalidClaims("participant id"))
        );
        let mut c = claims(2000);
        c.name = String::new();
        assert_eq!(
            k.verify(&k.sign(&c), 1500),
            Err(TokenError::InvalidClaims("display name"))
        );
    }

    #[test]
    fn short_keys_are_refused() {
        assert!(TokenKey::new(*b"short").is_none());
    }
}
