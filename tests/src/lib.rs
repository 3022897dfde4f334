//! Test support for Duet's end-to-end tests, which drive real Chromium peers
//! against the Duet services.
//!
//! Modules:
//! - [`netns`]: moves a `harness = false` test binary into a private network
//!   namespace with a veth pair on `10.200.0.0/24`, so Chromium has a
//!   non-loopback interface to gather ICE candidates on while no traffic
//!   leaves the test; plus `tc` link-shaping helpers.
//! - [`browser`]: a minimal Chrome DevTools Protocol client: launch headless
//!   Chromium ([`Browser`]), open isolated tabs ([`Page`]), evaluate
//!   JavaScript, poll for conditions, take screenshots, read console output.
//! - [`load`]: the SFU load tool (webrtc-rs participants playing classes against Duet or Janus),
//!   behind the `duet-load` binary and the load smoke test.
//! - [`api`]: a signed-in account on the gateway's HTTP API (cookie and CSRF), and fetching
//!   signed media URLs.
//! - [`class`]: reading Duet's class page in browser tests, and the runner of their cases.
//! - [`shaper`]: link shaping in userspace (delay, loss, rate, queue, per direction) by a TURN
//!   relay that pages are forced through, since this kernel has no `netem`.

pub mod api;
pub mod browser;
pub mod class;
pub mod load;
pub mod netns;
pub mod shaper;

pub use browser::{Browser, JsException, LaunchOptions, Page};
pub use netns::{TestNet, enter_private_network};
