//! A minimal Chrome DevTools Protocol (CDP) client driving a headless Chromium.
//!
//! [`Browser::launch`] starts Chromium with a fresh profile directory and
//! DevTools on an ephemeral loopback port, and connects one websocket to it.
//! [`Browser::new_page`] opens a tab in its own browser context (separate
//! cookies and storage, like a separate person) and attaches to it as a
//! flattened session, so every page talks over that same websocket. A
//! background task reads the websocket, hands each reply to the command
//! waiting for it (by `id`), and keeps the last console lines of each page.
//!
//! Chromium never outlives its [`Browser`]: dropping it kills Chromium's whole
//! process group, reaps it and removes the profile, including Chromium's log
//! ([`Browser::log_tail`] reads it before that). Chromium is also killed if
//! the thread that launched it exits (`PR_SET_PDEATHSIG`), so launch it from
//! the test's main thread or a runtime worker, not from a short-lived thread.

use std::collections::{HashMap, VecDeque};
use std::ffi::OsString;
use std::fs::File;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine as _;
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// Where Chromium is unless the `DUET_CHROMIUM` environment variable says otherwise.
pub const DEFAULT_CHROMIUM: &str = "/usr/bin/chromium";

/// Flags every launch uses: headless, no sandbox (we run as root), no
/// background traffic, fake camera and microphone granted without a prompt,
/// autoplay allowed, no throttling of background tabs, DevTools on a free port.
const FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
    "--mute-audio",
    "--remote-debugging-port=0",
];

/// How long one CDP command may take.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(30);
/// How often [`Page::wait_for`] re-evaluates its predicate.
const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// How many console lines each page keeps.
const CONSOLE_LINES: usize = 200;

/// How to launch Chromium.
#[derive(Debug, Clone)]
pub struct LaunchOptions {
    /// Flags added after the standard ones, e.g.
    /// `--use-file-for-fake-audio-capture=/path/tone.wav`.
    pub extra_args: Vec<String>,
    /// Plain-http origins to treat as secure contexts, e.g.
    /// `http://10.200.0.1:8080`. Pages need one for `getUserMedia`, and
    /// Chromium here gathers ICE candidates on the test network only for
    /// secure-context pages (see [`crate::netns`]).
    pub secure_origins: Vec<String>,
    /// How long Chromium may take to open its DevTools port.
    pub startup_timeout: Duration,
}

impl Default for LaunchOptions {
    fn default() -> Self {
        Self {
            extra_args: Vec::new(),
            secure_origins: Vec::new(),
            startup_timeout: Duration::from_secs(20),
        }
    }
}

impl LaunchOptions {
    /// Adds one extra Chromium flag.
    pub fn arg(mut self, flag: impl Into<String>) -> Self {
        self.extra_args.push(flag.into());
        self
    }

    /// Treats a plain-http origin (scheme, host and port) as a secure context.
    pub fn secure_origin(mut self, origin: impl Into<String>) -> Self {
        self.secure_origins.push(origin.into());
        self
    }

    /// The flags this adds to the standard ones.
    fn flags(&self) -> Vec<String> {
        let mut flags = self.extra_args.clone();
        if !self.secure_origins.is_empty() {
            let origins = self.secure_origins.join(",");
            flags.push(format!(
                "--unsafely-treat-insecure-origin-as-secure={origins}"
            ));
        }
        flags
    }
}

/// A running headless Chromium and the DevTools connection to it.
pub struct Browser {
    connection: Arc<Connection>,
    process: ChromiumProcess,
}

impl Browser {
    /// Starts Chromium (`DUET_CHROMIUM` or `/usr/bin/chromium`) and connects to it.
    /// Must be called within a tokio runtime.
    pub async fn launch(options: LaunchOptions) -> Result<Browser> {
        let binary = std::env::var_os("DUET_CHROMIUM")
            .map_or_else(|| PathBuf::from(DEFAULT_CHROMIUM), PathBuf::from);
        if !binary.exists() {
            bail!(
                "Chromium not found at {}: install Debian's `chromium` package \
                 or point DUET_CHROMIUM at a Chromium binary",
                binary.display()
            );
        }
        let mut process = ChromiumProcess::spawn(&binary, &options.flags())?;
        let connect = async {
            let port = process.devtools_port(options.startup_timeout).await?;
            let url = browser_websocket_url(port).await?;
            Connection::open(&url).await
        };
        match connect.await {
            Ok(connection) => Ok(Browser {
                connection: Arc::new(connection),
                process,
            }),
            Err(err) => Err(process.explain(err)),
        }
    }

    /// Opens `url` in a new tab of its own, isolated browser context, and
    /// waits until its document has loaded (`document.readyState` is `complete`).
    pub async fn new_page(&self, url: &str) -> Result<Page> {
        let conn = &self.connection;
        let context = conn
            .call(None, "Target.createBrowserContext", json!({}))
            .await?;
        let browser_context_id = string_field(&context, "browserContextId")?;
        let target = conn
            .call(
                None,
                "Target.createTarget",
                json!({ "url": "about:blank", "browserContextId": browser_context_id }),
            )
            .await?;
        let target_id = string_field(&target, "targetId")?;
        let attached = conn
            .call(
                None,
                "Target.attachToTarget",
                json!({ "targetId": target_id, "flatten": true }),
            )
            .await?;
        let session_id = string_field(&attached, "sessionId")?;
        conn.shared
            .lock()
            .consoles
            .insert(session_id.clone(), VecDeque::new());

        let page = Page {
            connection: Arc::clone(conn),
            session_id,
            target_id,
            browser_context_id,
        };
        page.cdp("Runtime.enable", json!({})).await?;
        page.cdp("Page.enable", json!({})).await?;
        page.navigate(url).await?;
        Ok(page)
    }

    /// Sends a browser-level CDP command and returns its result.
    pub async fn cdp(&self, method: &str, params: Value) -> Result<Value> {
        self.connection.call(None, method, params).await
    }

    /// Chromium's stdout and stderr; the file is removed when the browser is dropped.
    pub fn log_path(&self) -> &Path {
        &self.process.log_path
    }

    /// The last `lines` lines of Chromium's log, for a failing test to print.
    pub fn log_tail(&self, lines: usize) -> String {
        self.process.log_tail(lines)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // The process field's own Drop then kills Chromium and removes the profile.
        self.connection.reader.abort();
    }
}

/// One tab, attached as a flattened CDP session on its browser's websocket.
pub struct Page {
    connection: Arc<Connection>,
    session_id: String,
    target_id: String,
    browser_context_id: String,
}

impl Page {
    /// Sends a CDP command to this page's session and returns its result.
    pub async fn cdp(&self, method: &str, params: Value) -> Result<Value> {
        self.connection
            .call(Some(&self.session_id), method, params)
            .await
    }

    /// Navigates to `url` and waits until the new document has loaded.
    pub async fn navigate(&self, url: &str) -> Result<()> {
        let reply = self.cdp("Page.navigate", json!({ "url": url })).await?;
        if let Some(error) = reply.get("errorText").and_then(Value::as_str)
            && !error.is_empty()
        {
            bail!("navigating to {} failed: {error}", abbreviate(url));
        }
        self.wait_for("document.readyState === 'complete'", COMMAND_TIMEOUT)
            .await
            .with_context(|| format!("loading {}", abbreviate(url)))?;
        Ok(())
    }

    /// Evaluates `js` in the page, awaiting it if it is a promise, and returns
    /// its value as JSON. `undefined` gives `null`; values JSON cannot hold
    /// (`NaN`, `Infinity`, `-0`, bigints) come back as their JS spelling in a
    /// string. A thrown exception gives a [`JsException`] error.
    pub async fn evaluate(&self, js: &str) -> Result<Value> {
        self.evaluate_within(js, COMMAND_TIMEOUT).await
    }

    async fn evaluate_within(&self, js: &str, timeout: Duration) -> Result<Value> {
        let params = json!({
            "expression": js,
            "awaitPromise": true,
            "returnByValue": true,
            "userGesture": true,
        });
        let mut reply = self
            .connection
            .call_within(Some(&self.session_id), "Runtime.evaluate", params, timeout)
            .await?;
        if let Some(details) = reply.get("exceptionDetails") {
            return Err(JsException::new(js, details).into());
        }
        let mut result = reply["result"].take();
        Ok(
            match (result["value"].take(), result["unserializableValue"].take()) {
                (Value::Null, Value::String(spelling)) => Value::String(spelling),
                (value, _) => value,
            },
        )
    }

    /// Re-evaluates `predicate` every 250 ms until it gives a truthy value,
    /// and returns that value; fails after `timeout` with the last value or
    /// error seen. Errors while polling (say, during a navigation) are
    /// retried, except a syntax error, which fails at once.
    pub async fn wait_for(&self, predicate: &str, timeout: Duration) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let budget = deadline
                .saturating_duration_since(Instant::now())
                .max(POLL_INTERVAL);
            let last = match self
                .evaluate_within(predicate, budget.min(COMMAND_TIMEOUT))
                .await
            {
                Ok(value) if is_truthy(&value) => return Ok(value),
                Ok(value) => format!("its last value was {value}"),
                Err(err) => {
                    let syntax_error = err
                        .downcast_ref::<JsException>()
                        .is_some_and(|e| e.class_name.as_deref() == Some("SyntaxError"));
                    if syntax_error {
                        return Err(err);
                    }
                    format!("its last evaluation failed: {err:#}")
                }
            };
            if Instant::now() >= deadline {
                bail!(
                    "timed out after {timeout:?} waiting for `{}` to be truthy; {last}",
                    abbreviate(predicate)
                );
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Captures the visible page as PNG into `path`.
    pub async fn screenshot_png(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let reply = self
            .cdp("Page.captureScreenshot", json!({ "format": "png" }))
            .await?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(string_field(&reply, "data")?)
            .context("decoding the screenshot")?;
        std::fs::write(path, png).with_context(|| format!("writing {}", path.display()))
    }

    /// The last (up to 200) console lines and uncaught exceptions of this page,
    /// oldest first, e.g. `log: joined room 7` or `exception: Uncaught Error: boom`.
    pub fn console_tail(&self) -> Vec<String> {
        let shared = self.connection.shared.lock();
        shared
            .consoles
            .get(&self.session_id)
            .map(|lines| lines.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// On Duet's sign-in page (`/admin`): signs in as `user`. Returns once the form is gone.
    pub async fn sign_in(&self, user: &str, password: &str) -> Result<()> {
        self.wait_for(
            "document.querySelector('#login-username')",
            Duration::from_secs(10),
        )
        .await?;
        self.evaluate(&format!(
            "document.querySelector('#login-username').value={};\
             document.querySelector('#login-password').value={};\
             document.querySelector('#login-submit').click(); true",
            json!(user),
            json!(password)
        ))
        .await?;
        self.wait_for(
            "!document.querySelector('#login-submit') || document.querySelector('#login-submit').offsetParent === null",
            Duration::from_secs(15),
        )
        .await
        .with_context(|| format!("{user} did not sign in"))?;
        Ok(())
    }

    /// On Duet's sign-in page (`/admin`): signs in as `user` and presses 进入课堂 on the class on
    /// now (`#join-current`). Returns once the button has been pressed.
    pub async fn sign_in_and_join(&self, user: &str, password: &str) -> Result<()> {
        self.sign_in(user, password).await?;
        self.wait_for(
            "document.querySelector('#join-current')",
            Duration::from_secs(15),
        )
        .await
        .with_context(|| format!("{user} sees no class to join now"))?;
        self.evaluate("document.querySelector('#join-current').click(); true")
            .await?;
        Ok(())
    }

    /// Closes the tab and disposes of its browser context.
    pub async fn close(self) -> Result<()> {
        let conn = &self.connection;
        conn.call(
            None,
            "Target.closeTarget",
            json!({ "targetId": self.target_id }),
        )
        .await?;
        conn.call(
            None,
            "Target.disposeBrowserContext",
            json!({ "browserContextId": self.browser_context_id }),
        )
        .await?;
        conn.shared.lock().consoles.remove(&self.session_id);
        Ok(())
    }
}

/// A JavaScript exception thrown (or promise rejection) by [`Page::evaluate`].
#[derive(Debug, Clone)]
pub struct JsException {
    /// The evaluated expression (abbreviated).
    pub expression: String,
    /// The exception's class, e.g. `TypeError`, when it was an object.
    pub class_name: Option<String>,
    /// What V8 says: the message and stack, or the thrown value.
    pub message: String,
}

impl JsException {
    fn new(expression: &str, details: &Value) -> Self {
        let text = details["text"].as_str().unwrap_or("Uncaught");
        let exception = &details["exception"];
        let thrown = match (&exception["description"], &exception["value"]) {
            (Value::String(description), _) => description.clone(),
            (_, Value::Null) => String::new(),
            (_, value) => value.to_string(),
        };
        let message = if thrown.is_empty() {
            text.to_owned()
        } else {
            format!("{text}: {thrown}")
        };
        Self {
            expression: abbreviate(expression),
            class_name: exception["className"].as_str().map(str::to_owned),
            message,
        }
    }
}

impl std::fmt::Display for JsException {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "evaluating `{}` threw: {}",
            self.expression, self.message
        )
    }
}

impl std::error::Error for JsException {}

/// The Chromium child process, its profile directory and log.
struct ChromiumProcess {
    child: Child,
    profile: PathBuf,
    log_path: PathBuf,
}

impl ChromiumProcess {
    fn spawn(binary: &Path, extra_args: &[String]) -> Result<Self> {
        let profile = create_profile_dir()?;
        let log_path = profile.join("chromium.log");
        let spawned = File::create(&log_path)
            .and_then(|log| Ok((log.try_clone()?, log)))
            .and_then(|(stdout, stderr)| {
                let mut user_data_dir = OsString::from("--user-data-dir=");
                user_data_dir.push(&profile);
                let mut command = Command::new(binary);
                command
                    .args(FLAGS)
                    .arg(user_data_dir)
                    .args(extra_args)
                    .stdin(Stdio::null())
                    .stdout(stdout)
                    .stderr(stderr)
                    .process_group(0);
                kill_on_parent_death(&mut command);
                command.spawn()
            });
        match spawned {
            Ok(child) => Ok(Self {
                child,
                profile,
                log_path,
            }),
            Err(err) => {
                let _ = std::fs::remove_dir_all(&profile);
                Err(err).with_context(|| format!("starting {}", binary.display()))
            }
        }
    }

    /// Waits for Chromium to write the port it chose into `DevToolsActivePort`.
    async fn devtools_port(&mut self, timeout: Duration) -> Result<u16> {
        let file = self.profile.join("DevToolsActivePort");
        let deadline = Instant::now() + timeout;
        loop {
            let port = std::fs::read_to_string(&file)
                .ok()
                .and_then(|text| text.lines().next()?.trim().parse::<u16>().ok())
                .filter(|&port| port != 0);
            if let Some(port) = port {
                return Ok(port);
            }
            if let Some(status) = self.child.try_wait()? {
                bail!("Chromium exited during startup ({status})");
            }
            if Instant::now() >= deadline {
                bail!("Chromium did not open its DevTools port within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn log_tail(&self, lines: usize) -> String {
        let log = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Adds the tail of Chromium's log to a startup error.
    fn explain(&self, err: anyhow::Error) -> anyhow::Error {
        anyhow!(
            "{err:#}\n--- last lines of {} ---\n{}",
            self.log_path.display(),
            self.log_tail(30)
        )
    }
}

impl Drop for ChromiumProcess {
    fn drop(&mut self) {
        // Only while the leader is unreaped does its pid surely name our group.
        if let Ok(None) = self.child.try_wait() {
            kill_process_group(self.child.id());
            let _ = self.child.wait();
        }
        // Chromium's helpers may still be exiting and writing; retry briefly.
        for _ in 0..10 {
            match std::fs::remove_dir_all(&self.profile) {
                Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                _ => break,
            }
        }
    }
}

#[allow(unsafe_code)]
fn kill_on_parent_death(command: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec, where only
    // async-signal-safe calls are allowed: it calls prctl(2) and, on failure,
    // reads errno; it allocates nothing and takes no locks.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[allow(unsafe_code)]
fn kill_process_group(leader: u32) {
    let Ok(pgid) = libc::pid_t::try_from(leader) else {
        return;
    };
    // SAFETY: kill(2) takes plain integers and touches no memory of ours. The
    // group was created for our child (process_group(0) makes its id the
    // child's pid), and the child is not reaped yet, so the id cannot have
    // been recycled: only Chromium and its helpers are signalled.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}

/// A new, empty directory under the system temp dir for Chromium's profile.
fn create_profile_dir() -> Result<PathBuf> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let name = format!(
        "duet-chromium-{}-{}-{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let dir = std::env::temp_dir().join(name);
    std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// Asks DevTools' HTTP endpoint for the browser's websocket URL.
///
/// Chromium's DevTools server rejects HTTP/1.0, so this speaks just enough
/// HTTP/1.1: one GET, then read the headers and `Content-Length` bytes of body.
async fn browser_websocket_url(port: u16) -> Result<String> {
    let url = format!("http://127.0.0.1:{port}/json/version");
    let body = tokio::time::timeout(Duration::from_secs(10), http_get(port, "/json/version"))
        .await
        .map_err(|_| anyhow!("timed out"))
        .and_then(|body| body)
        .with_context(|| format!("GET {url}"))?;
    let version: Value = serde_json::from_slice(&body).with_context(|| format!("parsing {url}"))?;
    string_field(&version, "webSocketDebuggerUrl")
}

async fn http_get(port: u16, path: &str) -> Result<Vec<u8>> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let read = stream.read(&mut chunk).await?;
        let closed = read == 0;
        response.extend_from_slice(&chunk[..read]);
        let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") else {
            if closed {
                bail!("connection closed before the end of the headers");
            }
            continue;
        };
        let head = String::from_utf8_lossy(&response[..end]);
        let status = head.lines().next().unwrap_or_default();
        if status.split_whitespace().nth(1) != Some("200") {
            bail!("answered `{status}`");
        }
        let content_length = head.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            let value = value.trim().parse::<usize>().ok()?;
            name.eq_ignore_ascii_case("content-length").then_some(value)
        });
        let body = &response[end + 4..];
        match content_length {
            Some(length) if body.len() >= length => return Ok(body[..length].to_vec()),
            None if closed => return Ok(body.to_vec()),
            _ if closed => bail!("connection closed in the middle of the body"),
            _ => {}
        }
    }
}

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;
type Reply = std::result::Result<Value, String>;

/// The websocket to Chromium, shared by the browser and its pages.
struct Connection {
    sink: tokio::sync::Mutex<SplitSink<Socket, Message>>,
    next_id: AtomicU64,
    shared: Arc<Shared>,
    reader: JoinHandle<()>,
}

/// State shared between callers and the reader task.
#[derive(Default)]
struct Shared {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Commands waiting for their reply, by id.
    pending: HashMap<u64, oneshot::Sender<Reply>>,
    /// Why the connection is gone, once it is.
    closed: Option<String>,
    /// Recent console lines, by session id.
    consoles: HashMap<String, VecDeque<String>>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere cannot leave State inconsistent; keep going.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Routes one message from Chromium: a reply to its caller, console
    /// events to their page's buffer; other events are ignored.
    fn dispatch(&self, text: &str) {
        let Ok(mut message) = serde_json::from_str::<Value>(text) else {
            return;
        };
        if let Some(id) = message["id"].as_u64() {
            let reply = match message.get("error") {
                Some(error) => Err(describe_cdp_error(error)),
                None => Ok(message["result"].take()),
            };
            if let Some(caller) = self.lock().pending.remove(&id) {
                let _ = caller.send(reply);
            }
            return;
        }
        let (Some(method), Some(session)) =
            (message["method"].as_str(), message["sessionId"].as_str())
        else {
            return;
        };
        let line = match method {
            "Runtime.consoleAPICalled" => console_line(&message["params"]),
            "Runtime.exceptionThrown" => {
                let details = &message["params"]["exceptionDetails"];
                format!("exception: {}", JsException::new("", details).message)
            }
            _ => return,
        };
        let mut state = self.lock();
        if let Some(lines) = state.consoles.get_mut(session) {
            if lines.len() == CONSOLE_LINES {
                lines.pop_front();
            }
            lines.push_back(line);
        }
    }
}

impl Connection {
    async fn open(url: &str) -> Result<Self> {
        let (socket, _) = tokio_tungstenite::connect_async(url)
            .await
            .with_context(|| format!("connecting to DevTools at {url}"))?;
        let (sink, stream) = socket.split();
        let shared = Arc::new(Shared::default());
        let reader = tokio::spawn(read_loop(stream, Arc::clone(&shared)));
        Ok(Self {
            sink: tokio::sync::Mutex::new(sink),
            next_id: AtomicU64::new(1),
            shared,
            reader,
        })
    }

    async fn call(&self, session: Option<&str>, method: &str, params: Value) -> Result<Value> {
        self.call_within(session, method, params, COMMAND_TIMEOUT)
            .await
    }

    async fn call_within(
        &self,
        session: Option<&str>,
        method: &str,
        params: Value,
        timeout: Duration,
    ) -> Result<Value> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            message["sessionId"] = session.into();
        }
        let reply = {
            let mut state = self.shared.lock();
            if let Some(reason) = &state.closed {
                bail!("CDP {method}: the connection to Chromium is closed ({reason})");
            }
            let (sender, receiver) = oneshot::channel();
            state.pending.insert(id, sender);
            receiver
        };
        let sent = self
            .sink
            .lock()
            .await
            .send(Message::text(message.to_string()))
            .await;
        if let Err(err) = sent {
            self.shared.lock().pending.remove(&id);
            return Err(err).with_context(|| format!("sending CDP {method}"));
        }
        match tokio::time::timeout(timeout, reply).await {
            Ok(Ok(Ok(result))) => Ok(result),
            Ok(Ok(Err(error))) => bail!("CDP {method} failed: {error}"),
            Ok(Err(_)) => {
                let reason = self.shared.lock().closed.clone().unwrap_or_default();
                bail!("CDP {method}: the connection to Chromium closed before the reply ({reason})")
            }
            Err(_) => {
                self.shared.lock().pending.remove(&id);
                bail!("CDP {method} timed out after {timeout:?}")
            }
        }
    }
}

async fn read_loop(mut stream: SplitStream<Socket>, shared: Arc<Shared>) {
    let reason = loop {
        match stream.next().await {
            Some(Ok(Message::Text(text))) => shared.dispatch(&text),
            Some(Ok(Message::Close(_))) | None => break "Chromium closed the websocket".to_owned(),
            Some(Ok(_)) => {}
            Some(Err(err)) => break format!("websocket error: {err}"),
        }
    };
    let mut state = shared.lock();
    state.closed = Some(reason);
    // Dropping the senders wakes every waiting caller with an error.
    state.pending.clear();
}

fn describe_cdp_error(error: &Value) -> String {
    let message = error["message"].as_str().unwrap_or("unknown error");
    let mut text = format!("{message} (code {})", error["code"]);
    if let Some(data) = error["data"].as_str() {
        text.push_str(": ");
        text.push_str(data);
    }
    text
}

/// `type: arg arg ...` for a `Runtime.consoleAPICalled` event.
fn console_line(params: &Value) -> String {
    let kind = params["type"].as_str().unwrap_or("log");
    let args: Vec<String> = params["args"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|arg| match (&arg["value"], &arg["description"]) {
            (Value::String(text), _) => text.clone(),
            (Value::Null, Value::String(description)) => description.clone(),
            (Value::Null, _) => arg["unserializableValue"]
                .as_str()
                .or(arg["type"].as_str())
                .unwrap_or("?")
                .to_owned(),
            (value, _) => value.to_string(),
        })
        .collect();
    format!("{kind}: {}", args.join(" "))
}

fn string_field(value: &Value, field: &str) -> Result<String> {
    value[field]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("no string `{field}` in {}", abbreviate(&value.to_string())))
}

/// JavaScript truthiness of a JSON value.
fn is_truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|n| n != 0.0),
        Value::String(s) => !s.is_empty() && s != "NaN" && s != "-0" && s != "0n",
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// Keeps error messages readable when given long scripts or data: URLs.
fn abbreviate(text: &str) -> String {
    const MAX: usize = 200;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Launches a real Chromium (no network namespace needed: the page is a
    /// data: URL) and drives it over CDP. Fails if Chromium is missing.
    #[tokio::test]
    async fn evaluates_javascript_in_a_data_url_page() -> Result<()> {
        let browser = Browser::launch(LaunchOptions::default()).await?;
        let outcome = exercise(&browser).await;
        outcome.map_err(|err| anyhow!("{err:#}\n--- Chromium log ---\n{}", browser.log_tail(40)))
    }

    async fn exercise(browser: &Browser) -> Result<()> {
        let page = browser
            .new_page(
                "data:text/html,<title>x</title><script>window.v=41+1;console.log('hi',1)</script>",
            )
            .await?;
        assert_eq!(page.evaluate("window.v").await?, json!(42));
        assert_eq!(page.evaluate("document.title").await?, json!("x"));
        assert_eq!(page.evaluate("Promise.resolve(7)").await?, json!(7));
        assert_eq!(page.evaluate("undefined").await?, Value::Null);

        let err = page.evaluate("notDefined()").await.unwrap_err();
        let exception = err.downcast_ref::<JsException>().expect("a JsException");
        assert_eq!(exception.class_name.as_deref(), Some("ReferenceError"));

        page.evaluate("setTimeout(() => { window.later = 'yes' }, 300)")
            .await?;
        let later = page
            .wait_for("window.later", Duration::from_secs(5))
            .await?;
        assert_eq!(later, json!("yes"));
        assert!(
            page.wait_for("false", Duration::from_millis(300))
                .await
                .is_err()
        );
        let started = Instant::now();
        let err = page
            .wait_for("(", Duration::from_secs(10))
            .await
            .unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a syntax error must fail fast: {err:#}"
        );

        assert!(
            page.console_tail().contains(&"log: hi 1".to_owned()),
            "{:?}",
            page.console_tail()
        );

        let shot = browser.log_path().with_file_name("shot.png");
        page.screenshot_png(&shot).await?;
        assert!(std::fs::read(&shot)?.starts_with(b"\x89PNG"));

        page.close().await
    }
}
