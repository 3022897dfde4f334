//! One lesson being recorded: both outputs at once, resource mode (every source to its own file,
//! through a [`SourceSupervisor`] each) and movie mode (the [`Mixer`]'s programme, cut by the
//! [`Director`]), written to a lesson directory described by its [`LessonManifest`].
//!
//! Owns, while a part runs, one control thread that owns the supervisors, the mixer and the
//! director. It wakes on commands (director events, stop) and every [`TICK`]: it feeds the
//! director the time and the sources' losses and returns, applies cuts to the mixer, puts the
//! slate over a lost source, and publishes the part's status. The director itself never reads the
//! clock; this shell does.
//!
//! Crash safety: the manifest naming the part and its files is written (atomically, fsynced)
//! before any pipeline starts, and every file is Matroska. A lesson found in `RECORDING` after a
//! restart is recovered by [`recover`]: the cut-off part's end is read from its files, and the
//! next [`LessonRunner::start`] of the same lesson adds a part after a whole-room gap.
//!
//! Every call here blocks (GStreamer state changes, EOS waits): from async code use
//! `spawn_blocking`.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::capture::supervisor::{SourceSupervisor, SupervisorConfig, SupervisorState};
use crate::capture::{CaptureError, Feed, MediaKind, SourceOptions, scan_duration};
use crate::director::{Director, DirectorConfig, DirectorError, Event, Role, SourceId, SourceMap};
use crate::manifest::{
    CutRecord, GapRecord, LessonManifest, LessonPhase, LessonPlan, ManifestError, PartRecord,
    RecordedMedia, SourceInfo,
};
use crate::mixer::{Mixer, MixerConfig, MixerInput, Previews};

/// How often the control thread looks at the sources and the director's timers.
pub const TICK: Duration = Duration::from_millis(200);

/// How long a programme may go without its first frame before its mixer is started again.
const PROGRAMME_STALL: Duration = Duration::from_secs(20);

/// The programme file of a part.
const PROGRAMME_FILE: &str = "programme.mkv";

/// A video or audio source of a recording classroom.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SourceSpec {
    /// Device id, unique in the room (`cam-teacher`); file names start with it.
    pub id: String,
    /// What it shows; `None` for a microphone.
    pub role: Option<Role>,
    /// Human label (教师特写).
    pub label: String,
    /// Where the media comes from (`rtsp://…`).
    pub url: String,
}

/// A recording classroom (录播教室) as the recorder needs it.
#[derive(Clone, Debug)]
pub struct RoomSpec {
    /// The classroom's id in the gateway.
    pub classroom_id: String,
    /// The video sources (cameras, screen capture), in mixer order.
    pub sources: Vec<SourceSpec>,
    /// The microphone whose audio goes into the programme (and into its own file).
    pub microphone: Option<SourceSpec>,
    /// The auto-director's rules.
    pub director: DirectorConfig,
    /// Programme settings.
    pub mixer: MixerConfig,
    /// How lost sources are retried.
    pub supervisor: SupervisorConfig,
}

impl RoomSpec {
    /// Checks ids (non-empty, file-name safe, unique) and the director's config against the
    /// room's roles.
    pub fn validate(&self) -> Result<(), LessonError> {
        let mut seen = std::collections::BTreeSet::new();
        for s in self.sources.iter().chain(self.microphone.iter()) {
            let ok = !s.id.is_empty()
                && s.id.len() <= 64
                && s.id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !ok || s.id == "programme" {
                return Err(LessonError::Config(format!(
                    "source id {:?} must be 1-64 letters, digits, '-' or '_' (and not \"programme\")",
                    s.id
                )));
            }
            // A microphone may share its device id's camera only by a distinct id.
            if !seen.insert(s.id.as_str()) {
                return Err(LessonError::Config(format!("source id {:?} twice", s.id)));
            }
        }
        if self.sources.is_empty() {
            return Err(LessonError::Config(
                "a recording room needs a video source".into(),
            ));
        }
        self.mixer.validate()?;
        let director = self.director_config();
        director.validate()?;
        director.validate_sources(&self.source_map())?;
        Ok(())
    }

    /// The director's config fitted to this room: rules that show a role the room has no camera
    /// for are left out (a room without a teacher panorama simply never cuts to one), and an
    /// opening or idle shot the room cannot show becomes its widest camera.
    pub fn director_config(&self) -> DirectorConfig {
        let map = self.source_map();
        let showable =
            |shot: &crate::director::ShotTemplate| shot.sources().all(|r| map.get(r).is_some());
        let mut config = self.director.clone();
        config.rules.retain(|rule| {
            let keep = showable(&rule.show);
            if !keep {
                tracing::debug!(rule = %rule.name, classroom = %self.classroom_id, "rule left out: the room has no camera for its shot");
            }
            keep
        });
        if let Some(widest) = Role::WIDEST_FIRST.iter().find(|r| map.get(**r).is_some()) {
            for shot in [&mut config.opening, &mut config.idle] {
                if !showable(shot) {
                    *shot = crate::director::Shot::Single(*widest);
                }
            }
        }
        config
    }

    /// The director's view of the room: each role played by the first source with it.
    pub fn source_map(&self) -> SourceMap {
        let mut map = SourceMap::new();
        for (i, s) in self.sources.iter().enumerate() {
            if let Some(role) = s.role
                && map.get(role).is_none()
            {
                map.insert(role, Self::source_id(i));
            }
        }
        map
    }

    fn source_id(index: usize) -> SourceId {
        SourceId(index as u32 + 1)
    }

    /// The device id of a director source.
    pub fn device_of(&self, source: SourceId) -> Option<&str> {
        let index = (source.0 as usize).checked_sub(1)?;
        self.sources.get(index).map(|s| s.id.as_str())
    }

    fn channel(&self, source_id: &str) -> String {
        format!("duet/{}/{}", self.classroom_id, source_id)
    }

    /// The sources as the manifest lists them.
    pub fn source_infos(&self) -> Vec<SourceInfo> {
        self.sources
            .iter()
            .chain(self.microphone.iter())
            .map(|s| SourceInfo {
                id: s.id.clone(),
                role: s.role.map_or("microphone", Role::name).to_owned(),
                label: s.label.clone(),
            })
            .collect()
    }
}

/// Why a lesson could not be recorded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LessonError {
    /// The room's configuration is unusable.
    #[error("recording room configuration: {0}")]
    Config(String),
    /// The director refused its rules.
    #[error(transparent)]
    Director(#[from] DirectorError),
    /// GStreamer side.
    #[error(transparent)]
    Capture(#[from] CaptureError),
    /// The manifest could not be read or written.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The lesson directory could not be created.
    #[error("lesson directory {path}: {source}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The lesson is already finalized: it cannot take another part.
    #[error("lesson {0} is already finalized")]
    Finalized(String),
}

/// A source's state as the admin page shows it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SourceStatus {
    /// Device id.
    pub id: String,
    /// Human label.
    pub label: String,
    /// Role name, or `microphone`.
    pub role: String,
    /// The supervisor's token: `STARTING`, `RECORDING`, `RECONNECTING`, `STOPPED`.
    pub state: String,
}

impl SourceStatus {
    /// `spec` in state `state`.
    pub fn of(spec: &SourceSpec, state: &str) -> Self {
        Self {
            id: spec.id.clone(),
            label: spec.label.clone(),
            role: spec.role.map_or("microphone", Role::name).to_owned(),
            state: state.to_owned(),
        }
    }
}

/// What a running part looks like from outside.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PartStatus {
    /// Per source.
    pub sources: Vec<SourceStatus>,
    /// The shot on air, in stable tokens with device ids.
    pub shot: String,
    /// Cuts so far.
    pub cuts: usize,
    /// Sources whose picture the "signal lost" slate covers now (device ids).
    pub slates: Vec<String>,
    /// Whether the programme's file has its first frame (false for long means the mixer is
    /// stuck, e.g. starved of CPU).
    pub programme_recording: bool,
}

/// What the control thread is told.
enum Command {
    Event(Event),
    Stop,
}

/// A lesson being recorded (one part of it); see the module doc.
pub struct LessonRunner {
    /// The lesson directory.
    dir: PathBuf,
    /// The manifest as of the part's start; completed and saved by `stop`.
    manifest: LessonManifest,
    /// Commands to the control thread.
    commands: Sender<Command>,
    /// The control thread; returns the part's files and gaps.
    thread: Option<JoinHandle<PartOutcome>>,
    /// Published by the control thread.
    status: Arc<Mutex<PartStatus>>,
    /// The mixer's previews, readable while the control thread owns the mixer.
    previews: Previews,
    /// The lesson's span.
    span: tracing::Span,
}

impl std::fmt::Debug for LessonRunner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LessonRunner")
            .field("dir", &self.dir)
            .field("lesson", &self.manifest.plan.id)
            .finish_non_exhaustive()
    }
}

/// What a part left when its control thread ended.
struct PartOutcome {
    sources: Vec<RecordedMedia>,
    programme: Option<RecordedMedia>,
    gaps: Vec<GapRecord>,
    cuts: Vec<CutRecord>,
    ended_at: DateTime<Utc>,
}

/// The directory of lesson `id` of `classroom` under `root`.
pub fn lesson_dir(root: &Path, classroom: &str, id: &str) -> PathBuf {
    root.join(classroom).join(id)
}

impl LessonRunner {
    /// Starts recording `plan` in `room` into `dir`: a new lesson, or the next part of one whose
    /// manifest is already there (after a restart). Blocking (pipelines start).
    pub fn start(room: &RoomSpec, plan: LessonPlan, dir: &Path) -> Result<Self, LessonError> {
        room.validate()?;
        let span = tracing::info_span!("lesson", classroom = %room.classroom_id, lesson = %plan.id);
        let _entered = span.enter();
        let io = |source| LessonError::Io {
            path: dir.to_owned(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let now = Utc::now();
        let mut manifest = match LessonManifest::load(dir) {
            Ok(mut m) => {
                if m.phase != LessonPhase::Recording {
                    return Err(LessonError::Finalized(m.plan.id));
                }
                recover_parts(&mut m, dir);
                m.plan.end = m.plan.end.max(plan.end);
                if let Some(prev_end) = m.parts.last().and_then(|p| p.ended_at) {
                    tracing::warn!(gap_from = %prev_end, "resuming a lesson cut off by a restart");
                    m.gaps.push(GapRecord {
                        source_id: None,
                        from: prev_end,
                        to: now,
                        reason: "recorder restarted / 录播主机重启".into(),
                    });
                }
                m
            }
            Err(ManifestError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                LessonManifest::new(
                    plan,
                    room.source_infos(),
                    room.microphone.as_ref().map(|m| m.id.clone()),
                )
            }
            Err(e) => return Err(e.into()),
        };
        let index = manifest.parts.len() as u32 + 1;
        let part_rel = PartRecord::dir_name(index);
        std::fs::create_dir_all(dir.join(&part_rel)).map_err(io)?;
        let programme_rel = part_rel.join(PROGRAMME_FILE);
        manifest.parts.push(PartRecord {
            index,
            started_at: now,
            ended_at: None,
            programme: Some(RecordedMedia {
                path: programme_rel.clone(),
                source_id: None,
                duration_s: 0.0,
            }),
            sources: Vec::new(),
            cuts: Vec::new(),
        });
        manifest.save(dir)?;

        // Sources first, so that the mixer's inter channels have frames soon after it starts.
        let mut supervisors = Vec::new();
        let feed = |id: &str| Feed {
            channel: room.channel(id),
            width: room.mixer.feed_width,
            height: room.mixer.feed_height,
            framerate: room.mixer.framerate,
        };
        let mut unusable = Vec::new();
        let video = room
            .sources
            .iter()
            .enumerate()
            .map(|(i, s)| (Some(RoomSpec::source_id(i)), s, MediaKind::Video));
        let audio = room.microphone.iter().map(|m| (None, m, MediaKind::Audio));
        for (source, spec, media) in video.chain(audio) {
            let options = SourceOptions {
                media,
                feed: Some(feed(&spec.id)),
            };
            let base = dir.join(&part_rel).join(&spec.id);
            match SourceSupervisor::start_with(&spec.url, &base, room.supervisor, options) {
                Ok(sup) => supervisors.push((source, spec.clone(), sup)),
                // A device the recorder cannot use at all (a URL of no known kind, say) costs its
                // own recording, not the lesson's: the others record, and a gap says why.
                Err(err) => {
                    tracing::error!(source = %spec.id, %err, "source cannot be recorded");
                    unusable.push((source, spec.clone(), err.to_string()));
                }
            }
        }

        let started = Instant::now();
        let mut director = Director::new(room.director_config(), room.source_map(), started)?;
        for source in unusable.iter().filter_map(|(source, _, _)| *source) {
            director.handle_event(started, Event::SourceLost(source));
        }
        let inputs: Vec<MixerInput> = room
            .sources
            .iter()
            .enumerate()
            .map(|(i, s)| MixerInput {
                source: RoomSpec::source_id(i),
                id: s.id.clone(),
                label: s.label.clone(),
                channel: room.channel(&s.id),
            })
            .collect();
        let audio_channel = room.microphone.as_ref().map(|m| room.channel(&m.id));
        let previews = Previews::default();
        let mixer = Mixer::start(
            &room.mixer,
            &inputs,
            audio_channel.as_deref(),
            &dir.join(&programme_rel),
            director.current(),
            previews.clone(),
        )?;
        for source in unusable.iter().filter_map(|(source, _, _)| *source) {
            mixer.set_lost(source, true);
        }

        let status = Arc::new(Mutex::new(PartStatus::default()));
        let (commands, receiver) = mpsc::channel();
        let control = Control {
            room: room.clone(),
            dir: dir.to_owned(),
            part_rel,
            part_started_at: now,
            director,
            mixer,
            mixer_started: started,
            inputs,
            audio_channel,
            previews: previews.clone(),
            supervisors,
            unusable,
            lost: Vec::new(),
            cuts: Vec::new(),
            status: Arc::clone(&status),
            commands: receiver,
        };
        let thread_span = span.clone();
        let thread = std::thread::Builder::new()
            .name("lesson-control".into())
            .spawn(move || {
                let _entered = thread_span.enter();
                control.run()
            })
            .expect("spawning a thread only fails when the process is out of resources");
        tracing::info!(part = index, "recording");
        drop(_entered);
        Ok(Self {
            dir: dir.to_owned(),
            manifest,
            commands,
            thread: Some(thread),
            status,
            previews,
            span,
        })
    }

    /// The lesson as planned.
    pub fn plan(&self) -> &LessonPlan {
        &self.manifest.plan
    }

    /// The lesson directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Moves the planned end (extend, or the timetable changed); saved with the manifest.
    pub fn set_end(&mut self, end: DateTime<Utc>) -> Result<(), LessonError> {
        self.manifest.plan.end = end;
        // Only the plan changes; the part list saved at start is still what is on disk.
        self.manifest.save(&self.dir)?;
        Ok(())
    }

    /// Hands an event to the auto-director. Lost and returned sources are the runner's own
    /// business and are not taken from outside.
    pub fn event(&self, event: Event) -> bool {
        if matches!(event, Event::SourceLost(_) | Event::SourceBack(_)) {
            return false;
        }
        self.commands.send(Command::Event(event)).is_ok()
    }

    /// The part's status as last published.
    pub fn status(&self) -> PartStatus {
        self.status.lock().expect("status lock poisoned").clone()
    }

    /// The latest preview JPEG of a source or of the programme ([`crate::mixer::PROGRAMME`]).
    pub fn preview(&self, key: &str) -> Option<Vec<u8>> {
        self.previews.get(key)
    }

    /// The preview map itself, for a reader that outlives this runner.
    pub(crate) fn preview_map(&self) -> Previews {
        self.previews.clone()
    }

    /// Ends this part: every source and the programme get EOS, the files are probed, and the
    /// manifest is completed. With `finalize`, the lesson becomes `FINALIZED` (ready for
    /// delivery); without, it stays `RECORDING` (a part of a lesson that goes on later). Blocking.
    pub fn stop(mut self, finalize: bool) -> Result<LessonManifest, LessonError> {
        let _entered = self.span.clone().entered();
        let _ = self.commands.send(Command::Stop);
        let outcome = self
            .thread
            .take()
            .expect("the control thread is joined only here")
            .join()
            .map_err(|_| LessonError::Config("the lesson's control thread panicked".into()))?;
        let part = self
            .manifest
            .parts
            .last_mut()
            .expect("start pushed this part");
        part.ended_at = Some(outcome.ended_at);
        part.programme = outcome.programme;
        part.sources = outcome.sources;
        part.cuts = outcome.cuts;
        self.manifest.gaps.extend(outcome.gaps);
        if finalize {
            self.manifest.phase = LessonPhase::Finalized;
        }
        self.manifest.save(&self.dir)?;
        tracing::info!(finalize, "part stopped");
        Ok(self.manifest.clone())
    }
}

impl Drop for LessonRunner {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = self.commands.send(Command::Stop);
            let _ = thread.join();
        }
    }
}

/// The control thread's state.
struct Control {
    room: RoomSpec,
    dir: PathBuf,
    part_rel: PathBuf,
    part_started_at: DateTime<Utc>,
    director: Director,
    mixer: Mixer,
    /// When the running mixer started: its programme's time zero (cut times count from it).
    mixer_started: Instant,
    /// What the mixer mixes, to start it again.
    inputs: Vec<MixerInput>,
    /// The microphone's feed, to start the mixer again.
    audio_channel: Option<String>,
    /// Where the mixer's previews go (kept across restarts).
    previews: Previews,
    /// Video sources carry their director id; the microphone none.
    supervisors: Vec<(Option<SourceId>, SourceSpec, SourceSupervisor)>,
    /// Sources whose recorder could not even be built, with why: lost for the whole part.
    unusable: Vec<(Option<SourceId>, SourceSpec, String)>,
    /// Video sources currently reported lost to the director.
    lost: Vec<SourceId>,
    cuts: Vec<CutRecord>,
    status: Arc<Mutex<PartStatus>>,
    commands: Receiver<Command>,
}

impl Control {
    fn run(mut self) -> PartOutcome {
        loop {
            let wait = self
                .director
                .poll_timeout()
                .map(|at| at.saturating_duration_since(Instant::now()).min(TICK))
                .unwrap_or(TICK);
            match self.commands.recv_timeout(wait) {
                Ok(Command::Event(event)) => {
                    tracing::info!(?event, "director event");
                    self.director.handle_event(Instant::now(), event);
                }
                Ok(Command::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {}
            }
            self.tick();
        }
        self.finish()
    }

    /// Sources lost and back → director and slate; timers; cuts → mixer; status.
    fn tick(&mut self) {
        let now = Instant::now();
        let mut sources = Vec::with_capacity(self.supervisors.len());
        for (source, spec, sup) in &self.supervisors {
            let state = sup.state();
            sources.push(SourceStatus::of(spec, state.token()));
            let Some(source) = *source else { continue };
            let lost = matches!(state, SupervisorState::Reconnecting { .. });
            let known = self.lost.contains(&source);
            if lost && !known {
                tracing::warn!(source = %spec.id, "source lost: slate on");
                self.lost.push(source);
                self.mixer.set_lost(source, true);
                self.director.handle_event(now, Event::SourceLost(source));
            } else if !lost && known && matches!(state, SupervisorState::Recording { .. }) {
                tracing::info!(source = %spec.id, "source back: slate off");
                self.lost.retain(|s| *s != source);
                self.mixer.set_lost(source, false);
                self.director.handle_event(now, Event::SourceBack(source));
            }
        }
        for (_, spec, _) in &self.unusable {
            sources.push(SourceStatus::of(spec, "FAILED"));
        }
        if self
            .director
            .poll_timeout()
            .is_some_and(|at| at <= Instant::now())
        {
            self.director.handle_timeout(Instant::now());
        }
        while let Some(cut) = self.director.poll_output() {
            self.mixer.show(&cut.shot);
            let shot = self.shot_name(&cut.shot);
            let reason = match cut.forced_by {
                Some(_) => "SOURCE_LOST".to_owned(),
                None => cut.reason.to_string(),
            };
            let at_s = cut
                .at
                .saturating_duration_since(self.mixer_started)
                .as_secs_f64();
            tracing::info!(at_s, %shot, %reason, "cut");
            self.cuts.push(CutRecord { at_s, shot, reason });
        }
        let programme_recording = self.mixer.wait_recording(Duration::ZERO).is_ok();
        if !programme_recording && self.mixer_started.elapsed() > PROGRAMME_STALL {
            self.restart_mixer();
        }
        let shot = self.shot_name(self.director.current());
        let slates = self
            .room
            .sources
            .iter()
            .enumerate()
            .filter(|(i, _)| self.mixer.is_slate_on(RoomSpec::source_id(*i)))
            .map(|(_, spec)| spec.id.clone())
            .collect();
        *self.status.lock().expect("status lock poisoned") = PartStatus {
            sources,
            shot,
            cuts: self.cuts.len(),
            slates,
            programme_recording,
        };
    }

    /// Replaces a mixer that has written nothing for [`PROGRAMME_STALL`] with a new one on the
    /// same (still empty) file: a stuck programme must not cost the lesson its movie mode.
    fn restart_mixer(&mut self) {
        tracing::error!(stalled = ?PROGRAMME_STALL, "the programme has written nothing: starting its mixer again");
        let path = self.dir.join(&self.part_rel).join(PROGRAMME_FILE);
        // The old pipeline has written nothing: the new one may open the same file before the old
        // one is dropped (Null, its descriptor closed unused).
        let restarted = Mixer::start(
            &self.room.mixer,
            &self.inputs,
            self.audio_channel.as_deref(),
            &path,
            self.director.current(),
            self.previews.clone(),
        );
        match restarted {
            Ok(mixer) => {
                drop(std::mem::replace(&mut self.mixer, mixer));
                let gone = self.unusable.iter().filter_map(|(source, _, _)| *source);
                for source in self.lost.iter().copied().chain(gone) {
                    self.mixer.set_lost(source, true);
                }
            }
            Err(err) => {
                tracing::error!(%err, "the mixer did not start again; next try after the stall time")
            }
        }
        self.mixer_started = Instant::now();
    }

    /// `SINGLE(cam-pupil)`: the director's token with device ids.
    fn shot_name(&self, shot: &crate::director::Shot) -> String {
        let named = shot.try_map(|s| self.room.device_of(s).map(str::to_owned));
        match named {
            Some(crate::director::Shot::Single(a)) => format!("SINGLE({a})"),
            Some(crate::director::Shot::PictureInPicture { main, inset }) => {
                format!("PIP({main}+{inset})")
            }
            Some(crate::director::Shot::SideBySide(a, b)) => format!("SPLIT({a}|{b})"),
            None => shot.to_string(),
        }
    }

    /// Stops every source (in parallel: each may wait for its EOS) and the programme.
    fn finish(self) -> PartOutcome {
        let Control {
            dir,
            part_rel,
            part_started_at,
            mixer,
            supervisors,
            unusable,
            cuts,
            ..
        } = self;
        let results: Vec<_> = std::thread::scope(|scope| {
            let handles: Vec<_> = supervisors
                .into_iter()
                .map(|(_, spec, sup)| scope.spawn(move || (spec, sup.stop())))
                .collect();
            handles.into_iter().filter_map(|h| h.join().ok()).collect()
        });
        let programme = match mixer.stop() {
            Ok(file) => Some(RecordedMedia {
                path: part_rel.join(PROGRAMME_FILE),
                source_id: None,
                duration_s: file.duration.as_secs_f64(),
            }),
            Err(err) => {
                tracing::error!(%err, "programme not recorded");
                None
            }
        };
        let ended_at = Utc::now();
        let mut sources = Vec::new();
        let mut gaps = Vec::new();
        for (spec, recording) in results {
            for segment in recording.segments {
                let Ok(rel) = segment.path.strip_prefix(&dir) else {
                    continue;
                };
                sources.push(RecordedMedia {
                    path: rel.to_owned(),
                    source_id: Some(spec.id.clone()),
                    duration_s: segment.duration.as_secs_f64(),
                });
            }
            for gap in recording.gaps {
                let at = |d: Duration| {
                    part_started_at + chrono::Duration::from_std(d).unwrap_or_default()
                };
                gaps.push(GapRecord {
                    source_id: Some(spec.id.clone()),
                    from: at(gap.from),
                    to: gap.to.map_or(ended_at, at),
                    reason: gap.reason,
                });
            }
        }
        for (_, spec, reason) in unusable {
            gaps.push(GapRecord {
                source_id: Some(spec.id),
                from: part_started_at,
                to: ended_at,
                reason,
            });
        }
        PartOutcome {
            sources,
            programme,
            gaps,
            cuts,
            ended_at,
        }
    }
}

/// Completes parts cut off by a crash (`ended_at: None`) from their files: each file's real end
/// is read by demuxing it; the part ends where its longest file ends. Files that cannot be read
/// are left on disk and out of the manifest (logged).
fn recover_parts(manifest: &mut LessonManifest, dir: &Path) {
    for part in manifest.parts.iter_mut().filter(|p| p.ended_at.is_none()) {
        let part_dir = dir.join(PartRecord::dir_name(part.index));
        let mut longest = Duration::ZERO;
        let mut sources = Vec::new();
        let mut programme = None;
        let mut names: Vec<_> = std::fs::read_dir(&part_dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".mkv"))
            .collect();
        names.sort();
        for name in names {
            let path = part_dir.join(&name);
            let duration = match scan_duration(&path) {
                Ok(d) if !d.is_zero() => d,
                Ok(_) => continue,
                Err(err) => {
                    tracing::warn!(%err, "cut-off file unreadable; kept on disk, left out");
                    continue;
                }
            };
            longest = longest.max(duration);
            let rel = PartRecord::dir_name(part.index).join(&name);
            if name == PROGRAMME_FILE {
                programme = Some(RecordedMedia {
                    path: rel,
                    source_id: None,
                    duration_s: duration.as_secs_f64(),
                });
            } else {
                let source_id = name
                    .trim_end_matches(".mkv")
                    .rsplit_once('-')
                    .map(|(id, _)| id.to_owned());
                sources.push(RecordedMedia {
                    path: rel,
                    source_id,
                    duration_s: duration.as_secs_f64(),
                });
            }
        }
        part.programme = programme;
        part.sources = sources;
        part.ended_at =
            Some(part.started_at + chrono::Duration::from_std(longest).unwrap_or_default());
        tracing::warn!(part = part.index, recovered = ?longest, "recovered a part cut off by a crash");
    }
}

/// Brings a lesson left in `RECORDING` by a crash to `FINALIZED` (its window is over): the
/// cut-off part is completed from its files. Returns the manifest. Blocking (demuxes files).
pub fn recover(dir: &Path) -> Result<LessonManifest, LessonError> {
    let mut manifest = LessonManifest::load(dir)?;
    if manifest.phase == LessonPhase::Recording {
        recover_parts(&mut manifest, dir);
        manifest.phase = LessonPhase::Finalized;
        manifest.save(dir)?;
    }
    Ok(manifest)
}
