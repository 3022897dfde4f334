//! The ONVIF PTZ SOAP 1.2 codec: envelopes in, envelopes out, and nothing else.
//!
//! Owns the wire format of the five PTZ operations Duet uses ([`Operation`]), both ways:
//! - client side: [`PtzRequest::to_envelope`] writes a request with its WS-Security
//!   `UsernameToken` header; [`parse_get_presets_response`], [`parse_set_preset_response`] and
//!   [`parse_empty_response`] read the replies; every reply parser turns a SOAP fault into
//!   [`OnvifError::Fault`], and [`parse_fault`] reads a fault from an HTTP error's body.
//! - camera side (the simulator): [`parse_request`], [`get_presets_response`],
//!   [`set_preset_response`], [`empty_response`] and [`fault_envelope`].
//!
//! # Invariants
//! - Pure: no I/O, no clock, no randomness. The caller supplies the nonce and the creation time
//!   ([`WsSecurity`]), so envelopes are reproducible in tests.
//! - Parsers take untrusted bytes and never panic; anything unexpected is
//!   [`OnvifError::Malformed`]. Documents are bounded in depth and element count, DTDs and
//!   unknown entities are refused.
//! - Elements and attributes are matched by local name; prefixes and namespace URIs are not
//!   checked, because camera toolkits disagree on both.
//! - Writers escape every piece of text and refuse ([`OnvifError::InvalidArgument`]) what XML
//!   1.0 cannot carry at all, and out-of-range velocities and speeds, before producing bytes.
//!
//! # Driving it
//! Build a [`PtzRequest`], call [`PtzRequest::to_envelope`] with fresh credentials, POST the
//! result with [`Operation::action`] in the content type, then feed the reply's body to the
//! parser for that operation. [`password_digest`] is the WS-Security digest on its own.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use chrono::{DateTime, SecondsFormat, Utc};
use quick_xml::XmlVersion;
use quick_xml::escape::{escape, resolve_xml_entity};
use quick_xml::events::{BytesStart, Event};
use quick_xml::reader::Reader;
use sha1::{Digest, Sha1};
use std::borrow::Cow;
use std::fmt;

use super::{OnvifError, PanTilt, Preset, PresetToken, ProfileToken, PtzVector};

/// SOAP 1.2 envelope namespace (prefix `env`).
pub const NS_SOAP_ENV: &str = "http://www.w3.org/2003/05/soap-envelope";
/// ONVIF PTZ service namespace (prefix `tptz`).
pub const NS_PTZ: &str = "http://www.onvif.org/ver20/ptz/wsdl";
/// ONVIF schema namespace (prefix `tt`).
pub const NS_SCHEMA: &str = "http://www.onvif.org/ver10/schema";
/// ONVIF error (fault subcode) namespace (prefix `ter`).
pub const NS_ERROR: &str = "http://www.onvif.org/ver10/error";
/// The media type of SOAP 1.2; the action goes in its `action` parameter.
pub const CONTENT_TYPE: &str = "application/soap+xml; charset=utf-8";

const NS_WSSE: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd";
const NS_WSU: &str =
    "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd";
/// `Type` of a `wsse:Password` holding a digest.
pub const PASSWORD_DIGEST_TYPE: &str = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#PasswordDigest";
const BASE64_BINARY: &str = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-soap-message-security-1.0#Base64Binary";

/// Deepest element nesting accepted; a PTZ reply needs 7.
const MAX_DEPTH: usize = 32;
/// Most elements accepted in one document; 256 presets need about 1,500.
const MAX_ELEMENTS: usize = 10_000;
/// Longest fault code, subcode or reason kept, in bytes, so that a hostile reply cannot fill
/// logs.
const MAX_FAULT_TEXT: usize = 256;
/// Longest preset name (`tt:Name`), in characters.
const MAX_NAME_CHARS: usize = 64;

/// The PTZ operations Duet speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    /// List the presets of a profile.
    GetPresets,
    /// Drive to a preset.
    GotoPreset,
    /// Store the current position as a preset (new or existing).
    SetPreset,
    /// Start moving at a velocity until stopped.
    ContinuousMove,
    /// Stop pan/tilt and/or zoom movement.
    Stop,
}

impl Operation {
    /// Every operation.
    pub const ALL: [Self; 5] = [
        Self::GetPresets,
        Self::GotoPreset,
        Self::SetPreset,
        Self::ContinuousMove,
        Self::Stop,
    ];

    /// The request element's local name.
    pub fn name(self) -> &'static str {
        match self {
            Self::GetPresets => "GetPresets",
            Self::GotoPreset => "GotoPreset",
            Self::SetPreset => "SetPreset",
            Self::ContinuousMove => "ContinuousMove",
            Self::Stop => "Stop",
        }
    }

    /// The response element's local name.
    pub fn response_name(self) -> &'static str {
        match self {
            Self::GetPresets => "GetPresetsResponse",
            Self::GotoPreset => "GotoPresetResponse",
            Self::SetPreset => "SetPresetResponse",
            Self::ContinuousMove => "ContinuousMoveResponse",
            Self::Stop => "StopResponse",
        }
    }

    /// The SOAP action URI, for the `action` parameter of the content type.
    pub fn action(self) -> &'static str {
        match self {
            Self::GetPresets => "http://www.onvif.org/ver20/ptz/wsdl/GetPresets",
            Self::GotoPreset => "http://www.onvif.org/ver20/ptz/wsdl/GotoPreset",
            Self::SetPreset => "http://www.onvif.org/ver20/ptz/wsdl/SetPreset",
            Self::ContinuousMove => "http://www.onvif.org/ver20/ptz/wsdl/ContinuousMove",
            Self::Stop => "http://www.onvif.org/ver20/ptz/wsdl/Stop",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|op| op.name() == name)
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One PTZ request, as sent by a client or as parsed by a camera.
#[derive(Clone, Debug, PartialEq)]
pub enum PtzRequest {
    /// `tptz:GetPresets`.
    GetPresets {
        /// The media profile.
        profile: ProfileToken,
    },
    /// `tptz:GotoPreset`.
    GotoPreset {
        /// The media profile.
        profile: ProfileToken,
        /// Where to go.
        preset: PresetToken,
        /// How fast, in the generic speed space [0, 1]; the camera's default if absent.
        speed: Option<PtzVector>,
    },
    /// `tptz:SetPreset`.
    SetPreset {
        /// The media profile.
        profile: ProfileToken,
        /// A human name, at most 64 characters.
        name: Option<String>,
        /// The preset to overwrite; a new preset if absent.
        preset: Option<PresetToken>,
    },
    /// `tptz:ContinuousMove`.
    ContinuousMove {
        /// The media profile.
        profile: ProfileToken,
        /// Velocity in the generic velocity space: every axis in [-1, 1].
        velocity: PtzVector,
    },
    /// `tptz:Stop`.
    Stop {
        /// The media profile.
        profile: ProfileToken,
        /// Stop panning and tilting.
        pan_tilt: bool,
        /// Stop zooming.
        zoom: bool,
    },
}

impl PtzRequest {
    /// Which operation this is.
    pub fn operation(&self) -> Operation {
        match self {
            Self::GetPresets { .. } => Operation::GetPresets,
            Self::GotoPreset { .. } => Operation::GotoPreset,
            Self::SetPreset { .. } => Operation::SetPreset,
            Self::ContinuousMove { .. } => Operation::ContinuousMove,
            Self::Stop { .. } => Operation::Stop,
        }
    }

    /// The media profile addressed.
    pub fn profile(&self) -> &ProfileToken {
        match self {
            Self::GetPresets { profile }
            | Self::GotoPreset { profile, .. }
            | Self::SetPreset { profile, .. }
            | Self::ContinuousMove { profile, .. }
            | Self::Stop { profile, .. } => profile,
        }
    }

    /// Checks ranges and text: tokens non-empty, every string representable in XML 1.0, names
    /// at most 64 characters, velocities in [-1, 1], speeds in [0, 1] (NaN is out of range).
    pub fn validate(&self) -> Result<(), OnvifError> {
        check_token(
            self.profile().as_str(),
            "profile token is empty or not XML text",
        )?;
        match self {
            Self::GetPresets { .. } | Self::Stop { .. } => Ok(()),
            Self::GotoPreset { preset, speed, .. } => {
                check_token(preset.as_str(), "preset token is empty or not XML text")?;
                match speed {
                    Some(speed) if !in_range(speed, 0.0, 1.0) => {
                        Err(OnvifError::invalid("speed outside [0, 1]"))
                    }
                    _ => Ok(()),
                }
            }
            Self::SetPreset { name, preset, .. } => {
                if let Some(preset) = preset {
                    check_token(preset.as_str(), "preset token is empty or not XML text")?;
                }
                match name {
                    Some(name) if !is_xml_text(name) => {
                        Err(OnvifError::invalid("preset name is not XML text"))
                    }
                    Some(name) if name.chars().count() > MAX_NAME_CHARS => {
                        Err(OnvifError::invalid("preset name longer than 64 characters"))
                    }
                    _ => Ok(()),
                }
            }
            Self::ContinuousMove { velocity, .. } => {
                if velocity.pan_tilt.is_none() && velocity.zoom.is_none() {
                    Err(OnvifError::invalid("velocity names no axis"))
                } else if !in_range(velocity, -1.0, 1.0) {
                    Err(OnvifError::invalid("velocity outside [-1, 1]"))
                } else {
                    Ok(())
                }
            }
        }
    }

    /// The whole SOAP envelope, security header included; [`validate`](Self::validate)s first.
    pub fn to_envelope(&self, security: &WsSecurity<'_>) -> Result<String, OnvifError> {
        self.validate()?;
        if !is_xml_text(security.username) {
            return Err(OnvifError::invalid("user name is not XML text"));
        }
        let mut xml = Xml::envelope();
        security.write(&mut xml);
        xml.open("env:Body");
        let element = format!("tptz:{}", self.operation().name());
        xml.open(&element);
        xml.text("tptz:ProfileToken", self.profile().as_str());
        match self {
            Self::GetPresets { .. } => {}
            Self::GotoPreset { preset, speed, .. } => {
                xml.text("tptz:PresetToken", preset.as_str());
                if let Some(speed) = speed {
                    xml.vector("tptz:Speed", speed);
                }
            }
            Self::SetPreset { name, preset, .. } => {
                if let Some(name) = name {
                    xml.text("tptz:PresetName", name);
                }
                if let Some(preset) = preset {
                    xml.text("tptz:PresetToken", preset.as_str());
                }
            }
            Self::ContinuousMove { velocity, .. } => xml.vector("tptz:Velocity", velocity),
            Self::Stop { pan_tilt, zoom, .. } => {
                xml.text("tptz:PanTilt", if *pan_tilt { "true" } else { "false" });
                xml.text("tptz:Zoom", if *zoom { "true" } else { "false" });
            }
        }
        xml.close(&element);
        Ok(xml.finish())
    }
}

/// What a client signs one request with: a WS-Security `UsernameToken` whose password is sent as
/// `Base64(SHA1(nonce + created + password))`.
pub struct WsSecurity<'a> {
    /// The camera account.
    pub username: &'a str,
    /// Its password; only its digest is sent.
    pub password: &'a str,
    /// Fresh random bytes, never reused (the camera refuses replays).
    pub nonce: &'a [u8],
    /// Now, by the camera's clock as far as the client knows it (cameras refuse stale tokens).
    pub created: DateTime<Utc>,
}

impl fmt::Debug for WsSecurity<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsSecurity")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("nonce", &BASE64.encode(self.nonce))
            .field("created", &self.created)
            .finish()
    }
}

impl WsSecurity<'_> {
    fn write(&self, xml: &mut Xml) {
        let created = self.created.to_rfc3339_opts(SecondsFormat::Secs, true);
        let digest = password_digest(self.nonce, &created, self.password);
        xml.raw(&format!(
            r#"<env:Header><wsse:Security env:mustUnderstand="1" xmlns:wsse="{NS_WSSE}" xmlns:wsu="{NS_WSU}"><wsse:UsernameToken>"#
        ));
        xml.text("wsse:Username", self.username);
        xml.raw(&format!(
            r#"<wsse:Password Type="{PASSWORD_DIGEST_TYPE}">{digest}</wsse:Password><wsse:Nonce EncodingType="{BASE64_BINARY}">{}</wsse:Nonce>"#,
            BASE64.encode(self.nonce)
        ));
        xml.text("wsu:Created", &created);
        xml.raw("</wsse:UsernameToken></wsse:Security></env:Header>");
    }
}

/// The WS-Security UsernameToken password digest: `Base64(SHA1(nonce + created + password))`,
/// with `created` exactly as it appears in the `wsu:Created` element.
pub fn password_digest(nonce: &[u8], created: &str, password: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(nonce);
    sha.update(created.as_bytes());
    sha.update(password.as_bytes());
    BASE64.encode(sha.finalize())
}

/// A `wsse:UsernameToken` as a camera received it; a missing element reads as empty.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UsernameToken {
    /// `wsse:Username`.
    pub username: String,
    /// `wsse:Password`: the Base64 digest if `password_type` is [`PASSWORD_DIGEST_TYPE`].
    pub password: String,
    /// The password's `Type` attribute.
    pub password_type: String,
    /// `wsse:Nonce`, Base64.
    pub nonce: String,
    /// `wsu:Created`, as sent (the digest covers these exact characters).
    pub created: String,
}

/// What the body of a received request asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum RequestBody {
    /// One of the PTZ operations this codec knows.
    Ptz(PtzRequest),
    /// Any other operation (answered with `ter:ActionNotSupported`).
    Unsupported {
        /// Its element's local name, cut to 256 bytes.
        name: String,
    },
}

/// A received request envelope.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestEnvelope {
    /// The security header's `UsernameToken`, if any.
    pub security: Option<UsernameToken>,
    /// The operation.
    pub body: RequestBody,
}

/// Reads a request envelope (the camera side). Does not validate ranges: call
/// [`PtzRequest::validate`].
pub fn parse_request(bytes: &[u8]) -> Result<RequestEnvelope, OnvifError> {
    let root = parse_document(bytes)?;
    if root.name != "Envelope" {
        return Err(OnvifError::malformed("root element is not a SOAP Envelope"));
    }
    let security = root
        .child("Header")
        .and_then(|header| header.child("Security"))
        .and_then(|security| security.child("UsernameToken"))
        .map(|token| {
            let text = |name| token.child(name).map_or("", Element::text).to_owned();
            UsernameToken {
                username: text("Username"),
                password: text("Password"),
                password_type: token
                    .child("Password")
                    .and_then(|password| password.attr("Type"))
                    .unwrap_or("")
                    .to_owned(),
                nonce: text("Nonce"),
                created: text("Created"),
            }
        });
    let payload = body_payload(&root)?;
    let body = match Operation::from_name(&payload.name) {
        Some(op) => RequestBody::Ptz(parse_ptz_request(op, payload)?),
        None => RequestBody::Unsupported {
            name: clip(&payload.name),
        },
    };
    Ok(RequestEnvelope { security, body })
}

fn parse_ptz_request(op: Operation, el: &Element) -> Result<PtzRequest, OnvifError> {
    let profile = ProfileToken::new(required_text(el, "ProfileToken")?);
    Ok(match op {
        Operation::GetPresets => PtzRequest::GetPresets { profile },
        Operation::GotoPreset => PtzRequest::GotoPreset {
            profile,
            preset: PresetToken::new(required_text(el, "PresetToken")?),
            speed: el.child("Speed").map(parse_vector).transpose()?,
        },
        Operation::SetPreset => PtzRequest::SetPreset {
            profile,
            name: el.child("PresetName").map(|name| name.text().to_owned()),
            preset: el
                .child("PresetToken")
                .map(|token| PresetToken::new(token.text())),
        },
        Operation::ContinuousMove => PtzRequest::ContinuousMove {
            profile,
            velocity: parse_vector(
                el.child("Velocity")
                    .ok_or(OnvifError::malformed("ContinuousMove without Velocity"))?,
            )?,
        },
        Operation::Stop => PtzRequest::Stop {
            profile,
            // Absent means "stop it too" (ONVIF PTZ service specification, Stop).
            pan_tilt: optional_bool(el, "PanTilt")?.unwrap_or(true),
            zoom: optional_bool(el, "Zoom")?.unwrap_or(true),
        },
    })
}

/// Reads a `GetPresetsResponse`: the presets in the camera's order.
pub fn parse_get_presets_response(bytes: &[u8]) -> Result<Vec<Preset>, OnvifError> {
    let root = parse_document(bytes)?;
    let response = expect_response(&root, Operation::GetPresets)?;
    response
        .children
        .iter()
        .filter(|child| child.name == "Preset")
        .map(|preset| {
            let token = preset
                .attr("token")
                .map(str::trim)
                .filter(|token| !token.is_empty())
                .ok_or(OnvifError::malformed("preset without token"))?;
            Ok(Preset {
                token: PresetToken::new(token),
                name: preset.child("Name").map(|name| name.text().to_owned()),
                position: preset.child("PTZPosition").map(parse_vector).transpose()?,
            })
        })
        .collect()
}

/// Reads a `SetPresetResponse`: the token of the preset stored.
pub fn parse_set_preset_response(bytes: &[u8]) -> Result<PresetToken, OnvifError> {
    let root = parse_document(bytes)?;
    let response = expect_response(&root, Operation::SetPreset)?;
    required_text(response, "PresetToken").map(PresetToken::new)
}

/// Reads the empty response of `op` (`GotoPreset`, `ContinuousMove`, `Stop`; for the others it
/// only checks that the response element is the right one).
pub fn parse_empty_response(op: Operation, bytes: &[u8]) -> Result<(), OnvifError> {
    let root = parse_document(bytes)?;
    expect_response(&root, op).map(drop)
}

/// The fault in `bytes`, if they are a SOAP envelope carrying one (as the body of an HTTP
/// 400 or 500 should).
pub fn parse_fault(bytes: &[u8]) -> Option<OnvifError> {
    let root = parse_document(bytes).ok()?;
    match body_payload(&root) {
        Ok(payload) if payload.name == "Fault" => Some(fault(payload)),
        _ => None,
    }
}

fn expect_response(root: &Element, op: Operation) -> Result<&Element, OnvifError> {
    if root.name != "Envelope" {
        return Err(OnvifError::malformed("root element is not a SOAP Envelope"));
    }
    let payload = body_payload(root)?;
    if payload.name == "Fault" {
        return Err(fault(payload));
    }
    if payload.name != op.response_name() {
        return Err(OnvifError::malformed("reply is not the expected response"));
    }
    Ok(payload)
}

fn body_payload(root: &Element) -> Result<&Element, OnvifError> {
    root.child("Body")
        .ok_or(OnvifError::malformed("no SOAP Body"))?
        .children
        .first()
        .ok_or(OnvifError::malformed("empty SOAP Body"))
}

/// A SOAP 1.2 fault (`Code/Value`, nested `Subcode/Value`, `Reason/Text`), or a SOAP 1.1 one
/// (`faultcode`, `faultstring`) from older firmware.
fn fault(el: &Element) -> OnvifError {
    let (code, subcode) = match el.child("Code") {
        Some(code) => {
            let mut subcode = None;
            let mut level = code;
            // Bounded by MAX_DEPTH.
            while let Some(next) = level.child("Subcode") {
                if let Some(value) = next.child("Value") {
                    subcode = Some(clip(value.text()));
                }
                level = next;
            }
            (code.child("Value").map_or("", Element::text), subcode)
        }
        None => (el.child("faultcode").map_or("", Element::text), None),
    };
    let reason = el
        .child("Reason")
        .and_then(|reason| reason.child("Text"))
        .or_else(|| el.child("faultstring"))
        .map_or("", Element::text);
    OnvifError::Fault {
        code: clip(code),
        subcode,
        reason: clip(reason),
    }
}

fn parse_vector(el: &Element) -> Result<PtzVector, OnvifError> {
    let pan_tilt = el
        .child("PanTilt")
        .map(|pt| {
            Ok::<_, OnvifError>(PanTilt {
                x: float_attr(pt, "x")?,
                y: float_attr(pt, "y")?,
            })
        })
        .transpose()?;
    let zoom = el
        .child("Zoom")
        .map(|zoom| float_attr(zoom, "x"))
        .transpose()?;
    Ok(PtzVector { pan_tilt, zoom })
}

fn float_attr(el: &Element, name: &str) -> Result<f32, OnvifError> {
    el.attr(name)
        .and_then(|value| value.trim().parse::<f32>().ok())
        .filter(|value| value.is_finite())
        .ok_or(OnvifError::malformed("missing or bad coordinate"))
}

fn required_text<'a>(el: &'a Element, name: &str) -> Result<&'a str, OnvifError> {
    el.child(name)
        .map(Element::text)
        .filter(|text| !text.is_empty())
        .ok_or(OnvifError::malformed("missing or empty token"))
}

fn optional_bool(el: &Element, name: &str) -> Result<Option<bool>, OnvifError> {
    el.child(name)
        .map(|flag| match flag.text() {
            "true" | "1" => Ok(true),
            "false" | "0" => Ok(false),
            _ => Err(OnvifError::malformed("bad xs:boolean")),
        })
        .transpose()
}

/// A camera's `GetPresetsResponse` listing `presets`.
pub fn get_presets_response(presets: &[Preset]) -> String {
    let mut xml = Xml::envelope();
    xml.open("env:Body");
    xml.open("tptz:GetPresetsResponse");
    for preset in presets {
        xml.raw(r#"<tptz:Preset token=""#);
        xml.raw(&escape_markup(preset.token.as_str()));
        xml.raw(r#"">"#);
        if let Some(name) = &preset.name {
            xml.text("tt:Name", name);
        }
        if let Some(position) = &preset.position {
            xml.vector("tt:PTZPosition", position);
        }
        xml.close("tptz:Preset");
    }
    xml.close("tptz:GetPresetsResponse");
    xml.finish()
}

/// A camera's `SetPresetResponse` carrying `token`.
pub fn set_preset_response(token: &PresetToken) -> String {
    let mut xml = Xml::envelope();
    xml.open("env:Body");
    xml.open("tptz:SetPresetResponse");
    xml.text("tptz:PresetToken", token.as_str());
    xml.close("tptz:SetPresetResponse");
    xml.finish()
}

/// A camera's empty response to `op`.
pub fn empty_response(op: Operation) -> String {
    let mut xml = Xml::envelope();
    xml.open("env:Body");
    xml.raw(&format!("<tptz:{}/>", op.response_name()));
    xml.finish()
}

/// Who a SOAP 1.2 fault blames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultCode {
    /// `env:Sender`: the request was wrong (HTTP 400).
    Sender,
    /// `env:Receiver`: the camera could not do it (HTTP 500).
    Receiver,
}

/// A SOAP 1.2 fault envelope: `code`, then `subcodes` (ONVIF error local names such as
/// `InvalidArgVal`, `NoProfile`, written with the `ter` prefix) from general to specific.
pub fn fault_envelope(code: FaultCode, subcodes: &[&str], reason: &str) -> String {
    let mut xml = Xml::envelope();
    xml.open("env:Body");
    xml.open("env:Fault");
    xml.open("env:Code");
    xml.text(
        "env:Value",
        match code {
            FaultCode::Sender => "env:Sender",
            FaultCode::Receiver => "env:Receiver",
        },
    );
    for subcode in subcodes {
        xml.open("env:Subcode");
        xml.text("env:Value", &format!("ter:{subcode}"));
    }
    for _ in subcodes {
        xml.close("env:Subcode");
    }
    xml.close("env:Code");
    xml.open("env:Reason");
    xml.raw(r#"<env:Text xml:lang="en">"#);
    xml.raw(&escape_markup(reason));
    xml.raw("</env:Text>");
    xml.close("env:Reason");
    xml.close("env:Fault");
    xml.finish()
}

/// The local part of a qualified name: `ter:NotAuthorized` → `NotAuthorized`.
pub(crate) fn local_part(qname: &str) -> &str {
    qname.rsplit_once(':').map_or(qname, |(_, local)| local)
}

fn in_range(v: &PtzVector, lo: f32, hi: f32) -> bool {
    let ok = |x: f32| (lo..=hi).contains(&x);
    v.pan_tilt.is_none_or(|pt| ok(pt.x) && ok(pt.y)) && v.zoom.is_none_or(ok)
}

fn check_token(token: &str, what: &'static str) -> Result<(), OnvifError> {
    if token.is_empty() || !is_xml_text(token) {
        Err(OnvifError::invalid(what))
    } else {
        Ok(())
    }
}

/// Whether every character may appear in an XML 1.0 document (escaped or not): no control
/// characters other than tab and line breaks, no U+FFFE/U+FFFF.
fn is_xml_text(text: &str) -> bool {
    text.chars().all(|c| {
        matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
    })
}

/// Escapes text for element content or a quoted attribute value: markup characters, and also
/// tab and line breaks as character references, which parsers would otherwise normalize
/// (CR LF to LF in content, to spaces in attributes).
fn escape_markup(text: &str) -> Cow<'_, str> {
    let escaped = escape(text);
    if !escaped.contains(['\t', '\n', '\r']) {
        return escaped;
    }
    Cow::Owned(
        escaped
            .replace('\t', "&#9;")
            .replace('\n', "&#10;")
            .replace('\r', "&#13;"),
    )
}

fn clip(text: &str) -> String {
    let mut end = text.len().min(MAX_FAULT_TEXT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// A string being written as XML. Tags are trusted constants; text goes through
/// [`Xml::text`], which escapes.
struct Xml(String);

impl Xml {
    fn envelope() -> Self {
        Self(format!(
            r#"<?xml version="1.0" encoding="UTF-8"?><env:Envelope xmlns:env="{NS_SOAP_ENV}" xmlns:tptz="{NS_PTZ}" xmlns:tt="{NS_SCHEMA}" xmlns:ter="{NS_ERROR}">"#
        ))
    }

    fn raw(&mut self, markup: &str) {
        self.0.push_str(markup);
    }

    fn open(&mut self, tag: &str) {
        self.0.push('<');
        self.0.push_str(tag);
        self.0.push('>');
    }

    fn close(&mut self, tag: &str) {
        self.0.push_str("</");
        self.0.push_str(tag);
        self.0.push('>');
    }

    fn text(&mut self, tag: &str, text: &str) {
        self.open(tag);
        self.0.push_str(&escape_markup(text));
        self.close(tag);
    }

    fn vector(&mut self, tag: &str, v: &PtzVector) {
        self.open(tag);
        if let Some(PanTilt { x, y }) = v.pan_tilt {
            self.raw(&format!(r#"<tt:PanTilt x="{x}" y="{y}"/>"#));
        }
        if let Some(zoom) = v.zoom {
            self.raw(&format!(r#"<tt:Zoom x="{zoom}"/>"#));
        }
        self.close(tag);
    }

    /// Closes the body and the envelope.
    fn finish(mut self) -> String {
        self.0.push_str("</env:Body></env:Envelope>");
        self.0
    }
}

/// One element of a parsed document, reduced to what the PTZ messages need.
#[derive(Debug, Default)]
struct Element {
    /// Local name (prefix dropped).
    name: String,
    /// Attributes by local name, namespace declarations dropped, values unescaped.
    attrs: Vec<(String, String)>,
    /// Character data directly inside, unescaped and concatenated.
    text: String,
    /// Child elements in document order.
    children: Vec<Element>,
}

impl Element {
    fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|child| child.name == name)
    }

    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    fn text(&self) -> &str {
        self.text.trim()
    }

    fn start(start: &BytesStart<'_>) -> Result<Self, OnvifError> {
        let mut attrs = Vec::new();
        for attr in start.attributes() {
            let attr = attr.map_err(|_| OnvifError::malformed("bad attribute"))?;
            if attr.key.as_namespace_binding().is_some() {
                continue;
            }
            let value = attr
                .normalized_value(XmlVersion::Implicit1_0)
                .map_err(|_| OnvifError::malformed("bad attribute value"))?;
            attrs.push((
                attr.key.local_name().into_inner().to_owned(),
                value.into_owned(),
            ));
        }
        Ok(Self {
            name: start.local_name().into_inner().to_owned(),
            attrs,
            ..Self::default()
        })
    }
}

/// Parses untrusted bytes into a tree, iteratively (no recursion on input), within
/// [`MAX_DEPTH`] and [`MAX_ELEMENTS`].
fn parse_document(bytes: &[u8]) -> Result<Element, OnvifError> {
    let text = std::str::from_utf8(bytes).map_err(|_| OnvifError::malformed("not UTF-8"))?;
    let mut reader = Reader::from_str(text);
    let mut open: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    let mut count = 0usize;
    loop {
        let event = reader
            .read_event()
            .map_err(|_| OnvifError::malformed("not well-formed XML"))?;
        if root.is_some() && matches!(event, Event::Start(_) | Event::Empty(_)) {
            return Err(OnvifError::malformed("more than one root element"));
        }
        match event {
            Event::Start(start) => {
                count += 1;
                if open.len() >= MAX_DEPTH || count > MAX_ELEMENTS {
                    return Err(OnvifError::malformed("document too deep or too large"));
                }
                open.push(Element::start(&start)?);
            }
            Event::Empty(start) => {
                count += 1;
                if count > MAX_ELEMENTS {
                    return Err(OnvifError::malformed("document too large"));
                }
                let element = Element::start(&start)?;
                attach(&mut open, &mut root, element);
            }
            Event::End(_) => {
                // quick-xml checks that end names match their start.
                let element = open
                    .pop()
                    .ok_or(OnvifError::malformed("unbalanced end tag"))?;
                attach(&mut open, &mut root, element);
            }
            Event::Text(text) => push_text(&mut open, &text.xml10_content())?,
            Event::CData(data) => push_text(&mut open, &data.xml10_content())?,
            Event::GeneralRef(reference) => {
                let resolved = match reference.resolve_char_ref() {
                    Ok(Some(c)) => c.to_string(),
                    Ok(None) => resolve_xml_entity(&reference)
                        .ok_or(OnvifError::malformed("unknown entity"))?
                        .to_owned(),
                    Err(_) => return Err(OnvifError::malformed("bad character reference")),
                };
                push_text(&mut open, &resolved)?;
            }
            Event::DocType(_) => return Err(OnvifError::malformed("DTD in a SOAP message")),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if !open.is_empty() {
        return Err(OnvifError::malformed("truncated document"));
    }
    root.ok_or(OnvifError::malformed("no root element"))
}

fn attach(open: &mut [Element], root: &mut Option<Element>, element: Element) {
    match open.last_mut() {
        Some(parent) => parent.children.push(element),
        None => *root = Some(element),
    }
}

fn push_text(open: &mut [Element], text: &str) -> Result<(), OnvifError> {
    match open.last_mut() {
        Some(element) => element.text.push_str(text),
        None if text.trim().is_empty() => {}
        None => return Err(OnvifError::malformed("text outside the root element")),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onvif::Lcg;

    fn security<'a>(nonce: &'a [u8]) -> WsSecurity<'a> {
        WsSecurity {
            username: "admin",
            password: "secret",
            nonce,
            created: "2026-03-02T08:00:00Z".parse().expect("a literal timestamp"),
        }
    }

    fn profile() -> ProfileToken {
        ProfileToken::new("profile_1")
    }

    fn all_requests() -> Vec<PtzRequest> {
        vec![
            PtzRequest::GetPresets { profile: profile() },
            PtzRequest::GotoPreset {
                profile: profile(),
                preset: PresetToken::new("1"),
                speed: Some(PtzVector::new(0.5, 1.0, 0.0)),
            },
            PtzRequest::GotoPreset {
                profile: profile(),
                preset: PresetToken::new("2"),
                speed: None,
            },
            PtzRequest::SetPreset {
                profile: profile(),
                name: Some("讲台 <特写> & \"板书\" 'x'".into()),
                preset: Some(PresetToken::new("a&b<c>")),
            },
            PtzRequest::SetPreset {
                profile: profile(),
                name: None,
                preset: None,
            },
            PtzRequest::ContinuousMove {
                profile: profile(),
                velocity: PtzVector::new(-1.0, 0.25, 1.0),
            },
            PtzRequest::ContinuousMove {
                profile: profile(),
                velocity: PtzVector {
                    pan_tilt: None,
                    zoom: Some(-0.5),
                },
            },
            PtzRequest::Stop {
                profile: profile(),
                pan_tilt: true,
                zoom: false,
            },
        ]
    }

    /// The worked example of the ONVIF Application Programmer's Guide (6.1.1.3). Its nonce is
    /// the 16 bytes of `LKqI6G/AikKCQrN0zqZFlg==`; the 20-byte `…zqZFuIIMQnM=` sometimes quoted
    /// with the same digest yields another one (checked against Python's `hashlib`).
    #[test]
    fn digest_matches_the_onvif_worked_example() {
        let digest = |nonce: &str| {
            let nonce = BASE64.decode(nonce).expect("the nonce is Base64");
            password_digest(&nonce, "2010-09-16T07:50:45Z", "userpassword")
        };
        assert_eq!(
            digest("LKqI6G/AikKCQrN0zqZFlg=="),
            "tuOSpGlFlIXsozq4HFNeeGeFLEI="
        );
        assert_eq!(
            digest("LKqI6G/AikKCQrN0zqZFuIIMQnM="),
            "VU+kd6bKJPBXRUdBUhZNS9AyV7k="
        );
    }

    #[test]
    fn the_security_header_carries_the_digest_of_the_created_it_shows() {
        let nonce = BASE64
            .decode("LKqI6G/AikKCQrN0zqZFlg==")
            .expect("the guide's nonce is Base64");
        let security = WsSecurity {
            username: "user",
            password: "userpassword",
            nonce: &nonce,
            created: "2010-09-16T07:50:45Z".parse().expect("a literal timestamp"),
        };
        let xml = PtzRequest::GetPresets { profile: profile() }
            .to_envelope(&security)
            .expect("a valid request");
        let token = parse_request(xml.as_bytes())
            .expect("our own envelope parses")
            .security
            .expect("it has a security header");
        assert_eq!(
            token,
            UsernameToken {
                username: "user".into(),
                password: "tuOSpGlFlIXsozq4HFNeeGeFLEI=".into(),
                password_type: PASSWORD_DIGEST_TYPE.into(),
                nonce: "LKqI6G/AikKCQrN0zqZFlg==".into(),
                created: "2010-09-16T07:50:45Z".into(),
            }
        );
        assert!(!format!("{security:?}").contains("userpassword"));
    }

    #[test]
    fn every_request_round_trips_through_its_envelope() {
        let nonce = [7u8; 20];
        for request in all_requests() {
            let xml = request.to_envelope(&security(&nonce)).expect("valid");
            assert!(xml.contains(&format!("<tptz:{}>", request.operation().name())));
            let parsed = parse_request(xml.as_bytes()).expect("our envelope parses");
            assert_eq!(parsed.body, RequestBody::Ptz(request));
        }
    }

    #[test]
    fn user_text_is_escaped() {
        let request = PtzRequest::SetPreset {
            profile: ProfileToken::new("p</tptz:ProfileToken><evil/>"),
            name: Some("]]><x>&amp;\r\n\tline".into()),
            preset: None,
        };
        let xml = request.to_envelope(&security(&[1; 20])).expect("valid");
        assert!(!xml.contains("<evil/>"));
        assert!(!xml.contains("<x>"));
        assert_eq!(
            parse_request(xml.as_bytes()).expect("parses").body,
            RequestBody::Ptz(request)
        );
        let evil_user = WsSecurity {
            username: "a</wsse:Username><b>",
            ..security(&[1; 20])
        };
        let xml = PtzRequest::GetPresets { profile: profile() }
            .to_envelope(&evil_user)
            .expect("valid");
        let token = parse_request(xml.as_bytes())
            .expect("parses")
            .security
            .expect("has a header");
        assert_eq!(token.username, "a</wsse:Username><b>");
    }

    #[test]
    fn out_of_range_and_unwritable_arguments_are_refused() {
        let velocity = |pan, tilt, zoom| PtzRequest::ContinuousMove {
            profile: profile(),
            velocity: PtzVector::new(pan, tilt, zoom),
        };
        for bad in [
            velocity(1.01, 0.0, 0.0),
            velocity(0.0, -1.5, 0.0),
            velocity(0.0, 0.0, 2.0),
            velocity(f32::NAN, 0.0, 0.0),
            velocity(0.0, f32::INFINITY, 0.0),
            PtzRequest::ContinuousMove {
                profile: profile(),
                velocity: PtzVector::default(),
            },
            PtzRequest::GotoPreset {
                profile: profile(),
                preset: PresetToken::new("1"),
                speed: Some(PtzVector::new(-0.1, 0.5, 0.5)),
            },
            PtzRequest::GotoPreset {
                profile: profile(),
                preset: PresetToken::new(""),
                speed: None,
            },
            PtzRequest::GetPresets {
                profile: ProfileToken::new("nul\0byte"),
            },
            PtzRequest::SetPreset {
                profile: profile(),
                name: Some("bell\u{7}".into()),
                preset: None,
            },
            PtzRequest::SetPreset {
                profile: profile(),
                name: Some("长".repeat(65)),
                preset: None,
            },
        ] {
            assert!(
                matches!(
                    bad.to_envelope(&security(&[0; 20])),
                    Err(OnvifError::InvalidArgument { .. })
                ),
                "{bad:?} was accepted"
            );
        }
        assert!(velocity(1.0, -1.0, 1.0).validate().is_ok());
        let bad_user = WsSecurity {
            username: "\u{FFFF}",
            ..security(&[0; 20])
        };
        assert!(matches!(
            PtzRequest::GetPresets { profile: profile() }.to_envelope(&bad_user),
            Err(OnvifError::InvalidArgument { .. })
        ));
    }

    /// As a gSOAP-based camera writes it: other prefixes, a SOAP 1.1-style header, extra
    /// elements and attributes, an entity and a CDATA section.
    const CAMERA_PRESETS: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://www.w3.org/2003/05/soap-envelope" xmlns:tt="http://www.onvif.org/ver10/schema" xmlns:tptz="http://www.onvif.org/ver20/ptz/wsdl">
  <SOAP-ENV:Header><wsa:Action xmlns:wsa="http://www.w3.org/2005/08/addressing">x</wsa:Action></SOAP-ENV:Header>
  <SOAP-ENV:Body>
    <tptz:GetPresetsResponse>
      <tptz:Preset token="1">
        <tt:Name>Teacher &amp; podium</tt:Name>
        <tt:PTZPosition>
          <tt:PanTilt x="-0.25" y="0.5" space="http://www.onvif.org/ver10/tptz/PanTiltSpaces/PositionGenericSpace"/>
          <tt:Zoom x="0.1" space="http://www.onvif.org/ver10/tptz/ZoomSpaces/PositionGenericSpace"/>
        </tt:PTZPosition>
      </tptz:Preset>
      <tptz:Preset token=" 2 "><tt:Name><![CDATA[板书]]></tt:Name></tptz:Preset>
      <tptz:Preset token="3"/>
    </tptz:GetPresetsResponse>
  </SOAP-ENV:Body>
</SOAP-ENV:Envelope>
"#;

    #[test]
    fn presets_are_read_whatever_the_prefixes() {
        let presets = parse_get_presets_response(CAMERA_PRESETS.as_bytes()).expect("parses");
        assert_eq!(
            presets,
            vec![
                Preset {
                    token: PresetToken::new("1"),
                    name: Some("Teacher & podium".into()),
                    position: Some(PtzVector::new(-0.25, 0.5, 0.1)),
                },
                Preset {
                    token: PresetToken::new("2"),
                    name: Some("板书".into()),
                    position: None,
                },
                Preset {
                    token: PresetToken::new("3"),
                    name: None,
                    position: None,
                },
            ]
        );
    }

    #[test]
    fn a_byte_order_mark_is_tolerated() {
        let with_bom = format!("\u{FEFF}{CAMERA_PRESETS}");
        assert_eq!(
            parse_get_presets_response(with_bom.as_bytes())
                .expect("parses")
                .len(),
            3
        );
    }

    #[test]
    fn our_replies_read_back() {
        let presets = vec![
            Preset {
                token: PresetToken::new("preset_1"),
                name: Some("<讲台>".into()),
                position: Some(PtzVector::new(0.5, -0.5, 0.0)),
            },
            Preset {
                token: PresetToken::new("x\"y\t\r\nz"),
                name: None,
                position: None,
            },
        ];
        let xml = get_presets_response(&presets);
        assert_eq!(
            parse_get_presets_response(xml.as_bytes()).expect("parses"),
            presets
        );
        let token = PresetToken::new("preset_7");
        assert_eq!(
            parse_set_preset_response(set_preset_response(&token).as_bytes()).expect("parses"),
            token
        );
        for op in Operation::ALL {
            parse_empty_response(op, empty_response(op).as_bytes()).expect("parses");
        }
        assert!(matches!(
            parse_empty_response(
                Operation::Stop,
                empty_response(Operation::GotoPreset).as_bytes()
            ),
            Err(OnvifError::Malformed { .. })
        ));
    }

    #[test]
    fn faults_become_typed_errors() {
        let xml = fault_envelope(
            FaultCode::Sender,
            &["InvalidArgVal", "NoProfile"],
            "No such profile <x>",
        );
        for result in [
            parse_get_presets_response(xml.as_bytes()).map(drop),
            parse_set_preset_response(xml.as_bytes()).map(drop),
            parse_empty_response(Operation::GotoPreset, xml.as_bytes()),
        ] {
            let err = result.expect_err("a fault");
            assert!(err.is_fault("NoProfile"), "{err:?}");
            let OnvifError::Fault {
                code,
                subcode,
                reason,
            } = err
            else {
                unreachable!("checked above")
            };
            assert_eq!(code, "env:Sender");
            assert_eq!(subcode.as_deref(), Some("ter:NoProfile"));
            assert_eq!(reason, "No such profile <x>");
        }
        let soap11 = r#"<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/"><s:Body><s:Fault><faultcode>s:Client</faultcode><faultstring>Not Authorized</faultstring></s:Fault></s:Body></s:Envelope>"#;
        match parse_fault(soap11.as_bytes()) {
            Some(OnvifError::Fault {
                code,
                subcode: None,
                reason,
            }) => assert_eq!(
                (code.as_str(), reason.as_str()),
                ("s:Client", "Not Authorized")
            ),
            other => panic!("{other:?}"),
        }
        assert!(parse_fault(empty_response(Operation::Stop).as_bytes()).is_none());
        assert!(parse_fault(b"<html>500</html>").is_none());
        let long = fault_envelope(FaultCode::Receiver, &[], &"长".repeat(1000));
        let Some(OnvifError::Fault { reason, .. }) = parse_fault(long.as_bytes()) else {
            panic!("a fault");
        };
        assert!(reason.len() <= MAX_FAULT_TEXT && reason.starts_with('长'));
    }

    #[test]
    fn hostile_documents_are_refused() {
        let deep = "<a>".repeat(100_000);
        let wide = format!("<a>{}</a>", "<b/>".repeat(MAX_ELEMENTS + 1));
        for (doc, what) in [
            (deep.as_str(), "deep"),
            (wide.as_str(), "wide"),
            (r#"<!DOCTYPE e [<!ENTITY x "y">]><e>&x;</e>"#, "DTD"),
            ("<e>&unknown;</e>", "entity"),
            ("<e>&#0;</e>", "NUL reference"),
            ("<a/><b/>", "two roots"),
            ("<a></b>", "mismatched"),
            ("junk<a/>", "text before root"),
            ("", "empty"),
        ] {
            assert!(
                matches!(
                    parse_get_presets_response(doc.as_bytes()),
                    Err(OnvifError::Malformed { .. })
                ),
                "{what}"
            );
        }
        assert!(matches!(
            parse_get_presets_response(b"\xff\xfe<\x00"),
            Err(OnvifError::Malformed { what: "not UTF-8" })
        ));
    }

    fn all_parsers(bytes: &[u8]) -> [bool; 6] {
        [
            parse_get_presets_response(bytes).is_ok(),
            parse_set_preset_response(bytes).is_ok(),
            parse_empty_response(Operation::Stop, bytes).is_ok(),
            parse_fault(bytes).is_some(),
            parse_request(bytes).is_ok(),
            parse_document(bytes).is_ok(),
        ]
    }

    fn valid_messages() -> Vec<String> {
        let mut messages = vec![
            CAMERA_PRESETS.to_owned(),
            set_preset_response(&PresetToken::new("preset_1")),
            empty_response(Operation::ContinuousMove),
            fault_envelope(
                FaultCode::Sender,
                &["NotAuthorized"],
                "Sender not Authorized",
            ),
        ];
        messages.extend(
            all_requests()
                .iter()
                .map(|r| r.to_envelope(&security(&[9; 20])).expect("valid")),
        );
        messages
    }

    #[test]
    fn no_input_panics_random_bytes() {
        let mut rng = Lcg(0x0123_4567_89ab_cdef);
        for _ in 0..2_000 {
            let len = (rng.next() % 300) as usize;
            all_parsers(&rng.bytes(len));
        }
        // Random bytes inside XML-looking noise reach deeper into the parser.
        let alphabet: &[&[u8]] = &[
            b"<",
            b">",
            b"/",
            b"=",
            b"\"",
            b"&amp;",
            b"&#x",
            b";",
            b"env:",
            b"Envelope",
            b"Body",
            b"Preset",
            b"token",
            b" ",
            b"<![CDATA[",
            b"]]>",
            b"<!--",
            b"-->",
            b"<?",
            b"?>",
            b"\xe8\xae\xb2",
            b"\xff",
        ];
        for _ in 0..2_000 {
            let mut doc = Vec::new();
            for _ in 0..(rng.next() % 60) {
                doc.extend_from_slice(alphabet[(rng.next() as usize) % alphabet.len()]);
            }
            all_parsers(&doc);
        }
    }

    #[test]
    fn no_input_panics_truncated_or_mutated_messages() {
        let mut rng = Lcg(42);
        for message in valid_messages() {
            let bytes = message.as_bytes();
            let end = bytes
                .iter()
                .rposition(|&b| b == b'>')
                .expect("a document ends with a tag");
            for cut in 0..end {
                let results = all_parsers(&bytes[..cut]);
                assert_eq!(results, [false; 6], "a prefix of {cut} bytes was accepted");
            }
            for _ in 0..500 {
                let mut mutated = bytes.to_vec();
                for _ in 0..=(rng.next() % 4) {
                    let at = (rng.next() as usize) % mutated.len();
                    mutated[at] = rng.next() as u8;
                }
                all_parsers(&mutated);
            }
        }
    }
}
