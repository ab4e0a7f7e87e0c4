//! Outbound channels of duban: email (SMTP) and SMS.
//!
//! Nothing lives here yet. The notifications issue fills it with a
//! `Notifier` trait and its email and SMS implementations; the crate exists
//! now so that the workspace has its final shape and the dependency rule
//! (`notifiers` depends on `engine`, never the reverse) holds from the start.
