//! offramp: employee offboarding as YAML pipelines of sandboxed WebAssembly steps.
//!
//! The modules follow the data flow: a request ([`cli`] or [`slack`]) starts a run in the
//! [`engine`], which runs each step's plugin in the [`sandbox`]; the plugin's HTTP goes through
//! [`http`] (the one place requests are checked); every transition lands in the [`store`].
//! [`pipeline`] is the YAML model and its validation.

pub mod cli;
pub mod credentials;
mod digest;
pub mod engine;
pub mod http;
pub mod pipeline;
pub mod sandbox;
pub mod secrets;
pub mod slack;
pub mod store;
mod text;

/// Where `cargo build` put the bundled plugins (set by build.rs).
pub const BUILTIN_PLUGINS_DIR: &str = env!("OFFRAMP_BUILTIN_PLUGINS_DIR");

/// For tests and benches: a plugins directory holding every bundled plugin and every test-only
/// plugin (`testkit`, `adversary`, `legacy`, `liar`, built from `plugins/tests/`) — links made
/// by build.rs. The binary never searches it.
#[doc(hidden)]
pub const TEST_PLUGINS_DIR: &str = env!("OFFRAMP_TEST_PLUGINS_DIR");
