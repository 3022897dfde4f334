//! Clip export (晒课): cutting a stretch of a recorded lesson into a short MP4 with a title card,
//! for the national "one teacher, one excellent lesson" upload.
//!
//! The gateway knows nothing of media: it records the request in `clips` and hands a
//! [`ClipJob`] to the [`ClipRenderer`] the binary installed ([`crate::AppState::set_clip_renderer`];
//! the duet binary wires the recorder's GStreamer renderer). Rendering blocks, so
//! [`spawn_render`] runs it on tokio's blocking pool; its progress reaches the database through
//! a channel, written only when it moved by at least [`PROGRESS_STEP`], and the clip ends
//! `done` (with its file) or `failed` (with the renderer's message). A renderer that panics
//! fails the clip; the task owns nothing else and ends with the render.

use crate::store::{ClipState, Store};
use chrono::Utc;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;

/// Smallest progress change written to the database.
pub const PROGRESS_STEP: f32 = 0.01;

/// The title card shown before the clip (≤ 5 s): what the upload rules ask for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TitleCard {
    /// 课程 (course).
    pub course: String,
    /// 年级 (grade).
    pub grade: String,
    /// 教材版本 (textbook edition).
    pub edition: String,
    /// 教师 (teacher).
    pub teacher: String,
    /// 学校 (school).
    pub school: String,
}

/// One render: cut `[start_ms, end_ms)` of `input`, put `title` before it, write `output`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClipJob {
    /// The lesson's review video or programme MP4.
    pub input: PathBuf,
    /// Start on the input's timeline.
    pub start_ms: u64,
    /// End (exclusive).
    pub end_ms: u64,
    /// The title card.
    pub title: TitleCard,
    /// Where to write the clip (MP4).
    pub output: PathBuf,
}

/// Renders clips. Blocking: the gateway calls it on the blocking pool, one job per call, and
/// `progress` with values in 0..=1 as it goes. `Err` carries a message for people.
pub trait ClipRenderer: Send + Sync {
    /// Renders `job`.
    fn render(&self, job: ClipJob, progress: &dyn Fn(f32)) -> Result<(), String>;
}

/// Clip renders running at once.
static RENDERS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(1);

/// Renders `job` for clip `clip_id` in the background, keeping its row up to date.
pub fn spawn_render(
    store: Store,
    renderer: Arc<dyn ClipRenderer>,
    clip_id: String,
    job: ClipJob,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // One render at a time: the others wait `queued` (a render uses the whole machine).
        let Ok(_permit) = RENDERS.acquire().await else {
            return;
        };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<f32>();
        write(&store, &clip_id, ClipState::Rendering, 0.0, None, None).await;
        let output = job.output.clone();
        let blocking = tokio::task::spawn_blocking(move || {
            let last = std::sync::Mutex::new(0.0f32);
            let report = |p: f32| {
                let p = if p.is_finite() {
                    p.clamp(0.0, 1.0)
                } else {
                    0.0
                };
                let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
                if p - *last >= PROGRESS_STEP {
                    *last = p;
                    let _ = tx.send(p);
                }
            };
            renderer.render(job, &report)
        });
        // Progress until the renderer returns (the channel closes with the closure).
        while let Some(p) = rx.recv().await {
            // Never claim done before the result is known.
            write(
                &store,
                &clip_id,
                ClipState::Rendering,
                f64::from(p.min(0.99)),
                None,
                None,
            )
            .await;
        }
        let result = match blocking.await {
            Ok(r) => r,
            Err(e) => Err(format!("渲染器异常退出 / the renderer crashed: {e}")),
        };
        match result {
            Ok(()) if output.is_file() => {
                let file = output.to_string_lossy().into_owned();
                if write(&store, &clip_id, ClipState::Done, 1.0, None, Some(&file)).await {
                    tracing::info!(clip = %clip_id, "clip rendered");
                } else {
                    // The clip (or its lesson) was deleted meanwhile: nothing may point here.
                    let _ = std::fs::remove_file(&output);
                }
            }
            Ok(()) => {
                let why = "渲染器没有写出文件 / the renderer wrote no file";
                write(&store, &clip_id, ClipState::Failed, 0.0, Some(why), None).await;
            }
            Err(why) => {
                tracing::warn!(clip = %clip_id, %why, "clip failed");
                let _ = std::fs::remove_file(&output);
                write(&store, &clip_id, ClipState::Failed, 0.0, Some(&why), None).await;
            }
        }
    })
}

async fn write(
    store: &Store,
    id: &str,
    state: ClipState,
    progress: f64,
    error: Option<&str>,
    file: Option<&str>,
) -> bool {
    match store
        .update_clip(id, state, progress, error, file, Utc::now())
        .await
    {
        Ok(rows) => rows > 0,
        Err(e) => {
            tracing::error!(clip = %id, error = %e, "clip state not written");
            false
        }
    }
}
