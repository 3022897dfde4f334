//! [`DeliveryConfig`]: where lessons go and how hard to try. Every key has a default; call
//! [`DeliveryConfig::with_data_dir`] to place the default archive, then [`DeliveryConfig::validate`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::DeliveryError;

/// Files larger than this go to S3 as a multipart upload, in parts of this size.
pub const DEFAULT_MULTIPART_PART_SIZE: u64 = 64 * 1024 * 1024;

/// S3 refuses multipart parts smaller than 5 MiB (except the last).
const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;

/// Where delivered lessons are stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum ArchiveConfig {
    /// A local (or mounted) directory.
    Local {
        /// The archive's root. Empty (the default): `<data_dir>/archive`.
        #[serde(default)]
        dir: PathBuf,
    },
    /// An S3-compatible object store (AWS S3, MinIO, Ceph RGW, OSS in S3 mode …).
    S3 {
        /// Base URL of the service, path-style: `http://10.0.0.5:9000` (plain HTTP only; put a
        /// TLS-terminating proxy in front for HTTPS).
        endpoint: String,
        /// The bucket.
        bucket: String,
        /// The signing region, e.g. `us-east-1` (MinIO's default).
        #[serde(default = "default_region")]
        region: String,
        /// Access key id.
        access_key: String,
        /// Secret key.
        secret_key: String,
        /// Prepended to every object key (no leading or trailing `/`), e.g. `duet`; empty: none.
        #[serde(default)]
        prefix: String,
        /// Files larger than this are uploaded in parts of this size (≥ 5 MiB; default 64 MiB).
        #[serde(default = "default_part_size")]
        part_size: u64,
    },
}

fn default_region() -> String {
    "us-east-1".into()
}

fn default_part_size() -> u64 {
    DEFAULT_MULTIPART_PART_SIZE
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        Self::Local {
            dir: PathBuf::new(),
        }
    }
}

impl ArchiveConfig {
    /// Checks every value; an empty local `dir` must have been filled by
    /// [`DeliveryConfig::with_data_dir`].
    pub fn validate(&self) -> Result<(), DeliveryError> {
        let bad = |reason: String| Err(DeliveryError::Config { reason });
        match self {
            Self::Local { dir } if dir.as_os_str().is_empty() => {
                bad("archive.dir is empty (call with_data_dir to default it)".into())
            }
            Self::Local { .. } => Ok(()),
            Self::S3 {
                endpoint,
                bucket,
                region,
                access_key,
                secret_key,
                prefix,
                part_size,
            } => {
                if !endpoint.starts_with("http://") {
                    return bad(format!(
                        "archive.endpoint {endpoint:?} must be an http:// URL (no TLS client is built in)"
                    ));
                }
                let bucket_ok = (3..=63).contains(&bucket.len())
                    && bucket.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b"-.".contains(&b)
                    });
                if !bucket_ok {
                    return bad(format!(
                        "archive.bucket {bucket:?} is not a valid bucket name"
                    ));
                }
                if region.is_empty() || access_key.is_empty() || secret_key.is_empty() {
                    return bad("archive.region, access_key and secret_key must be set".into());
                }
                if prefix.starts_with('/') || prefix.ends_with('/') || prefix.contains("//") {
                    return bad(format!(
                        "archive.prefix {prefix:?} must not start or end with /"
                    ));
                }
                if *part_size < MIN_PART_SIZE {
                    return bad(format!("archive.part_size {part_size} is below 5 MiB"));
                }
                Ok(())
            }
        }
    }
}

/// Delivery of finished lessons: the archive, the gateway, retries, what to keep.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeliveryConfig {
    /// Where lessons are stored. Default: the local directory `<data_dir>/archive`.
    pub archive: ArchiveConfig,
    /// The gateway's base URL, e.g. `http://10.0.0.2:8080`; lessons are registered at
    /// `{gateway_url}/api/lessons`. Required.
    pub gateway_url: String,
    /// Bearer token the gateway accepts from this recorder. Required.
    pub gateway_token: String,
    /// First wait before retrying the gateway or a transient archive failure. Default 1 s.
    #[serde(with = "secs")]
    pub retry_initial: Duration,
    /// The longest wait between retries (the backoff doubles up to it). Default 60 s.
    #[serde(with = "secs")]
    pub retry_max: Duration,
    /// Keep the lesson's local media after delivery. Default true; with false the media files
    /// (never the manifest) are removed once the lesson is `DELIVERED`.
    pub keep_local: bool,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self {
            archive: ArchiveConfig::default(),
            gateway_url: String::new(),
            gateway_token: String::new(),
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
            keep_local: true,
        }
    }
}

impl DeliveryConfig {
    /// Fills an empty local archive directory with `<data_dir>/archive`.
    pub fn with_data_dir(mut self, data_dir: &Path) -> Self {
        if let ArchiveConfig::Local { dir } = &mut self.archive
            && dir.as_os_str().is_empty()
        {
            *dir = data_dir.join("archive");
        }
        self
    }

    /// Checks every value.
    pub fn validate(&self) -> Result<(), DeliveryError> {
        let bad = |reason: &str| {
            Err(DeliveryError::Config {
                reason: reason.to_owned(),
            })
        };
        self.archive.validate()?;
        if !self.gateway_url.starts_with("http://") {
            return bad("gateway_url must be an http:// URL (no TLS client is built in)");
        }
        if self.gateway_token.is_empty() {
            return bad("gateway_token is empty");
        }
        if self.retry_initial.is_zero() || self.retry_max < self.retry_initial {
            return bad("retry_initial must be > 0 and retry_max ≥ retry_initial");
        }
        Ok(())
    }
}

/// Durations as (fractional) seconds in the config file.
mod secs {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_need_a_data_dir_and_a_gateway() {
        let config = DeliveryConfig::default();
        assert!(config.validate().is_err(), "empty archive dir");
        let config = DeliveryConfig {
            gateway_url: "http://127.0.0.1:8080".into(),
            gateway_token: "t".into(),
            ..DeliveryConfig::default()
        }
        .with_data_dir(Path::new("/var/lib/duet"));
        config.validate().unwrap();
        assert_eq!(
            config.archive,
            ArchiveConfig::Local {
                dir: "/var/lib/duet/archive".into()
            }
        );
        assert!(config.keep_local);
        assert_eq!(config.retry_max, Duration::from_secs(60));
    }

    #[test]
    fn toml_round_trips_and_s3_is_checked() {
        let text = r#"
            gateway_url = "http://gw:8080"
            gateway_token = "secret"
            retry_initial = 0.5
            keep_local = false
            [archive]
            kind = "s3"
            endpoint = "http://127.0.0.1:9000"
            bucket = "lessons"
            access_key = "a"
            secret_key = "b"
            prefix = "duet"
        "#;
        let config: DeliveryConfig = toml::from_str(text).unwrap();
        config.validate().unwrap();
        assert_eq!(config.retry_initial, Duration::from_millis(500));
        let ArchiveConfig::S3 {
            region, part_size, ..
        } = &config.archive
        else {
            panic!("s3 expected");
        };
        assert_eq!((region.as_str(), *part_size), ("us-east-1", 64 << 20));
        let again: DeliveryConfig = toml::from_str(&toml::to_string(&config).unwrap()).unwrap();
        assert_eq!(again, config);

        let mut bad = config.clone();
        if let ArchiveConfig::S3 { bucket, .. } = &mut bad.archive {
            *bucket = "No_Such/Bucket".into();
        }
        assert!(bad.validate().is_err());
        assert!(toml::from_str::<DeliveryConfig>("unknown = 1").is_err());
    }
}
