//! Service days with their ground truth, to measure matching as a host would judge it.
//!
//! [`floor::generate`] builds one restaurant's day from a seed: lunch and dinner with two or
//! three turns per table, early and late arrivals, parties moved to another table, bar tabs
//! moved to tables, joined tables, split bills, separate checks per guest, walk-ins,
//! no-shows (some seated over by walk-ins), cancellations, checks reopened for a tip,
//! refunds days later, and deliveries duplicated and delayed by partner retries. Each day
//! knows which booking every check belongs to.
//!
//! [`run::run`] plays days against a running diarysync through its public HTTP surface (the
//! admin API for the diary, Lightspeed K-Series order and reservation-status notifications
//! for the floor) and scores the final diary ([`score::Score`]): precision (matches that are
//! right), recall (checks of a reservation that land on it) and the ambiguity rate.
//!
//! The floor's numbers (no-show and cancellation rates, arrival spread, how long a table
//! is held, lunch and dinner lengths) are the published ones `docs/MATCHING.md` cites.
//! Used by `diarysync simulate`, by the test suite on fixed seeds (both stores), and by
//! anyone changing a matching rule.

pub mod floor;
pub mod run;
pub mod score;
mod wire;

pub use floor::{Day, generate};
pub use run::{Target, run};
pub use score::Score;
