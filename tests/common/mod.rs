//! Helpers shared by the integration tests; each test binary uses a subset.
#![allow(dead_code)]

pub mod cloudtrail;
pub mod config;
pub mod events;
pub mod iam;
pub mod moto;
pub mod postgres;
pub mod proxy;
pub mod rotation_host;
pub mod rotationd;
