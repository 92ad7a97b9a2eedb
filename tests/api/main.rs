//! Black-box tests: a real diarysync over HTTP with the seeds' payloads, each scenario on
//! SQLite and on PostgreSQL.

mod helpers;

mod abuse;
mod accounts;
mod accounts_attacks;
mod admin;
mod auth;
mod concurrency;
mod contract;
mod crash;
mod deadlines;
mod diary;
mod floor;
mod fuzz_regressions;
mod hostile;
mod lightspeed;
mod logs;
mod migrations;
mod onboarding;
mod onboarding_attacks;
mod openapi;
mod operator;
mod ordering;
mod pages;
mod pages_scripts;
mod partner_http;
mod platform_link;
mod platforms;
mod process;
mod receiver;
mod replays;
mod resilience;
mod retention;
mod script_editing;
mod script_editing_attacks;
mod scripts;
mod simulation;
mod stalled;
mod tourcms_api;
mod variants;
mod workload;
