//! [`Archive`]: where delivered files are stored, a local directory or an S3 bucket, under
//! `<prefix>/<classroom_id>/<date>/<lesson_id>/<name>`.
//!
//! Storing is resumable and verified:
//! - Local: the file is copied to `<dest>.part`; an existing `.part` whose bytes match the
//!   source's prefix (SHA-256) is continued from its length, any other is restarted. Then fsync,
//!   rename, fsync of the directories, and a read-back check of size and SHA-256.
//! - S3: one signed `PUT` per file up to `part_size`; above that a multipart upload whose parts
//!   are checkpointed (the caller persists them), so a restart sends only the missing parts.
//!   Then a `HEAD` checks size and the SHA-256 carried as metadata.
//! - Either way, a file already present with the right size and SHA-256 is not sent again.

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use sha2::{Digest, Sha256};

use super::config::ArchiveConfig;
use super::gateway::lesson_date;
use super::package::{hash_reader, safe_component, sha256_file};
use super::s3::{MultipartProgress, S3Client, S3Error};
use super::{DeliveryError, DeliveryState};
use crate::manifest::{LessonManifest, sync_dir};

/// Copy block size for local stores; the stop flag is checked between blocks.
const COPY_BLOCK: usize = 1 << 20;

/// An archive, opened from its config.
#[derive(Debug)]
pub enum Archive {
    /// A local directory.
    Local {
        /// The archive's root.
        dir: PathBuf,
    },
    /// An S3 bucket.
    S3 {
        /// The bucket's client.
        client: S3Client,
        /// Key prefix (no trailing `/`), maybe empty.
        prefix: String,
        /// Multipart threshold and part size.
        part_size: u64,
        /// For URIs.
        bucket: String,
    },
}

/// What one store did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StoreOutcome {
    /// The file was already in the archive, verified; nothing was sent.
    pub already_present: bool,
    /// Bytes kept from an earlier, interrupted attempt (a `.part` file or multipart parts).
    pub resumed_from: u64,
    /// Bytes sent in this call.
    pub sent: u64,
}

/// One file to store.
#[derive(Clone, Copy, Debug)]
pub struct StoreRequest<'a> {
    /// The local file.
    pub src: &'a Path,
    /// Its key below the archive root, e.g. `cls/2026-12-01/les_…/programme-1.mp4`.
    pub key: &'a str,
    /// Its size, as packaged.
    pub bytes: u64,
    /// Its SHA-256 (hex), as packaged.
    pub sha256: &'a str,
}

impl Archive {
    /// Opens the archive (creating a local root if missing). Call `config.validate()` first.
    pub fn open(config: &ArchiveConfig) -> Result<Self, DeliveryError> {
        Ok(match config {
            ArchiveConfig::Local { dir } => {
                fs::create_dir_all(dir).map_err(DeliveryError::io(dir))?;
                let dir = std::path::absolute(dir).map_err(DeliveryError::io(dir))?;
                Self::Local { dir }
            }
            ArchiveConfig::S3 {
                endpoint,
                bucket,
                region,
                access_key,
                secret_key,
                prefix,
                part_size,
            } => Self::S3 {
                client: S3Client::new(endpoint, bucket, region, access_key, secret_key),
                prefix: prefix.clone(),
                part_size: *part_size,
                bucket: bucket.clone(),
            },
        })
    }

    /// The lesson's key prefix below the archive root: `<classroom_id>/<date>/<lesson_id>`.
    pub fn lesson_key(manifest: &LessonManifest) -> Result<String, DeliveryError> {
        let plan = &manifest.plan;
        let date = lesson_date(manifest);
        for part in [&plan.classroom_id, &date, &plan.id] {
            if !safe_component(part) {
                return Err(DeliveryError::Lesson {
                    lesson_id: plan.id.clone(),
                    reason: format!("{part:?} cannot be part of an archive key"),
                });
            }
        }
        Ok(format!("{}/{date}/{}", plan.classroom_id, plan.id))
    }

    /// Where a lesson's files are, as a URI ending in `/`.
    pub fn uri(&self, lesson_key: &str) -> String {
        match self {
            Self::Local { dir } => format!("file://{}/{lesson_key}/", dir.display()),
            Self::S3 { bucket, prefix, .. } => {
                format!("s3://{bucket}/{}/", self.full_key(prefix, lesson_key))
            }
        }
    }

    fn full_key(&self, prefix: &str, key: &str) -> String {
        if prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{prefix}/{key}")
        }
    }

    /// Stores one file (see the module doc). `multipart` is the upload in progress for this
    /// file, if any; `checkpoint` is called with every change to it (`None` once finished) and
    /// must persist it. Returns [`DeliveryError::Stopped`] when `stop` is raised mid-file.
    pub fn store(
        &self,
        req: StoreRequest<'_>,
        multipart: Option<MultipartProgress>,
        checkpoint: &mut dyn FnMut(Option<&MultipartProgress>) -> Result<(), DeliveryError>,
        stop: &AtomicBool,
    ) -> Result<StoreOutcome, DeliveryError> {
        match self {
            Self::Local { dir } => store_local(dir, req, stop),
            Self::S3 {
                client,
                prefix,
                part_size,
                ..
            } => {
                let key = self.full_key(prefix, req.key);
                store_s3(client, &key, *part_size, req, multipart, checkpoint, stop)
            }
        }
    }
}

fn archive_error(key: &str, transient: bool) -> impl Fn(String) -> DeliveryError + '_ {
    move |reason| DeliveryError::Archive {
        key: key.to_owned(),
        reason,
        transient,
    }
}

/// The local store; see the module doc.
fn store_local(
    root: &Path,
    req: StoreRequest<'_>,
    stop: &AtomicBool,
) -> Result<StoreOutcome, DeliveryError> {
    let key = req.key;
    // I/O trouble in the archive (a full disk, an unmounted share) may pass; retry later.
    let io = |what: &str, e: std::io::Error| archive_error(key, true)(format!("{what}: {e}"));
    if !key.split('/').all(safe_component) {
        return Err(archive_error(key, false)("unsafe key".into()));
    }
    let dest = root.join(key);
    let dir = dest.parent().expect("a key has at least one component");
    fs::create_dir_all(dir).map_err(|e| io("creating the directory", e))?;
    if dest.exists()
        && let Ok((bytes, sha)) = sha256_file(&dest)
        && bytes == req.bytes
        && sha == req.sha256
    {
        return Ok(StoreOutcome {
            already_present: true,
            ..StoreOutcome::default()
        });
    }

    let part_path = PathBuf::from(format!("{}.part", dest.display()));
    let mut src = fs::File::open(req.src).map_err(DeliveryError::io(req.src))?;
    let mut hasher = Sha256::new();
    let resumed_from = match fs::metadata(&part_path) {
        Ok(meta) if meta.len() > 0 && meta.len() <= req.bytes => {
            let len = meta.len();
            let mut prefix = Sha256::new();
            hash_reader(&mut src, &mut prefix, len).map_err(DeliveryError::io(req.src))?;
            let (_, part_sha) = sha256_file(&part_path)?;
            if hex::encode(prefix.clone().finalize()) == part_sha {
                hasher = prefix;
                len
            } else {
                tracing::info!(
                    key,
                    len,
                    "archive: partial file does not match, copying again"
                );
                src.seek(SeekFrom::Start(0))
                    .map_err(DeliveryError::io(req.src))?;
                0
            }
        }
        _ => 0,
    };
    let mut part = if resumed_from > 0 {
        tracing::info!(key, resumed_from, "archive: resuming a partial copy");
        fs::OpenOptions::new().append(true).open(&part_path)
    } else {
        fs::File::create(&part_path)
    }
    .map_err(|e| io("opening the partial file", e))?;

    let mut buf = vec![0u8; COPY_BLOCK];
    let mut total = resumed_from;
    loop {
        if stop.load(Ordering::Relaxed) {
            let _ = part.sync_all(); // keep what is there for the next attempt
            return Err(DeliveryError::Stopped);
        }
        let n = src.read(&mut buf).map_err(DeliveryError::io(req.src))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        part.write_all(&buf[..n])
            .map_err(|e| io("writing the partial file", e))?;
        total += n as u64;
    }
    part.sync_all().map_err(|e| io("fsync", e))?;
    drop(part);
    let copied_sha = hex::encode(hasher.finalize());
    if total != req.bytes || copied_sha != req.sha256 {
        let _ = fs::remove_file(&part_path);
        return Err(archive_error(key, false)(format!(
            "the local file {} changed since packaging ({total} bytes, sha256 {copied_sha}; \
             packaged {} bytes, {})",
            req.src.display(),
            req.bytes,
            req.sha256
        )));
    }
    fs::rename(&part_path, &dest).map_err(|e| io("renaming into place", e))?;
    // The rename, and any directory created for it, must survive a power loss.
    let mut synced = Some(dir);
    while let Some(d) = synced {
        sync_dir(d).map_err(|e| io("fsync of the directory", e))?;
        synced = d.parent().filter(|p| p.starts_with(root) && *p != d);
    }
    let (bytes, sha) = sha256_file(&dest)?;
    if bytes != req.bytes || sha != req.sha256 {
        let _ = fs::remove_file(&dest);
        return Err(archive_error(key, true)(format!(
            "read back {bytes} bytes with sha256 {sha}, expected {} and {}",
            req.bytes, req.sha256
        )));
    }
    Ok(StoreOutcome {
        already_present: false,
        resumed_from,
        sent: req.bytes - resumed_from,
    })
}

/// The S3 store; see the module doc.
fn store_s3(
    client: &S3Client,
    key: &str,
    part_size: u64,
    req: StoreRequest<'_>,
    multipart: Option<MultipartProgress>,
    checkpoint: &mut dyn FnMut(Option<&MultipartProgress>) -> Result<(), DeliveryError>,
    stop: &AtomicBool,
) -> Result<StoreOutcome, DeliveryError> {
    let s3 = |e: S3Error| archive_error(key, e.is_transient())(e.reason);
    let verify = |outcome: StoreOutcome| match client.head(key).map_err(s3)? {
        Some((bytes, Some(sha))) if bytes == req.bytes && sha == req.sha256 => Ok(outcome),
        found => Err(archive_error(key, true)(format!(
            "after upload the object is {found:?}, expected {} bytes with sha256 {}",
            req.bytes, req.sha256
        ))),
    };
    if multipart.is_none()
        && let Some((bytes, Some(sha))) = client.head(key).map_err(s3)?
        && bytes == req.bytes
        && sha == req.sha256
    {
        return Ok(StoreOutcome {
            already_present: true,
            ..StoreOutcome::default()
        });
    }
    // The parts are read from the file one by one: check first that it is what was packaged.
    let (bytes, sha) = sha256_file(req.src)?;
    if bytes != req.bytes || sha != req.sha256 {
        return Err(archive_error(key, false)(format!(
            "the local file {} changed since packaging",
            req.src.display()
        )));
    }
    if req.bytes <= part_size {
        let body = fs::read(req.src).map_err(DeliveryError::io(req.src))?;
        client.put(key, &body, req.sha256).map_err(s3)?;
        return verify(StoreOutcome {
            sent: req.bytes,
            ..StoreOutcome::default()
        });
    }

    let mut progress = match multipart {
        Some(p) if p.part_size == part_size => p,
        _ => {
            let upload_id = client.create_multipart(key, req.sha256).map_err(s3)?;
            let p = MultipartProgress {
                upload_id,
                part_size,
                parts: Vec::new(),
            };
            checkpoint(Some(&p))?;
            p
        }
    };
    let count = u32::try_from(req.bytes.div_ceil(part_size))
        .map_err(|_| archive_error(key, false)(format!("{} bytes is too many parts", req.bytes)))?;
    let resumed_from = progress.parts.len() as u64 * part_size;
    let mut src = fs::File::open(req.src).map_err(DeliveryError::io(req.src))?;
    let mut sent = 0u64;
    for number in 1..=count {
        if progress.parts.iter().any(|(n, _)| *n == number) {
            continue;
        }
        if stop.load(Ordering::Relaxed) {
            return Err(DeliveryError::Stopped);
        }
        let offset = u64::from(number - 1) * part_size;
        let len = part_size.min(req.bytes - offset);
        let mut body = vec![0u8; usize::try_from(len).expect("a part fits in memory")];
        src.seek(SeekFrom::Start(offset))
            .and_then(|_| src.read_exact(&mut body))
            .map_err(DeliveryError::io(req.src))?;
        let etag = match client.upload_part(key, &progress.upload_id, number, &body) {
            Ok(etag) => etag,
            Err(e) if e.status == Some(404) => {
                // The upload expired or was aborted: start over on the next attempt.
                checkpoint(None)?;
                return Err(archive_error(key, true)(e.reason));
            }
            Err(e) => return Err(s3(e)),
        };
        progress.parts.push((number, etag));
        progress.parts.sort();
        checkpoint(Some(&progress))?;
        sent += len;
    }
    match client.complete_multipart(key, &progress.upload_id, &progress.parts) {
        Ok(()) => {}
        Err(e) if e.status == Some(404) => {
            checkpoint(None)?;
            return Err(archive_error(key, true)(e.reason));
        }
        Err(e) => return Err(s3(e)),
    }
    checkpoint(None)?;
    verify(StoreOutcome {
        already_present: false,
        resumed_from,
        sent,
    })
}

/// Stores every packaged file of a lesson not yet stored, persisting `state` after each.
pub(crate) fn store_all(
    archive: &Archive,
    lesson_dir: &Path,
    lesson_key: &str,
    state: &mut DeliveryState,
    stop: &AtomicBool,
) -> Result<(), DeliveryError> {
    let count = state.files.as_ref().map_or(0, Vec::len);
    for i in 0..count {
        let file = &state.files.as_ref().expect("packaged before storing")[i];
        if file.stored {
            continue;
        }
        let key = format!("{lesson_key}/{}", file.name);
        let src = lesson_dir.join(&file.local);
        let (bytes, sha256, name) = (file.bytes, file.sha256.clone(), file.name.clone());
        let multipart = state
            .multipart
            .as_ref()
            .filter(|(n, _)| *n == name)
            .map(|(_, p)| p.clone());
        let mut checkpoint = |p: Option<&MultipartProgress>| {
            state.multipart = p.map(|p| (name.clone(), p.clone()));
            state.save(lesson_dir)
        };
        let outcome = archive.store(
            StoreRequest {
                src: &src,
                key: &key,
                bytes,
                sha256: &sha256,
            },
            multipart,
            &mut checkpoint,
            stop,
        )?;
        tracing::info!(
            file = %name,
            bytes,
            already_present = outcome.already_present,
            resumed_from = outcome.resumed_from,
            "archive: stored"
        );
        state.files.as_mut().expect("packaged before storing")[i].stored = true;
        state.save(lesson_dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("duet-archive-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// 3 MiB + a bit of deterministic, non-repeating bytes.
    fn content() -> Vec<u8> {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        (0..3 * COPY_BLOCK + 12345)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn a_partial_copy_is_resumed_and_a_wrong_one_restarted() {
        let dir = scratch("resume");
        let data = content();
        let src = dir.join("src.bin");
        fs::write(&src, &data).unwrap();
        let (bytes, sha) = sha256_file(&src).unwrap();
        let archive = Archive::Local {
            dir: dir.join("archive"),
        };
        let key = "cls/2026-12-01/les/programme-1.mp4";
        let dest = dir.join("archive").join(key);
        fs::create_dir_all(dest.parent().unwrap()).unwrap();
        let part = PathBuf::from(format!("{}.part", dest.display()));
        let req = StoreRequest {
            src: &src,
            key,
            bytes,
            sha256: &sha,
        };
        let stop = AtomicBool::new(false);
        let mut no_checkpoint = |_: Option<&MultipartProgress>| Ok(());

        fs::write(&part, &data[..1_500_000]).unwrap();
        let outcome = archive.store(req, None, &mut no_checkpoint, &stop).unwrap();
        assert_eq!(outcome.resumed_from, 1_500_000);
        assert_eq!(outcome.sent, bytes - 1_500_000);
        assert_eq!(fs::read(&dest).unwrap(), data);
        assert!(!part.exists());

        // Stored and verified: not sent again.
        let outcome = archive.store(req, None, &mut no_checkpoint, &stop).unwrap();
        assert!(outcome.already_present);

        // A partial file that is not a prefix of the source is started over.
        fs::remove_file(&dest).unwrap();
        let mut wrong = data[..1_000_000].to_vec();
        wrong[500] ^= 0xff;
        fs::write(&part, &wrong).unwrap();
        let outcome = archive.store(req, None, &mut no_checkpoint, &stop).unwrap();
        assert_eq!((outcome.resumed_from, outcome.sent), (0, bytes));
        assert_eq!(fs::read(&dest).unwrap(), data);

        // Stopped mid-copy: nothing in place, the part file is kept.
        fs::remove_file(&dest).unwrap();
        stop.store(true, Ordering::Relaxed);
        let err = archive
            .store(req, None, &mut no_checkpoint, &stop)
            .unwrap_err();
        assert!(matches!(err, DeliveryError::Stopped), "{err}");
        assert!(!dest.exists());

        // A source that changed since packaging is refused and nothing lands in the archive.
        stop.store(false, Ordering::Relaxed);
        let other = StoreRequest {
            sha256: "00",
            ..req
        };
        let err = archive
            .store(other, None, &mut no_checkpoint, &stop)
            .unwrap_err();
        assert!(!err.is_transient(), "{err}");
        assert!(!dest.exists() && !part.exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn keys_leaving_the_archive_are_refused() {
        let dir = scratch("escape");
        let src = dir.join("src.bin");
        fs::write(&src, b"x").unwrap();
        let archive = Archive::Local {
            dir: dir.join("archive"),
        };
        let req = StoreRequest {
            src: &src,
            key: "cls/../../etc/x",
            bytes: 1,
            sha256: "",
        };
        let err = archive
            .store(req, None, &mut |_| Ok(()), &AtomicBool::new(false))
            .unwrap_err();
        assert!(matches!(err, DeliveryError::Archive { .. }), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
