//! rotationd keeps service-to-service credentials in AWS Secrets Manager in rotation
//! compliance, unattended: it plans rotations from a TOML schedule, rotates each secret in
//! its window through Secrets Manager's staged rotation, reacts to events, escalates to
//! Security and records everything it did.
//!
//! The binary (`src/main.rs`) only parses the command line (clap is the binary's alone),
//! calls [`cli`] and maps its errors to exit codes; the library is these modules:
//!
//! - [`clock`], [`arn`], [`ticket`], [`filter_pattern`], [`test_hooks`]: leaf modules
//!   every other one may use (they use none but `clock` uses `test_hooks`): the time
//!   rotationd acts on, the one ARN parser and partition list, ticket shapes, CloudWatch
//!   Logs filter patterns, the clock offset and failpoints of test builds.
//! - [`config`]: the TOML file parsed into a validated [`config::Config`], with every
//!   error located (`FILE:LINE:COL`).
//! - [`schedule`]: crontab expressions and `@quarterly`-style aliases, in UTC, and
//!   ([`schedule::aws_cron`]) the same schedule written as Secrets Manager rotation rules.
//! - [`planner`]: pure planning: windows, compliance status, staggered starts.
//! - [`store`]: the SQLite state store (triggers, attempts, audit log, outbox), run on its
//!   own thread; with `[state] backend = "dynamodb"` a replica of a log shared through
//!   DynamoDB ([`store::journal`], behind the [`store::shared_log::SharedLog`] trait), and
//!   the leader lease with its fencing token ([`store::dynamodb::lease`]).
//! - [`aws`]: every AWS client and call: SDK configuration, one client per account-region
//!   (`[[account]]`, roles assumed through STS), request counting, retryable/fatal errors,
//!   and a small typed wrapper per service (the only Secrets Manager one has no call that
//!   reads or writes a value).
//! - [`directory`]: the IAM Identity Center directory (`[identity_center]`), read once per
//!   reconcile and remembered in the store, that turns a departure's user id into the
//!   names and groups custodians are written with.
//! - [`inventory`]: the fleet from filtered `ListSecrets` pages, and the facts per secret.
//! - [`engine`]: one rotation attempt as a persisted state machine (checklist, RotateSecret,
//!   monitoring of the four stages, validation).
//! - [`validation`]: the post-rotation watch of dependents in CloudWatch (alarms, metrics,
//!   authentication errors in their logs), the `dependents_unhealthy` escalation and the
//!   optional automatic rollback.
//! - [`drift`]: Secrets Manager's own rotation schedule against the TOML one
//!   (`[policy] native_schedule` report / sync / disable).
//! - [`events`]: EventBridge-through-SQS consumer, CloudTrail catch-up, the normalizer, and
//!   `setup-events`.
//! - [`requests`]: CommandBridge's rotation and rollback requests under the guide's
//!   approval policy, answered on the bus.
//! - [`alerts`]: SNS escalations and notices through an outbox, with the guide's runbooks.
//! - [`metrics`]: every Prometheus metric, in one place.
//! - [`daemon`]: `rotationd run`: the loops, systemd notify/watchdog, reload, and the
//!   leader/standby roles on the DynamoDB backend.
//! - [`rollback`]: AWSCURRENT back to AWSPREVIOUS, decided then verified: the one
//!   rollback of `rotationd rollback`, rollback requests and `auto_rollback`.
//! - [`cli`]: the CLI commands, one module each, returning [`cli::CliError`]; `cli::audit`
//!   shows the audit log as table, JSON or CSV and verifies its hash chain, from the
//!   state database alone.
//! - [`telemetry`]: logging setup.
//!
//! No two top-level modules depend on each other, directly or through others:
//! `tests/module_graph.rs` checks it (ARCHITECTURE.md, "Module layering").
//!
//! See `ARCHITECTURE.md` for the bird's-eye view and the invariants.

pub mod alerts;
pub mod arn;
pub mod aws;
pub mod cli;
pub mod clock;
pub mod config;
pub mod daemon;
pub mod directory;
pub mod drift;
pub mod engine;
pub mod events;
pub mod filter_pattern;
pub mod inventory;
pub mod metrics;
pub mod planner;
pub mod report;
pub mod requests;
pub mod rollback;
pub mod schedule;
pub mod store;
pub mod telemetry;
pub mod test_hooks;
pub mod ticket;
pub mod validation;
