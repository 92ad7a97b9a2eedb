//! diarysync: a partner-event gateway for a venue booking platform.
//!
//! Point-of-sale systems and booking platforms post their *native* webhooks; a handler per
//! partner maps each payload onto our model, and diarysync stores the raw event, resolves the
//! venue, matches each sale to its booking and updates the diary, exactly once however often
//! a delivery is retried.
//!
//! # Layout
//! - [`domain`]: the model and its rules (bookings, sales, matching, status moves, spend).
//!   No HTTP, no SQL.
//! - [`partners`]: one module per partner behind [`partners::PartnerHandler`], plus the
//!   authentication schemes ([`partners::auth`]) and shared wire readers.
//! - [`gateway`]: the pipeline from a raw delivery to a committed outcome ([`gateway::Receipt`]),
//!   and replay; [`fetcher`]: fetches the details of notifications that only point at them.
//! - [`store`]: the [`store::Store`] trait, its SQL implementation, SQLite and PostgreSQL
//!   dialects and migrations.
//! - [`http`]: routes only: partner endpoints, admin API and its OpenAPI document, the
//!   operator's pages (sessions, templates in `templates/`), health and metrics.
//! - [`simulate`]: service days with their ground truth, played over HTTP to measure
//!   matching.
//! - [`accounts`]: operators' passwords (Argon2id) and the brake on guessing them; who may
//!   do what is [`domain::access`].
//! - [`config`]: the validated configuration; [`app`]: building and running the service;
//!   [`error`]: the admin API's error table; [`telemetry`]: logs and metrics.
//!
//! `docs/ARCHITECTURE.md` walks through a request end to end.

pub mod accounts;
pub mod app;
pub mod config;
pub mod domain;
pub mod error;
pub mod fetcher;
pub mod gateway;
pub mod http;
pub mod partners;
pub mod replay_cache;
pub mod retention;
pub mod schedule;
pub mod sealed;
pub mod silence;
pub mod simulate;
pub mod store;
pub mod telemetry;
pub mod user_command;
pub mod webhooks;
