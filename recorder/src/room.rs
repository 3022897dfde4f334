//! One recording classroom (录播教室) left to itself: it follows the timetable, records, and hands
//! finished lessons to delivery, with nobody pressing a button.
//!
//! Owns one thread per room ([`RoomHandle`]) that, every [`ROOM_TICK`] and on every command:
//! - refreshes the room's devices and timetable from the gateway every `schedule_refresh_s`,
//!   keeping the last good copy on disk (`<recorder_dir>/<classroom>/room.json`,
//!   `schedule.json`) so that the room records from the cache while the gateway is unreachable;
//! - decides which lesson is due ([`due_lesson`], pure: the timetabled period less the pre-roll
//!   to its end plus the post-roll; a manual recording or a lesson resumed after a restart comes
//!   first) and starts, extends or stops the [`LessonRunner`] to match;
//! - takes manual commands (start, stop, extend: idempotent where that makes sense: starting a
//!   recording room that records, or stopping one that does not, changes nothing) and director
//!   events;
//! - reports its status to the gateway every `report_interval_s` and on every change of state
//!   (best effort: a gateway that does not answer costs nothing but a log line).
//!
//! The latest lesson carries a [`RecordingState`]: `STARTING → RECORDING → FINALIZING →
//! UPLOADING → DONE`, or `FAILED` with a reason; the room is `IDLE` before its first lesson.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::capture::supervisor::SupervisorConfig;
use crate::delivery::DeliveryHandle;
use crate::director::{DirectorConfig, Event, Role};
use crate::gateway::{GatewayClassroom, GatewayClient, ScheduledLesson};
use crate::lesson::{self, LessonError, LessonRunner, RoomSpec, SourceSpec, SourceStatus};
use crate::manifest::{LessonManifest, LessonPhase, LessonPlan};
use crate::mixer::{MixerConfig, Previews};
use crate::state::RecordingState;

/// How often a room's thread looks at the clock when nothing else wakes it.
pub const ROOM_TICK: Duration = Duration::from_millis(250);

/// How long a lesson that failed to start waits before it is tried again.
const RETRY_FAILED_START: Duration = Duration::from_secs(30);

/// How a room follows its timetable.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoomConfig {
    /// Seconds recorded before the bell (default 60).
    pub pre_roll_s: u32,
    /// Seconds recorded after the end of the period (default 60).
    pub post_roll_s: u32,
    /// Seconds between two fetches of the devices and timetable (default 60).
    pub schedule_refresh_s: u32,
    /// Seconds between two status reports to the gateway (default 5).
    pub report_interval_s: u32,
    /// Minutes a manual recording lasts unless stopped or extended (default 45).
    pub manual_minutes: u32,
}

impl Default for RoomConfig {
    fn default() -> Self {
        Self {
            pre_roll_s: 60,
            post_roll_s: 60,
            schedule_refresh_s: 60,
            report_interval_s: 5,
            manual_minutes: 45,
        }
    }
}

impl RoomConfig {
    /// Refuses rolls over 30 minutes, a refresh or report interval of 0 or over an hour, and a
    /// manual length outside 1..=240 minutes.
    pub fn validate(&self) -> Result<(), RoomError> {
        let bad = |s: &str| Err(RoomError::Invalid(s.to_owned()));
        if self.pre_roll_s > 1800 || self.post_roll_s > 1800 {
            return bad("pre_roll_s and post_roll_s must be at most 1800");
        }
        if !(1..=3600).contains(&self.schedule_refresh_s)
            || !(1..=3600).contains(&self.report_interval_s)
        {
            return bad("schedule_refresh_s and report_interval_s must be 1..=3600");
        }
        if !(1..=240).contains(&self.manual_minutes) {
            return bad("manual_minutes must be 1..=240");
        }
        Ok(())
    }
}

/// What a room refuses, or cannot do.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RoomError {
    /// A command's value is out of range, or the config is.
    #[error("{0}")]
    Invalid(String),
    /// Extending needs a recording.
    #[error("nothing is being recorded")]
    NotRecording,
    /// The room has no usable devices (not fetched yet, none cached, or none that record).
    #[error("the room cannot record: {0}")]
    NoRoom(String),
    /// The room's thread is gone.
    #[error("the recording room has stopped")]
    Gone,
}

/// A manual command or an event for the room.
#[derive(Clone, Debug, PartialEq)]
pub enum RoomCommand {
    /// Start a manual recording of `minutes` (the config's default when `None`).
    Start {
        /// Its length.
        minutes: Option<u32>,
    },
    /// Stop what is being recorded (a timetabled lesson stopped by hand is not restarted).
    Stop,
    /// Record `minutes` longer than planned.
    Extend {
        /// How much longer.
        minutes: u32,
    },
    /// An event for the auto-director.
    Event(Event),
}

/// The lesson a status is about.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LessonSummary {
    /// Lesson id.
    pub id: String,
    /// Archive title.
    pub title: String,
    /// Teacher.
    pub teacher: String,
    /// Subject.
    pub subject: String,
    /// Planned start (with pre-roll).
    pub start: DateTime<Utc>,
    /// Planned end (with post-roll).
    pub end: DateTime<Utc>,
}

/// A room's status, as reported to the gateway (`PUT /api/classrooms/{id}/recorder-status`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoomStatus {
    /// The latest lesson's state, lower case (`idle`, `recording`, …).
    pub state: String,
    /// Why, when `failed`.
    pub reason: Option<String>,
    /// The latest lesson.
    pub lesson: Option<LessonSummary>,
    /// The sources of the running lesson (or the room's, idle).
    pub sources: Vec<SourceStatus>,
    /// The shot on air, while recording.
    pub shot: Option<String>,
    /// Whether the programme (movie mode) is being written, while recording.
    pub programme_recording: Option<bool>,
    /// Free bytes where recordings are written.
    pub free_disk_bytes: u64,
    /// Lessons waiting for (or in) delivery.
    pub pending_uploads: usize,
    /// The latest problem (gateway unreachable, a lesson that failed to start), for the admin.
    pub last_error: Option<String>,
}

/// Where a room keeps things and who it talks to.
#[derive(Clone, Debug)]
pub struct RoomContext {
    /// The classroom.
    pub classroom_id: String,
    /// Lessons go to `<recordings>/<classroom>/<lesson>/`.
    pub recordings: PathBuf,
    /// The room's caches: `<cache_dir>/room.json`, `schedule.json`.
    pub cache_dir: PathBuf,
    /// The gateway.
    pub gateway: GatewayClient,
    /// Timetable following.
    pub config: RoomConfig,
    /// Directing rules.
    pub director: DirectorConfig,
    /// Programme settings.
    pub mixer: MixerConfig,
    /// Source retries.
    pub supervisor: SupervisorConfig,
}

type Reply = Sender<Result<RoomStatus, RoomError>>;

/// The front of a room's thread; dropping it (or [`RoomHandle::stop`]) stops the room, finishing
/// a running part without finalizing the lesson (it resumes at the next start if still due).
#[derive(Debug)]
pub struct RoomHandle {
    /// The classroom.
    classroom_id: String,
    /// Commands with their reply channel; `None` asks the thread to stop.
    commands: Sender<Option<(RoomCommand, Reply)>>,
    /// The latest status, published by the thread.
    status: Arc<Mutex<RoomStatus>>,
    /// The running lesson's previews.
    previews: Arc<Mutex<Option<Previews>>>,
    /// The room's thread.
    thread: Option<JoinHandle<()>>,
}

impl RoomHandle {
    /// Starts following the room. Resumes a lesson a crash interrupted if it is still due, and
    /// finalizes (for delivery) those whose time is over.
    pub fn start(ctx: RoomContext, delivery: Arc<DeliveryHandle>) -> Result<Self, RoomError> {
        ctx.config.validate()?;
        std::fs::create_dir_all(&ctx.cache_dir)
            .map_err(|e| RoomError::Invalid(format!("{}: {e}", ctx.cache_dir.display())))?;
        let resumed = recover_interrupted(&ctx, &delivery);
        let status = Arc::new(Mutex::new(RoomStatus {
            state: "idle".into(),
            reason: None,
            lesson: None,
            sources: Vec::new(),
            shot: None,
            programme_recording: None,
            free_disk_bytes: free_disk(&ctx.recordings),
            pending_uploads: 0,
            last_error: None,
        }));
        let previews = Arc::new(Mutex::new(None));
        let (commands, receiver) = mpsc::channel();
        let span = tracing::info_span!("room", classroom = %ctx.classroom_id);
        let classroom_id = ctx.classroom_id.clone();
        let spec = load_cache::<GatewayClassroom>(&ctx.cache_dir.join("room.json"));
        let room = Room {
            idle_sources: idle_sources(spec.as_ref(), &ctx),
            spec,
            schedule: load_cache(&ctx.cache_dir.join("schedule.json")).unwrap_or_default(),
            ctx,
            delivery,
            refreshed: None,
            runner: None,
            lesson: None,
            manual: None,
            resumed,
            skip: BTreeSet::new(),
            failed_start: None,
            last_error: None,
            reported: None,
            status: Arc::clone(&status),
            previews: Arc::clone(&previews),
        };
        let thread = std::thread::Builder::new()
            .name("recording-room".into())
            .spawn(move || {
                let _entered = span.enter();
                room.run(receiver);
            })
            .expect("spawning a thread only fails when the process is out of resources");
        Ok(Self {
            classroom_id,
            commands,
            status,
            previews,
            thread: Some(thread),
        })
    }

    /// The classroom.
    pub fn classroom_id(&self) -> &str {
        &self.classroom_id
    }

    /// Runs a command; blocks until the room has acted (a start or stop takes seconds).
    pub fn command(&self, command: RoomCommand) -> Result<RoomStatus, RoomError> {
        let (tx, rx) = mpsc::channel();
        self.commands
            .send(Some((command, tx)))
            .map_err(|_| RoomError::Gone)?;
        rx.recv().map_err(|_| RoomError::Gone)?
    }

    /// The latest status.
    pub fn status(&self) -> RoomStatus {
        self.status.lock().expect("status lock poisoned").clone()
    }

    /// The latest preview of a source or of the programme, while recording.
    pub fn preview(&self, key: &str) -> Option<Vec<u8>> {
        let previews = self.previews.lock().expect("preview lock poisoned");
        previews.as_ref()?.get(key)
    }

    /// Stops the room: a running part is closed (EOS) but its lesson stays open, to be resumed by
    /// the next start while it is due, or finalized then.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let _ = self.commands.send(None);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for RoomHandle {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// The room's thread state.
struct Room {
    ctx: RoomContext,
    delivery: Arc<DeliveryHandle>,
    /// The classroom and its devices, from the gateway or the cache.
    spec: Option<GatewayClassroom>,
    /// The timetable around today, from the gateway or the cache.
    schedule: Vec<ScheduledLesson>,
    /// The room's sources as the status shows them while nothing records (from `spec`).
    idle_sources: Vec<SourceStatus>,
    /// When the gateway last answered the refresh (or was last tried).
    refreshed: Option<Instant>,
    /// The lesson being recorded.
    runner: Option<LessonRunner>,
    /// The latest lesson and its state.
    lesson: Option<(LessonPlan, RecordingState)>,
    /// A manual recording (or a timetabled one extended by hand), first in line.
    manual: Option<LessonPlan>,
    /// A lesson cut off by a restart, to resume while due.
    resumed: Option<LessonPlan>,
    /// Timetabled lessons stopped by hand (or already finalized): not started again.
    skip: BTreeSet<String>,
    /// A lesson that failed to start, and when.
    failed_start: Option<(String, Instant)>,
    /// The latest problem, for the admin page.
    last_error: Option<String>,
    /// When the status was last reported, and the state then.
    reported: Option<(Instant, String)>,
    status: Arc<Mutex<RoomStatus>>,
    previews: Arc<Mutex<Option<Previews>>>,
}

impl Room {
    fn run(mut self, commands: Receiver<Option<(RoomCommand, Reply)>>) {
        loop {
            match commands.recv_timeout(ROOM_TICK) {
                Ok(Some((command, reply))) => {
                    let result = self.handle(command);
                    self.publish();
                    let _ = reply.send(result.map(|()| self.status()));
                }
                Ok(None) | Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {}
            }
            self.refresh();
            self.reconcile(Utc::now());
            self.follow_delivery();
            self.publish();
        }
        if let Some(runner) = self.runner.take() {
            // The lesson stays RECORDING: the next start resumes or finalizes it.
            if let Err(err) = runner.stop(false) {
                tracing::error!(%err, "closing the running part at shutdown failed");
            }
        }
        tracing::info!("room stopped");
    }

    fn handle(&mut self, command: RoomCommand) -> Result<(), RoomError> {
        let now = Utc::now();
        match command {
            RoomCommand::Start { minutes } => {
                let minutes = minutes.unwrap_or(self.ctx.config.manual_minutes);
                if !(1..=240).contains(&minutes) {
                    return Err(RoomError::Invalid("minutes must be 1..=240".into()));
                }
                if self.runner.is_some() {
                    return Ok(()); // Already recording: nothing to do.
                }
                let plan = LessonPlan {
                    id: safe_id(&format!(
                        "les_{}_manual_{}",
                        self.ctx.classroom_id,
                        now.timestamp()
                    )),
                    classroom_id: self.ctx.classroom_id.clone(),
                    series_id: None,
                    date: Some(now.format("%Y-%m-%d").to_string()),
                    period: None,
                    title: "手动录制 Manual recording".into(),
                    teacher: String::new(),
                    subject: String::new(),
                    start: now,
                    end: now + chrono::Duration::minutes(i64::from(minutes)),
                };
                tracing::info!(lesson = %plan.id, minutes, "manual start");
                self.manual = Some(plan);
                self.reconcile(now);
                if self.runner.is_some() {
                    return Ok(());
                }
                // Refused now: not to start by itself later, when nobody expects it.
                self.manual = None;
                Err(RoomError::NoRoom(
                    self.last_error
                        .clone()
                        .unwrap_or_else(|| "no devices".into()),
                ))
            }
            RoomCommand::Stop => {
                if let Some(runner) = &self.runner {
                    let id = runner.plan().id.clone();
                    tracing::info!(lesson = %id, "manual stop");
                    self.skip.insert(id);
                }
                self.manual = None;
                self.resumed = None;
                self.reconcile(now);
                Ok(())
            }
            RoomCommand::Extend { minutes } => {
                if !(1..=240).contains(&minutes) {
                    return Err(RoomError::Invalid("minutes must be 1..=240".into()));
                }
                let Some(runner) = &mut self.runner else {
                    return Err(RoomError::NotRecording);
                };
                let mut plan = runner.plan().clone();
                plan.end = plan.end.max(now) + chrono::Duration::minutes(i64::from(minutes));
                tracing::info!(lesson = %plan.id, end = %plan.end, "extended");
                if let Err(err) = runner.set_end(plan.end) {
                    tracing::warn!(%err, "extended end not saved");
                }
                if let Some((current, _)) = &mut self.lesson {
                    current.end = plan.end;
                }
                // A manual plan outranks the timetable: the lesson now ends when extended.
                self.manual = Some(plan);
                Ok(())
            }
            RoomCommand::Event(event) => match &self.runner {
                Some(runner) if runner.event(event) => Ok(()),
                Some(_) => Err(RoomError::Invalid(
                    "source losses come from the cameras, not from the API".into(),
                )),
                None => Err(RoomError::NotRecording),
            },
        }
    }

    /// Fetches devices and timetable when due; keeps the cache on failure.
    fn refresh(&mut self) {
        let every = Duration::from_secs(u64::from(self.ctx.config.schedule_refresh_s));
        if self.refreshed.is_some_and(|at| at.elapsed() < every) {
            return;
        }
        self.refreshed = Some(Instant::now());
        let today = Utc::now().date_naive();
        let fetched = self
            .ctx
            .gateway
            .classroom(&self.ctx.classroom_id)
            .and_then(|room| {
                let schedule = self.ctx.gateway.timetable(
                    &self.ctx.classroom_id,
                    today - chrono::Duration::days(1),
                    today + chrono::Duration::days(1),
                )?;
                Ok((room, schedule))
            });
        match fetched {
            Ok((room, schedule)) => {
                save_cache(&self.ctx.cache_dir.join("room.json"), &room);
                save_cache(&self.ctx.cache_dir.join("schedule.json"), &schedule);
                if self.schedule != schedule {
                    tracing::info!(lessons = schedule.len(), "timetable refreshed");
                }
                self.idle_sources = idle_sources(Some(&room), &self.ctx);
                self.spec = Some(room);
                self.schedule = schedule;
                if self
                    .last_error
                    .as_deref()
                    .is_some_and(|e| e.starts_with("gateway"))
                {
                    self.last_error = None;
                }
            }
            Err(err) => {
                tracing::warn!(%err, cached = self.schedule.len(), "timetable not refreshed; recording from the cache");
                self.last_error = Some(err.to_string());
            }
        }
    }

    /// Starts, extends or stops the runner so that it records what is due at `now`.
    fn reconcile(&mut self, now: DateTime<Utc>) {
        let still = |p: &Option<LessonPlan>| p.clone().filter(|p| p.end > now);
        self.manual = still(&self.manual);
        self.resumed = still(&self.resumed);
        let wanted = self.manual.clone().or(self.resumed.clone()).or_else(|| {
            due_lesson(
                &self.schedule,
                &self.ctx.classroom_id,
                now,
                &self.ctx.config,
                &self.skip,
            )
        });
        let running = self.runner.as_ref().map(|r| r.plan().id.clone());
        match (running, wanted) {
            (Some(id), Some(w)) if id == w.id => {
                let runner = self.runner.as_mut().expect("running");
                if runner.plan().end != w.end {
                    tracing::info!(end = %w.end, "lesson end moved");
                    if let Err(err) = runner.set_end(w.end) {
                        tracing::warn!(%err, "moved end not saved");
                    }
                    if let Some((plan, _)) = &mut self.lesson {
                        plan.end = w.end;
                    }
                }
            }
            (Some(_), wanted) => {
                self.finish_lesson();
                if let Some(w) = wanted {
                    self.start_lesson(w);
                }
            }
            (None, Some(w)) => self.start_lesson(w),
            (None, None) => {}
        }
    }

    fn start_lesson(&mut self, plan: LessonPlan) {
        if self
            .failed_start
            .as_ref()
            .is_some_and(|(id, at)| *id == plan.id && at.elapsed() < RETRY_FAILED_START)
        {
            return;
        }
        let mut state = RecordingState::Idle;
        let _ = state.advance(RecordingState::Starting);
        self.lesson = Some((plan.clone(), state));
        self.publish();
        let spec = match &self.spec {
            Some(room) => room_spec(room, &self.ctx),
            None => Err(LessonError::Config(
                "the room's devices are unknown (gateway unreachable, nothing cached)".into(),
            )),
        };
        let dir = lesson::lesson_dir(&self.ctx.recordings, &self.ctx.classroom_id, &plan.id);
        match spec.and_then(|spec| LessonRunner::start(&spec, plan.clone(), &dir)) {
            Ok(runner) => {
                *self.previews.lock().expect("preview lock poisoned") = Some(runner.preview_map());
                self.runner = Some(runner);
                self.set_state(RecordingState::Recording);
                self.failed_start = None;
            }
            Err(LessonError::Finalized(id)) => {
                tracing::info!(lesson = %id, "already recorded and finalized; not again");
                self.skip.insert(id);
                self.lesson = None;
            }
            Err(err) => {
                tracing::error!(%err, lesson = %plan.id, "lesson did not start");
                self.last_error = Some(err.to_string());
                self.failed_start = Some((plan.id.clone(), Instant::now()));
                self.set_state(RecordingState::Failed {
                    reason: err.to_string(),
                });
            }
        }
    }

    fn finish_lesson(&mut self) {
        let Some(runner) = self.runner.take() else {
            return;
        };
        *self.previews.lock().expect("preview lock poisoned") = None;
        self.set_state(RecordingState::Finalizing);
        self.publish();
        let dir = runner.dir().to_owned();
        match runner.stop(true) {
            Ok(manifest) => {
                tracing::info!(lesson = %manifest.plan.id, parts = manifest.parts.len(), "lesson finalized; delivering");
                self.delivery.enqueue(dir);
                self.set_state(RecordingState::Uploading);
            }
            Err(err) => {
                tracing::error!(%err, "lesson not finalized; its files stay on disk");
                self.last_error = Some(err.to_string());
                self.set_state(RecordingState::Failed {
                    reason: err.to_string(),
                });
            }
        }
    }

    /// UPLOADING → DONE once delivery confirms the latest lesson (FAILED if it gave up).
    fn follow_delivery(&mut self) {
        let Some((plan, RecordingState::Uploading)) = &self.lesson else {
            return;
        };
        let id = plan.id.clone();
        let status = self.delivery.status();
        if status.delivered.contains(&id) {
            self.set_state(RecordingState::Done);
        } else if status.failed.contains(&id) {
            let reason = status
                .last_error
                .unwrap_or_else(|| "delivery failed".into());
            self.set_state(RecordingState::Failed { reason });
        }
    }

    fn set_state(&mut self, next: RecordingState) {
        if let Some((plan, state)) = &mut self.lesson {
            let from = state.token();
            match state.advance(next) {
                Ok(()) => tracing::info!(lesson = %plan.id, from, to = state.token(), "state"),
                Err(err) => tracing::error!(%err, "state change refused"),
            }
        }
    }

    fn status(&self) -> RoomStatus {
        let (state, reason, lesson) = match &self.lesson {
            None => ("idle".to_owned(), None, None),
            Some((plan, state)) => (
                state.token().to_ascii_lowercase(),
                match state {
                    RecordingState::Failed { reason } => Some(reason.clone()),
                    _ => None,
                },
                Some(LessonSummary {
                    id: plan.id.clone(),
                    title: plan.title.clone(),
                    teacher: plan.teacher.clone(),
                    subject: plan.subject.clone(),
                    start: plan.start,
                    end: plan.end,
                }),
            ),
        };
        let (sources, shot, programme_recording) = match &self.runner {
            Some(runner) => {
                let part = runner.status();
                (
                    part.sources,
                    Some(part.shot),
                    Some(part.programme_recording),
                )
            }
            None => (self.idle_sources.clone(), None, None),
        };
        let delivery = self.delivery.status();
        RoomStatus {
            state,
            reason,
            lesson,
            sources,
            shot,
            programme_recording,
            free_disk_bytes: free_disk(&self.ctx.recordings),
            pending_uploads: delivery.pending + usize::from(delivery.delivering.is_some()),
            last_error: self.last_error.clone(),
        }
    }

    /// Publishes the status and reports it to the gateway when due or changed.
    fn publish(&mut self) {
        let status = self.status();
        let every = Duration::from_secs(u64::from(self.ctx.config.report_interval_s));
        let due = self
            .reported
            .as_ref()
            .is_none_or(|(at, state)| at.elapsed() >= every || *state != status.state);
        if due {
            let json = serde_json::to_value(&status).expect("a status always serializes");
            if let Err(err) = self
                .ctx
                .gateway
                .report_status(&self.ctx.classroom_id, &json)
            {
                tracing::debug!(%err, "status not reported");
            }
            self.reported = Some((Instant::now(), status.state.clone()));
        }
        *self.status.lock().expect("status lock poisoned") = status;
    }
}

/// The lesson due at `now` in `schedule`: the one whose period, widened by the pre- and
/// post-roll, contains `now` (the earliest if two overlap), unless it is in `skip`. Pure.
pub fn due_lesson(
    schedule: &[ScheduledLesson],
    classroom_id: &str,
    now: DateTime<Utc>,
    config: &RoomConfig,
    skip: &BTreeSet<String>,
) -> Option<LessonPlan> {
    let pre = chrono::Duration::seconds(i64::from(config.pre_roll_s));
    let post = chrono::Duration::seconds(i64::from(config.post_roll_s));
    schedule
        .iter()
        .filter(|l| l.start - pre <= now && now < l.end + post)
        .map(|l| LessonPlan {
            id: safe_id(&format!("les_{classroom_id}_{}_{}", l.series_id, l.date)),
            classroom_id: classroom_id.to_owned(),
            series_id: Some(l.series_id.clone()),
            date: Some(l.date.to_string()),
            period: Some(l.period),
            title: format!("{} · {}", l.subject, l.teacher),
            teacher: l.teacher.clone(),
            subject: l.subject.clone(),
            start: l.start - pre,
            end: l.end + post,
        })
        .filter(|p| !skip.contains(&p.id))
        .min_by_key(|p| p.start)
}

/// `id` with anything but ASCII letters, digits, `-` and `_` replaced by `_` (it names a
/// directory).
fn safe_id(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The Chinese label of a role, for slates and the admin page.
fn role_label(role: Role) -> &'static str {
    match role {
        Role::TeacherCloseUp => "教师特写",
        Role::TeacherWide => "教师全景",
        Role::PupilsWide => "学生全景",
        Role::PupilCloseUp => "学生特写",
        Role::Blackboard => "板书",
        Role::Courseware => "课件",
    }
}

/// The recorder's view of a classroom's devices: cameras by position and the screen capture as
/// video sources, the first microphone as the programme's audio. Devices without a source URL,
/// or with a position the director does not know, are left out (logged).
pub fn room_spec(room: &GatewayClassroom, ctx: &RoomContext) -> Result<RoomSpec, LessonError> {
    let mut sources = Vec::new();
    let mut microphone = None;
    for d in &room.devices {
        if d.source.is_empty() {
            tracing::warn!(device = %d.id, "device without a source: left out");
            continue;
        }
        let role = match d.kind.as_str() {
            "camera" => d.position.as_deref().and_then(|p| {
                serde_json::from_value::<Role>(serde_json::Value::String(p.to_owned())).ok()
            }),
            "screen_capture" => Some(Role::Courseware),
            "microphone" => {
                if microphone.is_none() {
                    microphone = Some(SourceSpec {
                        id: d.id.clone(),
                        role: None,
                        label: d.label.clone().unwrap_or_else(|| "麦克风".into()),
                        url: d.source.clone(),
                    });
                }
                continue;
            }
            _ => None,
        };
        let Some(role) = role else {
            tracing::warn!(device = %d.id, kind = %d.kind, "device with no known role: left out");
            continue;
        };
        sources.push(SourceSpec {
            id: d.id.clone(),
            role: Some(role),
            label: d
                .label
                .clone()
                .unwrap_or_else(|| role_label(role).to_owned()),
            url: d.source.clone(),
        });
    }
    let spec = RoomSpec {
        classroom_id: ctx.classroom_id.clone(),
        sources,
        microphone,
        director: ctx.director.clone(),
        mixer: ctx.mixer.clone(),
        supervisor: ctx.supervisor,
    };
    spec.validate()?;
    Ok(spec)
}

/// The sources of `room` as an idle room's status lists them.
fn idle_sources(room: Option<&GatewayClassroom>, ctx: &RoomContext) -> Vec<SourceStatus> {
    let Some(spec) = room.and_then(|room| room_spec(room, ctx).ok()) else {
        return Vec::new();
    };
    spec.sources
        .iter()
        .chain(spec.microphone.iter())
        .map(|s| SourceStatus::of(s, "IDLE"))
        .collect()
}

/// Finalizes (for delivery) the room's lessons a crash left `RECORDING` whose time is over, and
/// returns the plan of one still due, to resume.
fn recover_interrupted(ctx: &RoomContext, delivery: &DeliveryHandle) -> Option<LessonPlan> {
    let room_dir = ctx.recordings.join(&ctx.classroom_id);
    let now = Utc::now();
    let mut resume = None;
    for entry in std::fs::read_dir(&room_dir).into_iter().flatten().flatten() {
        let dir = entry.path();
        let Ok(manifest) = LessonManifest::load(&dir) else {
            continue;
        };
        if manifest.phase != LessonPhase::Recording {
            continue;
        }
        if manifest.plan.end > now {
            tracing::warn!(lesson = %manifest.plan.id, "a lesson was cut off by a restart; resuming it");
            resume = Some(manifest.plan);
            continue;
        }
        match lesson::recover(&dir) {
            Ok(m) => {
                tracing::warn!(lesson = %m.plan.id, "a lesson cut off by a restart is over; delivering what was recorded");
                delivery.enqueue(dir);
            }
            Err(err) => {
                tracing::error!(%err, dir = %dir.display(), "cannot recover a cut-off lesson")
            }
        }
    }
    resume
}

fn load_cache<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    let bytes = std::fs::read(path).ok()?;
    match serde_json::from_slice(&bytes) {
        Ok(v) => Some(v),
        Err(err) => {
            tracing::warn!(%err, path = %path.display(), "cache unreadable: ignored");
            None
        }
    }
}

/// Writes a cache file atomically (a torn cache would be ignored, but a whole one is better).
fn save_cache<T: Serialize>(path: &Path, value: &T) {
    let tmp = path.with_extension("tmp");
    let json = serde_json::to_vec_pretty(value).expect("caches always serialize");
    let written = std::fs::write(&tmp, json).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(err) = written {
        tracing::warn!(%err, path = %path.display(), "cache not written");
    }
}

/// Free bytes on the file system holding `path` (0 if it cannot be read).
pub fn free_disk(path: &Path) -> u64 {
    let probe = path
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("/"));
    nix::sys::statvfs::statvfs(probe)
        .map(|s| s.blocks_available().saturating_mul(s.fragment_size()))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lesson(series: &str, start: &str, end: &str) -> ScheduledLesson {
        ScheduledLesson {
            series_id: series.into(),
            date: "2026-12-01".parse().unwrap(),
            period: 1,
            start: start.parse().unwrap(),
            end: end.parse().unwrap(),
            teacher: "李老师".into(),
            subject: "数学".into(),
        }
    }

    #[test]
    fn the_due_lesson_is_widened_by_the_rolls_and_skips_what_was_stopped() {
        let schedule = [
            lesson("ser_a", "2026-12-01T00:00:00Z", "2026-12-01T00:45:00Z"),
            lesson("ser b/..", "2026-12-01T00:55:00Z", "2026-12-01T01:40:00Z"),
        ];
        let config = RoomConfig::default();
        let at = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let none = BTreeSet::new();
        let due = |now: &str| due_lesson(&schedule, "cls", at(now), &config, &none);
        assert!(due("2026-11-30T23:58:59Z").is_none(), "before the pre-roll");
        let first = due("2026-11-30T23:59:00Z").expect("pre-roll starts a minute early");
        assert_eq!(first.id, "les_cls_ser_a_2026-12-01");
        assert_eq!(first.start, at("2026-11-30T23:59:00Z"));
        assert_eq!(first.end, at("2026-12-01T00:46:00Z"));
        assert_eq!(first.title, "数学 · 李老师");
        assert!(due("2026-12-01T00:46:00Z").is_none(), "after the post-roll");
        let second = due("2026-12-01T01:00:00Z").unwrap();
        assert_eq!(
            second.id, "les_cls_ser_b____2026-12-01",
            "ids are safe as directory names"
        );
        let skip: BTreeSet<String> = [first.id.clone()].into();
        assert!(
            due_lesson(&schedule, "cls", at("2026-12-01T00:10:00Z"), &config, &skip).is_none(),
            "a lesson stopped by hand is not started again"
        );
    }

    #[test]
    fn overlapping_rolls_pick_the_earlier_lesson() {
        let schedule = [
            lesson("later", "2026-12-01T00:46:00Z", "2026-12-01T01:30:00Z"),
            lesson("earlier", "2026-12-01T00:00:00Z", "2026-12-01T00:45:00Z"),
        ];
        let now = "2026-12-01T00:45:30Z".parse().unwrap();
        let due = due_lesson(
            &schedule,
            "c",
            now,
            &RoomConfig::default(),
            &BTreeSet::new(),
        );
        assert_eq!(due.unwrap().series_id.as_deref(), Some("earlier"));
    }

    #[test]
    fn config_limits() {
        assert!(RoomConfig::default().validate().is_ok());
        let c = RoomConfig {
            manual_minutes: 0,
            ..RoomConfig::default()
        };
        assert!(c.validate().is_err());
        let c = RoomConfig {
            schedule_refresh_s: 0,
            ..RoomConfig::default()
        };
        assert!(c.validate().is_err());
    }
}
