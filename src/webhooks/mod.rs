//! The diary out: subscriptions' messages pushed as Standard Webhooks
//! (<https://www.standardwebhooks.com>), signed, retried with back-off, in order per booking.
//!
//! `sign` makes a subscription's secret and the `webhook-*` headers; `target` decides which
//! URLs a subscription may reach (no credentials, no internal address ranges, checked again at
//! every connection so DNS cannot swap one in); `dispatch` is the loop each node runs. What is
//! sent comes from the store's change feed, written with the changes themselves
//! (`store::changes`), so a crash between a commit and its delivery loses nothing.

pub mod dispatch;
pub mod sign;
pub mod target;
