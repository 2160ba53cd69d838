//! One module per part of the file, each turning its raw tables into the validated types
//! and reporting its own mistakes. They run in file-independent order (see `build` in
//! [`super`]): a later section is checked against what the earlier ones declared.

pub(super) mod accounts;
pub(super) mod alerts;
pub(super) mod daemon;
pub(super) mod dependents;
pub(super) mod events;
pub(super) mod groups;
pub(super) mod policy;
pub(super) mod requests;
pub(super) mod secrets;
pub(super) mod settings;
pub(super) mod state;
