//! The browser client, embedded at compile time so every asset is served by Duet itself
//! (school networks often block public CDNs).

/// `(path, content type, body)` of every asset.
pub const ASSETS: &[(&str, &str, &str)] = &[
    (
        "/assets/app.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/app.js"),
    ),
    (
        "/assets/i18n.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/i18n.js"),
    ),
    (
        "/assets/style.css",
        "text/css; charset=utf-8",
        include_str!("../web/style.css"),
    ),
];

/// The single page.
pub const INDEX_HTML: &str = include_str!("../web/index.html");
