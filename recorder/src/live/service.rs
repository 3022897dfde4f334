//! The live-class recorder as a service: it asks the gateway which paired classes are live
//! (`GET /api/live/sessions`), joins each one as a hidden participant ([`super::client`]), and
//! when a class has been over for a while delivers it ([`super::finalize`]).
//!
//! State on disk, one directory per recorded class: `<data_dir>/live/<room>[.<n>]/` with
//! `session.json` ([`SessionRecord`]: the class, the lesson id, the phase), `participants.json`
//! and `tracks/*.rtp`. A recorder killed mid-class finds its directory on the next start: if the
//! class is still live it joins again and writes new parts into the same recording; if the class
//! ended meanwhile it delivers what it has. A class that ends and opens again the same day is a
//! new lesson (`<room>.2`, …).

use super::client::LiveClient;
use crate::delivery::archive::Archive;
use crate::delivery::config::ArchiveConfig;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How often recordings waiting for delivery (left by a killed run, or failed for a passing
/// reason) are tried again.
const RETRY_EVERY: Duration = Duration::from_secs(300);

/// A live class as the gateway lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveSession {
    /// The SFU room, `<series_id>-<date>`.
    pub room: String,
    /// The timetabled series.
    pub series_id: String,
    /// The school-local date, `YYYY-MM-DD`.
    pub date: String,
    /// The period, if the gateway says.
    #[serde(default)]
    pub period: Option<u8>,
    /// The lesson's title.
    pub title: String,
    /// The lead teacher's name.
    pub teacher: String,
    /// The subject.
    pub subject: String,
    /// The lead classroom (the lesson is filed under it).
    pub lead_classroom_id: String,
    /// The lead school.
    pub school_id: String,
    /// The pairing, whose schools may see the lesson.
    #[serde(default)]
    pub pairing_id: Option<String>,
    /// A join token for the recorder (not kept on disk).
    #[serde(default, skip_serializing)]
    pub token: String,
}

/// Where a recorded class stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// The class is live and being recorded (or was, when the recorder stopped).
    Recording,
    /// The class ended; post-processing and delivery run or are to be retried.
    Finalizing,
    /// In the archive and registered.
    Delivered,
    /// Delivery failed for good (the reason is kept); the dumps stay on disk.
    Failed,
}

/// `session.json`: one recorded class.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SessionRecord {
    /// The class.
    pub session: LiveSession,
    /// The lesson id it will be registered as.
    pub lesson_id: String,
    /// Where it stands.
    pub phase: Phase,
    /// Why delivery failed, when it did.
    #[serde(default)]
    pub error: Option<String>,
}

impl SessionRecord {
    fn path(dir: &Path) -> PathBuf {
        dir.join("session.json")
    }

    /// Reads a recording's record.
    pub fn load(dir: &Path) -> Option<SessionRecord> {
        let bytes = std::fs::read(Self::path(dir)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Writes it atomically.
    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join("session.json.tmp");
        std::fs::write(
            &tmp,
            serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?,
        )?;
        std::fs::rename(&tmp, Self::path(dir))
    }
}

/// The live recorder's configuration.
#[derive(Clone, Debug)]
pub struct LiveRecorderConfig {
    /// The gateway, `http://host:port`.
    pub gateway_url: String,
    /// A machine token that may list live sessions and register lessons.
    pub gateway_token: String,
    /// The SFU's signalling URL, `ws://host:port/sfu/ws`.
    pub sfu_ws_url: String,
    /// Where recordings are kept (`<data_dir>/live/…`).
    pub data_dir: PathBuf,
    /// Where lessons are delivered.
    pub archive: ArchiveConfig,
    /// How often the gateway is asked.
    pub poll: Duration,
    /// How long a class must be gone from the list before it counts as ended (a page reload
    /// or a short drop of everyone does not end the lesson).
    pub end_grace: Duration,
}

/// What the service is doing, for status and tests.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LiveStatus {
    /// Rooms being recorded.
    pub recording: Vec<String>,
    /// Lessons delivered since the start.
    pub delivered: Vec<String>,
    /// Lessons that failed, with why.
    pub failed: Vec<(String, String)>,
    /// The last error talking to the gateway.
    pub last_error: Option<String>,
}

/// The running service.
pub struct LiveRecorder {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    status: Arc<Mutex<LiveStatus>>,
}

impl LiveRecorder {
    /// Starts the service (on the current tokio runtime).
    pub fn start(config: LiveRecorderConfig) -> Result<LiveRecorder, String> {
        let archive = Archive::open(&config.archive).map_err(|e| e.to_string())?;
        std::fs::create_dir_all(config.data_dir.join("live"))
            .map_err(|e| format!("{}: {e}", config.data_dir.display()))?;
        let (stop, stop_rx) = watch::channel(false);
        let status = Arc::new(Mutex::new(LiveStatus::default()));
        let task = tokio::spawn(run(config, Arc::new(archive), stop_rx, status.clone()));
        Ok(LiveRecorder { stop, task, status })
    }

    /// What it is doing.
    pub fn status(&self) -> LiveStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Leaves every class (their recordings resume or are delivered at the next start) and
    /// waits for a delivery in progress.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

struct Active {
    client: LiveClient,
    token: watch::Sender<String>,
    dir: PathBuf,
    missing_since: Option<tokio::time::Instant>,
}

fn live_dir(config: &LiveRecorderConfig) -> PathBuf {
    config.data_dir.join("live")
}

/// A room name as a directory name (room names are ids and a date; anything odd becomes `_`).
fn dir_name(room: &str) -> String {
    room.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The recording directory for a live `session`: the one still recording it, or a new one.
fn recording_dir(config: &LiveRecorderConfig, room: &str) -> (PathBuf, Option<SessionRecord>, u32) {
    let base = dir_name(room);
    let mut n = 1u32;
    loop {
        let name = if n == 1 {
            base.clone()
        } else {
            format!("{base}.{n}")
        };
        let dir = live_dir(config).join(name);
        match SessionRecord::load(&dir) {
            Some(r) if r.phase == Phase::Recording => return (dir, Some(r), n),
            Some(_) => n += 1,
            // A directory whose record is unreadable is someone's recording: never reused.
            None if dir.exists() => {
                tracing::warn!(dir = %dir.display(), "a recording with an unreadable session.json; left alone");
                n += 1;
            }
            None => return (dir, None, n),
        }
    }
}

async fn run(
    config: LiveRecorderConfig,
    archive: Arc<Archive>,
    mut stop: watch::Receiver<bool>,
    status: Arc<Mutex<LiveStatus>>,
) {
    let mut active: HashMap<String, Active> = HashMap::new();
    let mut tick = tokio::time::interval(config.poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stop_flag = Arc::new(AtomicBool::new(false));
    let mut deliveries: Vec<(PathBuf, JoinHandle<()>)> = Vec::new();
    let mut first = true;
    let mut retry_at = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() { break; }
            }
        }
        let listed = match list_sessions(&config).await {
            Ok(l) => {
                if let Ok(mut s) = status.lock() {
                    s.last_error = None;
                }
                l
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot list live classes");
                if let Ok(mut s) = status.lock() {
                    s.last_error = Some(e);
                }
                continue;
            }
        };
        let now = tokio::time::Instant::now();
        for session in &listed {
            if let Some(a) = active.get_mut(&session.room) {
                a.missing_since = None;
                let _ = a.token.send(session.token.clone());
                continue;
            }
            let (dir, existing, n) = recording_dir(&config, &session.room);
            let record = match existing {
                Some(r) => {
                    tracing::info!(room = %session.room, "a recording left unfinished: resuming it");
                    r
                }
                None => SessionRecord {
                    session: session.clone(),
                    lesson_id: lesson_id(&session.room, n),
                    phase: Phase::Recording,
                    error: None,
                },
            };
            if let Err(e) = record.save(&dir) {
                tracing::error!(error = %e, dir = %dir.display(), "cannot record this class");
                continue;
            }
            let (token_tx, token_rx) = watch::channel(session.token.clone());
            let client = LiveClient::start(
                session.room.clone(),
                config.sfu_ws_url.clone(),
                token_rx,
                dir.clone(),
            );
            active.insert(
                session.room.clone(),
                Active {
                    client,
                    token: token_tx,
                    dir,
                    missing_since: None,
                },
            );
        }
        // Classes gone from the list for long enough have ended.
        let ended: Vec<String> = active
            .iter_mut()
            .filter(|(room, _)| !listed.iter().any(|s| &s.room == *room))
            .filter_map(|(room, a)| {
                let since = *a.missing_since.get_or_insert(now);
                (now.duration_since(since) >= config.end_grace).then(|| room.clone())
            })
            .collect();
        let mut to_deliver = Vec::new();
        for room in ended {
            if let Some(a) = active.remove(&room) {
                a.client.stop().await;
                // Marked before anything else can look at the directory: a class listed again
                // from now on gets a new recording, never this one.
                if let Some(mut record) = SessionRecord::load(&a.dir) {
                    record.phase = Phase::Finalizing;
                    if let Err(e) = record.save(&a.dir) {
                        tracing::error!(error = %e, "recording state not saved");
                    }
                }
                to_deliver.push(a.dir);
            }
        }
        // At the first look, and every few minutes after: recordings left by an earlier run
        // whose class has ended, and deliveries that failed for a passing reason.
        if first || retry_at <= now {
            retry_at = now + RETRY_EVERY;
            let busy: Vec<&PathBuf> = active.values().map(|a| &a.dir).collect();
            // A `recording` directory nobody records is an orphan only at the start: later it
            // may be a class in its grace period.
            to_deliver.extend(orphans(&config, &listed, &busy, first));
            first = false;
        }
        deliveries.retain(|(_, d)| !d.is_finished());
        for dir in to_deliver {
            if deliveries.iter().any(|(d, _)| *d == dir) {
                continue;
            }
            let task = spawn_delivery(
                &config,
                archive.clone(),
                dir.clone(),
                stop_flag.clone(),
                status.clone(),
            );
            deliveries.push((dir, task));
        }
        if let Ok(mut s) = status.lock() {
            s.recording = active.keys().cloned().collect();
            s.recording.sort();
        }
    }
    // Stopping: leave every class; the recordings stay `recording` and resume or are delivered
    // at the next start.
    for (_, a) in active.drain() {
        a.client.stop().await;
    }
    stop_flag.store(true, std::sync::atomic::Ordering::Relaxed);
    for (_, d) in deliveries {
        let _ = d.await;
    }
}

/// Recordings on disk waiting for delivery: `finalizing` ones, and with `at_start` also
/// `recording` ones whose class is not live now (the recorder was stopped or killed during the
/// class). Never a directory a client records into (`busy`).
fn orphans(
    config: &LiveRecorderConfig,
    listed: &[LiveSession],
    busy: &[&PathBuf],
    at_start: bool,
) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(live_dir(config)) else {
        return Vec::new();
    };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|dir| !busy.contains(&dir))
        .filter(|dir| {
            SessionRecord::load(dir).is_some_and(|r| match r.phase {
                Phase::Finalizing => true,
                Phase::Recording => at_start && !listed.iter().any(|s| s.room == r.session.room),
                Phase::Delivered | Phase::Failed => false,
            })
        })
        .collect()
}

/// `les_live_<room>` (the n-th class of the room that day gets `_<n>`).
fn lesson_id(room: &str, n: u32) -> String {
    let base = format!("les_live_{}", dir_name(room));
    if n == 1 { base } else { format!("{base}_{n}") }
}

fn spawn_delivery(
    config: &LiveRecorderConfig,
    archive: Arc<Archive>,
    dir: PathBuf,
    stop: Arc<AtomicBool>,
    status: Arc<Mutex<LiveStatus>>,
) -> JoinHandle<()> {
    let url = config.gateway_url.clone();
    let token = config.gateway_token.clone();
    tokio::task::spawn_blocking(move || {
        let Some(mut record) = SessionRecord::load(&dir) else {
            return;
        };
        if matches!(record.phase, Phase::Delivered | Phase::Failed) {
            return;
        }
        record.phase = Phase::Finalizing;
        let _ = record.save(&dir);
        match super::finalize::finalize(&dir, &record, &archive, &url, &token, &stop) {
            Ok(reg) => {
                record.phase = Phase::Delivered;
                record.error = None;
                if let Ok(mut s) = status.lock() {
                    s.delivered.push(reg.id);
                }
            }
            Err(e) => {
                tracing::error!(lesson = %record.lesson_id, error = %e, "live lesson not delivered");
                // Stopped mid-way or a passing failure (the gateway or the archive away): stays
                // `finalizing` and is tried again later. Anything else fails for good.
                if !stop.load(std::sync::atomic::Ordering::Relaxed) && !e.is_transient() {
                    record.phase = Phase::Failed;
                }
                record.error = Some(e.to_string());
                if let Ok(mut s) = status.lock() {
                    s.failed.push((record.lesson_id.clone(), e.to_string()));
                }
            }
        }
        if let Err(e) = record.save(&dir) {
            tracing::error!(error = %e, "recording state not saved");
        }
    })
}

async fn list_sessions(config: &LiveRecorderConfig) -> Result<Vec<LiveSession>, String> {
    let url = format!(
        "{}/api/live/sessions",
        config.gateway_url.trim_end_matches('/')
    );
    let auth = format!("Bearer {}", config.gateway_token);
    tokio::task::spawn_blocking(move || {
        let response = ureq::get(&url)
            .set("Authorization", &auth)
            .timeout(Duration::from_secs(10))
            .call()
            .map_err(|e| format!("{url}: {e}"))?;
        response
            .into_json::<Vec<LiveSession>>()
            .map_err(|e| format!("{url}: unreadable answer: {e}"))
    })
    .await
    .map_err(|e| e.to_string())?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lesson_ids_and_dirs_are_safe_and_distinct() {
        assert_eq!(
            lesson_id("ser_1-2026-12-01", 1),
            "les_live_ser_1-2026-12-01"
        );
        assert_eq!(
            lesson_id("ser_1-2026-12-01", 2),
            "les_live_ser_1-2026-12-01_2"
        );
        assert_eq!(dir_name("../x/y"), "___x_y");
    }
}
