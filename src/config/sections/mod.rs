//! One module per part of the file, each turning its raw tables into the validated types
//! and reporting its own mistakes. `build` in [`super`] calls them in a fixed order, the
//! same whatever the order of the file, so that a section can be checked against what the
//! ones before it declared (`[[secret]]` against `[[account]]`, `[[group]]` and
//! `[[dependent]]`; `[requests]` against `[events]`).

pub(super) mod accounts;
pub(super) mod alerts;
pub(super) mod audit;
pub(super) mod daemon;
pub(super) mod dependents;
pub(super) mod events;
pub(super) mod groups;
pub(super) mod policy;
pub(super) mod requests;
pub(super) mod secrets;
pub(super) mod settings;
pub(super) mod state;
pub(super) mod vendors;
