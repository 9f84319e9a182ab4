//! The plugin catalog against the mock vendors: each plugin's actions, idempotency (a second
//! run is `unchanged`), the vendor's rate-limit signal turned into a wait, and the vendor's
//! error body turned into a readable message. One file per vendor.

#[path = "../common/mod.rs"]
mod common;

mod atlassian;
mod github;
mod google;
mod graph;
mod okta;
mod slack;
mod zoom;
