//! A Slack incoming webhook's message: Block Kit with a plain-text
//! fallback (`text`, shown in notifications and by clients without
//! blocks).

use serde_json::{Value, json};

use super::Notice;
use super::text::cut;

/// Escape what Slack's mrkdwn reads as markup (`&`, `<`, `>`), so a target
/// name or an alert summary cannot mention `@channel` or forge a link.
pub(crate) fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The JSON body posted to the webhook URL.
pub(crate) fn payload(n: &Notice) -> Value {
    let icon = if n.event.needs_humans() {
        ":rotating_light:"
    } else {
        ":leftwards_arrow_with_hook:"
    };
    // Slack shows at most 10 fields of at most 2000 characters each.
    let fields: Vec<Value> = n
        .facts()
        .into_iter()
        .take(10)
        .map(|(label, value)| {
            json!({"type": "mrkdwn", "text": cut(&format!("*{label}*\n{}", escape(&value)), 2000)})
        })
        .collect();
    json!({
        "text": cut(&escape(&n.summary()), 3000),
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": cut(&n.title(), 150), "emoji": true}},
            {"type": "section", "fields": fields},
            {"type": "section", "text": {"type": "mrkdwn", "text": cut(&format!("*What happens next*\n{}", escape(&n.next)), 3000)}},
            {"type": "context", "elements": [
                {"type": "mrkdwn", "text": cut(&format!("{icon} rollback serve · {} · {}", n.event, n.at), 3000)}
            ]}
        ]
    })
}
