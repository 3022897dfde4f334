//! The harness the gateway's integration tests share (`mod common;` in each): a fresh database
//! per test (a SQLite file in a temporary directory, or a new PostgreSQL database on
//! `DUET_TEST_PG_SERVER`, by default `postgres://postgres@127.0.0.1:5432`), removed afterwards;
//! [`run`], which builds a test's world on it and runs the scenario; and [`Api`], the router
//! driven without sockets (`oneshot`) with a session cookie and CSRF token per [`Client`].

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use duet_gateway::store::{Store, new_id};
use duet_gateway::{AppState, GatewayConfig, app};
use duet_sfu_proto::TokenKey;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use sqlx::Connection;
use std::path::PathBuf;
use std::sync::Arc;
use tower::ServiceExt;

/// Every test user's password.
pub const PW: &str = "correct horse battery";

fn pg_server() -> String {
    std::env::var("DUET_TEST_PG_SERVER")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// Where a test's database lives, to remove it afterwards.
enum Backing {
    Sqlite(PathBuf),
    Postgres(String),
}

/// A test's own database, and a scratch directory for its files.
struct Db {
    store: Store,
    /// The database's URL, for writing rows directly.
    url: String,
    /// A directory for the test's files (not created here), removed afterwards.
    scratch: PathBuf,
    backing: Backing,
}

impl Db {
    /// A fresh database for the test binary `name` (`api`, `archive`, …).
    async fn open(postgres: bool, name: &str) -> Db {
        sqlx::any::install_default_drivers();
        let scratch = std::env::temp_dir().join(new_id(&format!("duet-{name}-files")));
        if postgres {
            let db = new_id(&format!("duet_{name}_test"));
            let admin_url = format!("{}/postgres", pg_server());
            let mut admin = sqlx::AnyConnection::connect(&admin_url).await.unwrap_or_else(|e| {
                panic!("PostgreSQL is not reachable at {admin_url} ({e}); start it with `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`")
            });
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
                .execute(&mut admin)
                .await
                .unwrap();
            admin.close().await.ok();
            let url = format!("{}/{db}", pg_server());
            let store = Store::open(&url).await.unwrap();
            Db {
                store,
                url,
                scratch,
                backing: Backing::Postgres(db),
            }
        } else {
            let dir = std::env::temp_dir().join(new_id(&format!("duet-{name}-test")));
            let store = Store::sqlite_in(&dir).await.unwrap();
            let url = format!("sqlite://{}?mode=rw", dir.join("duet.db").display());
            Db {
                store,
                url,
                scratch,
                backing: Backing::Sqlite(dir),
            }
        }
    }

    /// Closes the store and removes the database and the scratch directory.
    async fn cleanup(self) {
        self.store.close().await;
        let _ = std::fs::remove_dir_all(&self.scratch);
        match self.backing {
            Backing::Sqlite(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            Backing::Postgres(name) => {
                if let Ok(mut admin) =
                    sqlx::AnyConnection::connect(&format!("{}/postgres", pg_server())).await
                {
                    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut admin)
                    .await;
                }
            }
        }
    }
}

/// Runs one scenario on SQLite and on PostgreSQL, as two tests (`scenario::sqlite`,
/// `scenario::postgres`) calling the test binary's `run(postgres, scenario)`:
/// `on_both!(scenario)`, or `on_both!(scenario, flavor = "multi_thread")` with the options of
/// `#[tokio::test]`.
macro_rules! on_both {
    ($name:ident $(, $($options:tt)+)?) => {
        mod $name {
            #[tokio::test$(($($options)+))?]
            async fn sqlite() {
                super::run(false, super::$name).await;
            }
            #[tokio::test$(($($options)+))?]
            async fn postgres() {
                super::run(true, super::$name).await;
            }
        }
    };
}
pub(crate) use on_both;

/// Runs one scenario of the test binary `name` on a fresh database: builds the world with
/// `world(store, url, scratch)` (the database's URL, for writing rows directly; a directory for
/// the test's files, not created, removed afterwards), runs `body` on it in its own task, cleans
/// up, then passes on the body's panic.
pub async fn run<W, F, Fut>(
    postgres: bool,
    name: &str,
    world: impl AsyncFnOnce(Store, String, PathBuf) -> W,
    body: F,
) where
    F: FnOnce(W) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let db = Db::open(postgres, name).await;
    let world = world(db.store.clone(), db.url.clone(), db.scratch.clone()).await;
    let result = tokio::spawn(body(world)).await;
    db.cleanup().await;
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}

/// A logged-in browser: its session cookie and CSRF token.
pub struct Client {
    pub cookie: String,
    pub csrf: String,
}

/// An answer, its body read.
pub struct Resp {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    /// The error's `code` (empty if none).
    #[allow(dead_code)] // not every test binary reads error codes
    pub fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or("").to_owned()
    }
}

/// The router of one [`AppState`]; a test's world dereferences to it.
pub struct Api {
    pub state: Arc<AppState>,
}

impl Api {
    /// A ready gateway of `config` on `store`, signing with `key` (16 bytes or more).
    pub fn new(config: GatewayConfig, key: &[u8], store: Store) -> Api {
        let state = Arc::new(AppState::new(
            config,
            TokenKey::new(key).expect("a long enough key"),
            store,
        ));
        state
            .ready
            .store(true, std::sync::atomic::Ordering::Release);
        Api { state }
    }

    /// Sends a request, with `client`'s cookie (and CSRF token unless GET or HEAD) and the
    /// `extra` headers.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        client: Option<&Client>,
        body: Option<Value>,
        extra: &[(&str, &str)],
    ) -> Resp {
        let mut req = Request::builder().method(method.clone()).uri(path);
        if let Some(c) = client {
            req = req.header(header::COOKIE, format!("duet_session={}", c.cookie));
            if method != Method::GET && method != Method::HEAD {
                req = req.header("x-csrf-token", &c.csrf);
            }
        }
        for (k, v) in extra {
            req = req.header(*k, *v);
        }
        let req = match body {
            Some(b) => req
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(b.to_string()))
                .unwrap(),
            None => req.body(Body::empty()).unwrap(),
        };
        let res = app(self.state.clone()).oneshot(req).await.unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        Resp {
            status,
            headers,
            body: res.into_body().collect().await.unwrap().to_bytes().to_vec(),
        }
    }

    pub async fn login(&self, username: &str) -> Client {
        self.login_with(username, PW).await
    }

    /// Logs in, checking the session cookie is `HttpOnly` and `SameSite=Lax`.
    pub async fn login_with(&self, username: &str, password: &str) -> Client {
        let r = self
            .call(
                Method::POST,
                "/api/login",
                None,
                Some(json!({"username": username, "password": password})),
                &[],
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "login {username}: {}", r.text());
        let cookie = r.headers[header::SET_COOKIE].to_str().unwrap().to_owned();
        assert!(
            cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
            "{cookie}"
        );
        let value = cookie
            .split(';')
            .next()
            .unwrap()
            .trim_start_matches("duet_session=")
            .to_owned();
        Client {
            cookie: value,
            csrf: r.json()["csrf_token"].as_str().unwrap().to_owned(),
        }
    }

    pub async fn get(&self, c: &Client, path: &str) -> Resp {
        self.call(Method::GET, path, Some(c), None, &[]).await
    }

    pub async fn post(&self, c: &Client, path: &str, body: Value) -> Resp {
        self.call(Method::POST, path, Some(c), Some(body), &[])
            .await
    }
}
