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
    (
        "/assets/review.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/review.js"),
    ),
    (
        "/assets/review-i18n.js",
        "text/javascript; charset=utf-8",
        include_str!("../web/review-i18n.js"),
    ),
    (
        "/assets/review.css",
        "text/css; charset=utf-8",
        include_str!("../web/review.css"),
    ),
];

/// The live-class page.
pub const INDEX_HTML: &str = include_str!("../web/index.html");
/// The sign-in, today and administration page.
pub const ADMIN_HTML: &str = include_str!("../web/admin.html");
/// The review page of one lesson (player, comments, score sheets, S-T analysis, clip export);
/// the lesson id is read by the page from its own path.
pub const REVIEW_HTML: &str = include_str!("../web/review.html");
