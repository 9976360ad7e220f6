//! The probe and client against a local fake Prometheus API: result shapes,
//! error mapping, auth, timeouts, range queries.

mod fake;
mod history;
mod requests;
mod results;
