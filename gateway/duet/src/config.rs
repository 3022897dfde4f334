//! [`DuetConfig`]: one typed struct composed of each subsystem's config. Every key has a
//! documented default; `deploy/duet.sample.toml` carries every key commented, and a test loads
//! it so the two cannot drift.

use duet_gateway::GatewayConfig;
use duet_recorder::service::RecorderConfig;
use duet_sfu::SfuConfig;
use duet_sfu_proto::TokenKey;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The whole configuration (`duet.toml`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DuetConfig {
    /// Directory for everything Duet stores: the database, recordings, the token key.
    pub data_dir: PathBuf,
    /// Log filter in `tracing` syntax, e.g. `info` or `duet_sfu=debug,info`.
    pub log: String,
    /// The key (at least 16 characters) that signs join tokens, shared by the gateway and every
    /// SFU. Empty: read `<data_dir>/token.key`, creating it with a random key if absent.
    pub token_key: String,
    /// The gateway.
    pub gateway: GatewayConfig,
    /// The SFU.
    pub sfu: SfuConfig,
    /// The recorder of recording classrooms (录播教室).
    pub recorder: RecorderConfig,
    /// Recording live classes (同步课堂).
    pub live: crate::live::LiveConfig,
}

impl Default for DuetConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("duet-data"),
            log: "info".into(),
            token_key: String::new(),
            gateway: GatewayConfig::default(),
            sfu: SfuConfig::default(),
            recorder: RecorderConfig::default(),
            live: crate::live::LiveConfig::default(),
        }
    }
}

/// Why the configuration cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// Which file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not valid TOML for this struct.
    #[error("invalid configuration in {path}: {source}")]
    Parse {
        /// Which file.
        path: PathBuf,
        /// Why.
        source: Box<toml::de::Error>,
    },
    /// A value is out of range.
    #[error("invalid configuration: {0}")]
    Invalid(String),
    /// The token key file could not be read or written.
    #[error("token key {path}: {source}")]
    Key {
        /// Which file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

impl DuetConfig {
    /// Loads a TOML file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        Self::parse(&text).map_err(|source| ConfigError::Parse {
            path: path.into(),
            source: Box::new(source),
        })
    }

    /// Parses TOML text.
    pub fn parse(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    /// Checks every subsystem's values.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.token_key.is_empty() && self.token_key.len() < 16 {
            return Err(ConfigError::Invalid(
                "token_key must be at least 16 characters".into(),
            ));
        }
        self.gateway.validate().map_err(ConfigError::Invalid)?;
        self.sfu.validate().map_err(ConfigError::Invalid)?;
        self.recorder
            .validate()
            .map_err(|e| ConfigError::Invalid(e.to_string()))?;
        self.live.validate().map_err(ConfigError::Invalid)?;
        Ok(())
    }

    /// The token key: from the config, or from `<data_dir>/token.key` (created if absent).
    pub fn token_key(&self) -> Result<TokenKey, ConfigError> {
        if !self.token_key.is_empty() {
            return TokenKey::new(self.token_key.as_bytes()).ok_or_else(|| {
                ConfigError::Invalid("token_key must be at least 16 characters".into())
            });
        }
        let path = self.data_dir.join("token.key");
        let key_err = |source| ConfigError::Key {
            path: path.clone(),
            source,
        };
        match std::fs::read_to_string(&path) {
            Ok(k) if k.trim().len() >= 16 => {
                Ok(TokenKey::new(k.trim().as_bytes()).expect("length checked"))
            }
            Ok(_) => Err(ConfigError::Invalid(format!(
                "{} holds a key shorter than 16 characters",
                path.display()
            ))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(&self.data_dir).map_err(key_err)?;
                let key: String = (0..32)
                    .map(|_| format!("{:02x}", rand::random::<u8>()))
                    .collect();
                write_private(&path, &key).map_err(key_err)?;
                Ok(TokenKey::new(key.into_bytes()).expect("64 hex characters"))
            }
            Err(e) => Err(key_err(e)),
        }
    }
}

#[cfg(unix)]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents.as_bytes())
}

#[cfg(not(unix))]
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    std::fs::write(path, contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = include_str!("../../../deploy/duet.sample.toml");

    /// Uncomments `# key = value` lines of the sample (not prose comments, which have no `=` or
    /// start with two `#`).
    fn uncommented(sample: &str) -> String {
        sample
            .lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest) if rest.contains(" = ") && !rest.starts_with('#') => rest.to_string(),
                _ => l.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn the_sample_config_loads_and_matches_the_defaults() {
        // As shipped (everything commented) it is the defaults.
        let as_shipped = DuetConfig::parse(SAMPLE).unwrap();
        assert_eq!(as_shipped, DuetConfig::default());
        // With every key uncommented it parses (no unknown or misspelled key) and every value it
        // shows is the default: the sample documents the defaults truthfully.
        let all = DuetConfig::parse(&uncommented(SAMPLE)).unwrap();
        assert_eq!(all, DuetConfig::default());
        all.validate().unwrap();
    }

    #[test]
    fn every_key_is_in_the_sample() {
        let defaults = toml::Value::try_from(DuetConfig::default()).unwrap();
        let text = uncommented(SAMPLE);
        let sample: toml::Value = toml::from_str(&text).unwrap();
        fn walk(prefix: &str, d: &toml::Value, s: &toml::Value) {
            if let toml::Value::Table(t) = d {
                for (k, v) in t {
                    let path = format!("{prefix}{k}");
                    let sv = s.get(k).unwrap_or_else(|| {
                        panic!("{path} is missing from deploy/duet.sample.toml")
                    });
                    walk(&format!("{path}."), v, sv);
                }
            }
        }
        walk("", &defaults, &sample);
    }

    #[test]
    fn the_director_sample_is_the_built_in_rules() {
        let sample = include_str!("../../../deploy/director.sample.toml");
        assert_eq!(
            duet_recorder::director::DirectorConfig::from_toml(sample).unwrap(),
            duet_recorder::director::DirectorConfig::default()
        );
        let config = DuetConfig {
            recorder: RecorderConfig {
                director_file: "../../deploy/director.sample.toml".into(),
                ..RecorderConfig::default()
            },
            ..DuetConfig::default()
        };
        assert_eq!(
            config.recorder.director().unwrap(),
            duet_recorder::director::DirectorConfig::default()
        );
        let missing = RecorderConfig {
            director_file: "/nonexistent/rules.toml".into(),
            ..RecorderConfig::default()
        };
        assert!(
            missing
                .validate()
                .unwrap_err()
                .to_string()
                .contains("rules.toml")
        );
    }

    #[test]
    fn bad_values_are_refused_clearly() {
        let c = DuetConfig::parse("[sfu]\nrtc_port_min = 6000\nrtc_port_max = 5000\n").unwrap();
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("rtc_port_min")
        );
        assert!(
            DuetConfig::parse("[sfu]\nrtc_prot_min = 1\n")
                .unwrap_err()
                .to_string()
                .contains("rtc_prot_min")
        );
        let c = DuetConfig::parse("token_key = \"short\"\n").unwrap();
        assert!(c.validate().is_err());
    }

    #[test]
    fn the_token_key_file_is_created_once_and_reused() {
        let dir = std::env::temp_dir().join(format!("duet-key-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let c = DuetConfig {
            data_dir: dir.clone(),
            ..DuetConfig::default()
        };
        let k1 = c.token_key().unwrap();
        let k2 = c.token_key().unwrap();
        let claims = duet_sfu_proto::JoinClaims {
            room: "r".into(),
            sub: "p".into(),
            name: "n".into(),
            role: duet_sfu_proto::Role::Observer,
            grants: duet_sfu_proto::Role::Observer.default_grants(),
            iat: 0,
            exp: 10,
        };
        assert!(k2.verify(&k1.sign(&claims), 5).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
