//! The generic webhook's body: the notice as JSON, with its title and one
//! line of summary, for tools that take their own decisions.

use serde_json::{Value, json};

use super::Notice;

/// The version of the webhook's body; a change that removes or renames a
/// field raises it.
pub const WEBHOOK_VERSION: u32 = 1;

/// The JSON body posted to the webhook.
pub(crate) fn payload(n: &Notice) -> Value {
    json!({
        "version": WEBHOOK_VERSION,
        "event": n.event,
        "target": n.target,
        "at": n.at.to_string(),
        "revision": n.revision,
        "to": n.to,
        "breach": n.breach,
        "title": n.title(),
        "summary": n.summary(),
        "detail": n.detail,
        "next": n.next,
    })
}
