//! A signed-in person on the gateway's HTTP API, for tests: logs in with a user name and
//! password (`POST /api/login`), keeps the session cookie and the CSRF token, and sends JSON.
//! Blocking (ureq); call it from `spawn_blocking` or a plain thread inside async tests.

use anyhow::{Context, Result};
use serde_json::Value;
use std::time::Duration;

/// One signed-in account.
#[derive(Clone)]
pub struct ApiSession {
    base: String,
    cookie: String,
    csrf: String,
    agent: ureq::Agent,
}

/// An answer: status and JSON body (`Value::Null` when the body is not JSON).
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// The body as JSON.
    pub body: Value,
}

fn agent() -> ureq::Agent {
    ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(60))
        .redirects(0)
        .build()
}

fn answer(r: Result<ureq::Response, ureq::Error>) -> Result<Answer> {
    let response = match r {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => return Err(e.into()),
    };
    let status = response.status();
    let text = response.into_string().unwrap_or_default();
    Ok(Answer {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
    })
}

impl ApiSession {
    /// Signs in at `base` (`http://host:port`).
    pub fn login(base: &str, username: &str, password: &str) -> Result<ApiSession> {
        let agent = agent();
        let response = agent
            .post(&format!("{base}/api/login"))
            .send_json(serde_json::json!({"username": username, "password": password}))
            .with_context(|| format!("login as {username}"))?;
        let cookie = response
            .all("set-cookie")
            .into_iter()
            .find_map(|c| {
                c.split(';')
                    .next()
                    .filter(|kv| kv.starts_with("duet_session="))
            })
            .map(str::to_owned)
            .context("no session cookie")?;
        let body: Value = response.into_json()?;
        let csrf = body["csrf_token"]
            .as_str()
            .context("no csrf_token")?
            .to_owned();
        Ok(ApiSession {
            base: base.trim_end_matches('/').to_owned(),
            cookie,
            csrf,
            agent,
        })
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> Result<Answer> {
        answer(
            self.agent
                .get(&format!("{}{path}", self.base))
                .set("Cookie", &self.cookie)
                .call(),
        )
    }

    /// A changing request (`POST`, `PUT`, `DELETE`) with a JSON body.
    pub fn send(&self, method: &str, path: &str, body: &Value) -> Result<Answer> {
        answer(
            self.agent
                .request(method, &format!("{}{path}", self.base))
                .set("Cookie", &self.cookie)
                .set("X-CSRF-Token", &self.csrf)
                .send_json(body.clone()),
        )
    }

    /// The cookie header value (to sign a browser page in with the same session).
    pub fn cookie(&self) -> &str {
        &self.cookie
    }
}

/// `GET url` without a session (signed media URLs): status, headers of interest, body bytes.
pub fn fetch(url: &str, range: Option<&str>) -> Result<(u16, Option<String>, Vec<u8>)> {
    let mut request = agent().get(url);
    if let Some(r) = range {
        request = request.set("Range", r);
    }
    let response = match request.call() {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => return Err(e.into()),
    };
    let status = response.status();
    let content_range = response.header("content-range").map(str::to_owned);
    let mut body = Vec::new();
    std::io::Read::read_to_end(&mut response.into_reader(), &mut body)?;
    Ok((status, content_range, body))
}
