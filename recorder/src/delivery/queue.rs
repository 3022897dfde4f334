//! The durable delivery queue: [`Delivery::start`] spawns one worker thread, owned by the
//! returned [`DeliveryHandle`], that delivers lessons one at a time.
//!
//! The queue itself is not persisted: the lesson directories are. On start every
//! `<recordings_root>/*/*/lesson.json` in phase `FINALIZED` is queued (oldest first), and each
//! lesson's `delivery.json` says how far it got. [`DeliveryHandle::enqueue`] adds a lesson as
//! soon as the recorder finalizes it.
//!
//! Failures: a transient one (gateway down, archive unreachable, a full disk) is retried with
//! exponential backoff from `retry_initial` to `retry_max`, forever, holding the queue (the other
//! lessons would meet the same gateway and archive). A permanent one (a damaged file, the
//! gateway refusing the lesson) fails that lesson only: it stays on disk as it was, is reported
//! in [`DeliveryStatus`], and the worker carries on; enqueueing it again (or a restart) retries.
//! [`DeliveryHandle::stop`] interrupts a backoff at once, a copy within one block and an upload
//! between parts; the file being remuxed, if any, is finished first.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::DeliveryError;
use super::archive::{Archive, store_all};
use super::config::DeliveryConfig;
use super::gateway::{self, LessonRegistration};
use super::package::{PACKAGE_DIR, package_lesson};
use super::state::DeliveryState;
use crate::manifest::{LessonManifest, LessonPhase, MANIFEST_FILE};

/// How many delivered lesson ids [`DeliveryStatus::delivered`] keeps.
const RECENT: usize = 256;

/// The delivery queue's entry point.
#[derive(Debug)]
pub struct Delivery;

/// A snapshot of the queue.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeliveryStatus {
    /// Lessons waiting (not counting the one being delivered).
    pub pending: usize,
    /// The lesson being delivered (its id), if any.
    pub delivering: Option<String>,
    /// The latest error not yet cleared by that lesson's delivery, with its lesson id.
    pub last_error: Option<String>,
    /// Lessons delivered since start, oldest first (the latest 256).
    pub delivered: Vec<String>,
    /// Lessons that failed permanently since start (they stay on disk until enqueued again).
    pub failed: Vec<String>,
}

/// The front of the running queue; stopping it (or dropping it) stops the worker.
#[derive(Debug)]
pub struct DeliveryHandle {
    /// Shared with the worker.
    shared: Arc<Shared>,
    /// The worker thread; taken by `stop`.
    worker: Option<JoinHandle<()>>,
}

/// What the handle and the worker share.
#[derive(Debug)]
struct Shared {
    /// The queue and what status reports.
    queue: Mutex<Queue>,
    /// Signalled on every change to `queue` and on stop.
    changed: Condvar,
    /// Raised by `stop`; checked between steps, blocks and in every wait.
    stop: AtomicBool,
}

#[derive(Debug, Default)]
struct Queue {
    /// Lesson directories waiting, in order.
    pending: VecDeque<PathBuf>,
    /// The directory and id of the lesson being delivered.
    delivering: Option<(PathBuf, String)>,
    /// (lesson id, message) of the latest error.
    last_error: Option<(String, String)>,
    /// Recently delivered ids.
    delivered: VecDeque<String>,
    /// Ids that failed permanently.
    failed: Vec<String>,
}

impl Delivery {
    /// Validates `config`, opens the archive, queues every `FINALIZED` lesson under
    /// `recordings_root`, and starts the worker.
    pub fn start(
        config: DeliveryConfig,
        recordings_root: PathBuf,
    ) -> Result<DeliveryHandle, DeliveryError> {
        config.validate()?;
        let archive = Archive::open(&config.archive)?;
        let pending = scan(&recordings_root);
        tracing::info!(
            root = %recordings_root.display(),
            pending = pending.len(),
            "delivery: started"
        );
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                pending: pending.into(),
                ..Queue::default()
            }),
            changed: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let worker = Worker {
            shared: Arc::clone(&shared),
            archive,
            agent: ureq::AgentBuilder::new()
                .timeout(gateway::REQUEST_TIMEOUT)
                .build(),
            config,
        };
        let thread = std::thread::Builder::new()
            .name("duet-delivery".into())
            .spawn(move || worker.run())
            .map_err(DeliveryError::io(&recordings_root))?;
        Ok(DeliveryHandle {
            shared,
            worker: Some(thread),
        })
    }
}

/// The `FINALIZED` lessons under `root`, oldest first. Unreadable manifests are logged, skipped.
fn scan(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let dirs = |dir: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.is_dir())
                    .collect()
            })
            .unwrap_or_default()
    };
    for classroom in dirs(root) {
        for lesson in dirs(&classroom) {
            if !lesson.join(MANIFEST_FILE).exists() {
                continue;
            }
            match LessonManifest::load(&lesson) {
                Ok(m) if m.phase == LessonPhase::Finalized => found.push((m.plan.start, lesson)),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "delivery: skipping an unreadable lesson"),
            }
        }
    }
    found.sort();
    found.into_iter().map(|(_, dir)| dir).collect()
}

impl DeliveryHandle {
    /// Queues a lesson directory (normally just finalized). A lesson already queued or being
    /// delivered is not queued twice; a failed one is tried again.
    pub fn enqueue(&self, lesson_dir: PathBuf) {
        let mut q = self.shared.lock();
        let busy = q.delivering.as_ref().is_some_and(|(d, _)| *d == lesson_dir);
        if !busy && !q.pending.contains(&lesson_dir) {
            q.pending.push_back(lesson_dir);
            self.shared.changed.notify_all();
        }
    }

    /// A snapshot of the queue.
    pub fn status(&self) -> DeliveryStatus {
        let q = self.shared.lock();
        DeliveryStatus {
            pending: q.pending.len(),
            delivering: q.delivering.as_ref().map(|(_, id)| id.clone()),
            last_error: q
                .last_error
                .as_ref()
                .map(|(id, e)| format!("lesson {id}: {e}")),
            delivered: q.delivered.iter().cloned().collect(),
            failed: q.failed.clone(),
        }
    }

    /// Waits until `lesson_id` is delivered (by this queue) or `timeout` passes; true if it was.
    pub fn wait_delivered(&self, lesson_id: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut q = self.shared.lock();
        loop {
            if q.delivered.iter().any(|id| id == lesson_id) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            q = self
                .shared
                .changed
                .wait_timeout(q, left)
                .expect("the delivery queue lock is never poisoned")
                .0;
        }
    }

    /// Stops the worker: a backoff ends at once, a copy within one block, an HTTP request within
    /// its timeout, a remux at the end of its file. What was done is persisted; the next start
    /// resumes.
    pub fn stop(mut self) {
        self.stop_worker();
    }

    fn stop_worker(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.changed.notify_all();
        if let Some(worker) = self.worker.take()
            && worker.join().is_err()
        {
            tracing::error!("delivery: the worker panicked");
        }
    }
}

impl Drop for DeliveryHandle {
    fn drop(&mut self) {
        self.stop_worker();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Nothing panics while holding the lock, so it is never poisoned.
        self.queue
            .lock()
            .expect("the delivery queue lock is never poisoned")
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Waits `d` unless stopped first; `Err(Stopped)` if stopped.
    fn sleep(&self, d: Duration) -> Result<(), DeliveryError> {
        let deadline = Instant::now() + d;
        let mut q = self.lock();
        while !self.stopped() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            q = self
                .changed
                .wait_timeout(q, left)
                .expect("the delivery queue lock is never poisoned")
                .0;
        }
        Err(DeliveryError::Stopped)
    }

    fn note_error(&self, lesson_id: &str, error: &DeliveryError) {
        self.lock().last_error = Some((lesson_id.to_owned(), error.to_string()));
        self.changed.notify_all();
    }
}

/// The worker thread's state.
struct Worker {
    shared: Arc<Shared>,
    archive: Archive,
    agent: ureq::Agent,
    config: DeliveryConfig,
}

impl Worker {
    fn run(self) {
        loop {
            let dir = {
                let mut q = self.shared.lock();
                loop {
                    if self.shared.stopped() {
                        return;
                    }
                    if let Some(dir) = q.pending.pop_front() {
                        let id = lesson_id_of(&dir);
                        q.delivering = Some((dir.clone(), id));
                        break dir;
                    }
                    q = self
                        .shared
                        .changed
                        .wait(q)
                        .expect("the delivery queue lock is never poisoned");
                }
            };
            let result = self.deliver_with_retries(&dir);
            let mut q = self.shared.lock();
            let id = q
                .delivering
                .take()
                .map_or_else(|| lesson_id_of(&dir), |(_, id)| id);
            match result {
                Ok(()) => {
                    q.failed.retain(|f| *f != id);
                    if q.last_error.as_ref().is_some_and(|(e, _)| *e == id) {
                        q.last_error = None;
                    }
                    q.delivered.retain(|d| *d != id);
                    q.delivered.push_back(id);
                    if q.delivered.len() > RECENT {
                        q.delivered.pop_front();
                    }
                }
                Err(DeliveryError::Stopped) => {}
                Err(e) => {
                    tracing::error!(lesson = %id, error = %e, "delivery: lesson failed");
                    if !q.failed.contains(&id) {
                        q.failed.push(id.clone());
                    }
                    q.last_error = Some((id, e.to_string()));
                }
            }
            self.shared.changed.notify_all();
        }
    }

    /// Delivers one lesson, retrying transient failures with backoff until done or stopped.
    fn deliver_with_retries(&self, dir: &Path) -> Result<(), DeliveryError> {
        let mut backoff = self.config.retry_initial;
        loop {
            match self.deliver(dir) {
                Err(e) if e.is_transient() && !matches!(e, DeliveryError::Stopped) => {
                    tracing::warn!(error = %e, retry_in = ?backoff, "delivery: will retry");
                    self.shared.note_error(&lesson_id_of(dir), &e);
                    self.shared.sleep(backoff)?;
                    backoff = (backoff * 2).min(self.config.retry_max);
                }
                other => return other,
            }
        }
    }

    /// One pass over one lesson, resuming from its `delivery.json`.
    fn deliver(&self, dir: &Path) -> Result<(), DeliveryError> {
        let mut manifest = LessonManifest::load(dir)?;
        let id = manifest.plan.id.clone();
        if let Some((_, delivering)) = self.shared.lock().delivering.as_mut() {
            delivering.clone_from(&id);
        }
        let span = tracing::info_span!(
            "delivery",
            lesson = %id,
            classroom = %manifest.plan.classroom_id
        );
        let _entered = span.enter();
        match manifest.phase {
            LessonPhase::Finalized => {}
            LessonPhase::Delivered => {
                tracing::info!("delivery: already delivered");
                return Ok(());
            }
            phase @ LessonPhase::Recording => return Err(DeliveryError::not_ready(&id, phase)),
        }

        let lesson_key = Archive::lesson_key(&manifest)?;
        let archive_uri = self.archive.uri(&lesson_key);
        let mut state = DeliveryState::load(dir)?.unwrap_or_default();
        state.lesson_id.clone_from(&id);
        if state.registered_at.is_none() && state.archive_uri.as_deref() != Some(&archive_uri) {
            // A new lesson, or the archive moved: what was stored elsewhere does not count.
            for file in state.files.iter_mut().flatten() {
                file.stored = false;
            }
            state.multipart = None;
            state.archive_uri = Some(archive_uri.clone());
            state.save(dir)?;
        }

        if state.files.is_none() {
            let started = Instant::now();
            let files = package_lesson(dir, &manifest)?;
            tracing::info!(files = files.len(), took = ?started.elapsed(), "delivery: packaged");
            state.files = Some(files);
            state.save(dir)?;
        }
        if self.shared.stopped() {
            return Err(DeliveryError::Stopped);
        }

        if state.registered_at.is_none() {
            store_all(
                &self.archive,
                dir,
                &lesson_key,
                &mut state,
                &self.shared.stop,
            )?;
            let files = state.files.as_deref().expect("packaged above");
            let registration = gateway::registration(&manifest, files, &archive_uri);
            self.register(&registration)?;
            state.registered_at = Some(chrono::Utc::now());
            state.save(dir)?;
            tracing::info!("delivery: the gateway confirmed the lesson");
        }

        manifest.phase = LessonPhase::Delivered;
        manifest.save(dir)?;
        tracing::info!(archive = %archive_uri, "delivery: delivered");
        if !self.config.keep_local {
            remove_local_media(dir, &manifest);
        }
        Ok(())
    }

    /// Registers until the gateway confirms (Ok), refuses (Err), or the queue stops.
    fn register(&self, registration: &LessonRegistration) -> Result<(), DeliveryError> {
        let mut backoff = self.config.retry_initial;
        loop {
            let unavailable = match gateway::register(
                &self.agent,
                &self.config.gateway_url,
                &self.config.gateway_token,
                registration,
            )? {
                Ok(()) => return Ok(()),
                Err(unavailable) => unavailable,
            };
            let wait = unavailable
                .retry_after
                .unwrap_or(backoff)
                .min(self.config.retry_max);
            let error = DeliveryError::GatewayUnavailable {
                lesson_id: registration.id.clone(),
                reason: unavailable.reason,
            };
            tracing::warn!(error = %error, retry_in = ?wait, "delivery: gateway not confirmed yet");
            self.shared.note_error(&registration.id, &error);
            self.shared.sleep(wait)?;
            backoff = (backoff * 2).min(self.config.retry_max);
        }
    }
}

/// The id a lesson directory is named by (`<classroom>/<lesson_id>`), until its manifest is read.
fn lesson_id_of(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Removes a `DELIVERED` lesson's media (recorded files and the package), keeping `lesson.json`
/// and `delivery.json` as the record of what was delivered. Failures are logged only: the
/// archive holds the lesson.
fn remove_local_media(dir: &Path, manifest: &LessonManifest) {
    debug_assert_eq!(manifest.phase, LessonPhase::Delivered);
    let remove = |path: &Path, result: std::io::Result<()>| match result {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            tracing::warn!(path = %path.display(), error = %e, "delivery: cannot remove local media");
        }
        _ => {}
    };
    for media in manifest.media() {
        let path = dir.join(&media.path);
        remove(&path, std::fs::remove_file(&path));
    }
    let package = dir.join(PACKAGE_DIR);
    remove(&package, std::fs::remove_dir_all(&package));
    for part in &manifest.parts {
        // Only if empty: anything else in it was not ours to delete.
        let _ = std::fs::remove_dir(dir.join(crate::manifest::PartRecord::dir_name(part.index)));
    }
    tracing::info!("delivery: local media removed (keep_local = false)");
}
