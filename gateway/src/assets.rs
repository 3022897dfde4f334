//! The browser client and the gateway's pages, embedded at compile time so every asset is served
//! by Duet itself (school networks often block public CDNs).

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
    (
        "/assets/admin.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/admin.js"),
    ),
    (
        "/assets/admin-i18n.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/admin-i18n.js"),
    ),
    (
        "/assets/admin.css",
        "text/css; charset=utf-8",
        include_str!("../web/admin.css"),
    ),
];

/// The live-class page.
pub const INDEX_HTML: &str = include_str!("../web/index.html");
/// The sign-in, today and administration page.
pub const ADMIN_HTML: &str = include_str!("../web/admin.html");
