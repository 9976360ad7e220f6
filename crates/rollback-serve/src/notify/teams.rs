//! A Microsoft Teams Workflows webhook's message ("Post to a channel when a
//! webhook request is received"): one Adaptive Card (1.4) in a `message`
//! envelope. Office 365 connector cards are retired; Workflows take
//! Adaptive Cards only.

use serde_json::{Value, json};

use super::Notice;

/// The JSON body posted to the workflow's URL.
pub(crate) fn payload(n: &Notice) -> Value {
    let color = if n.event.needs_humans() {
        "Attention"
    } else {
        "Good"
    };
    let facts: Vec<Value> = n
        .facts()
        .into_iter()
        .map(|(title, value)| json!({"title": title, "value": value}))
        .collect();
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "msteams": {"width": "Full"},
                "body": [
                    {"type": "TextBlock", "text": n.title(), "weight": "Bolder", "size": "Medium", "color": color, "wrap": true},
                    {"type": "FactSet", "facts": facts},
                    {"type": "TextBlock", "text": "What happens next", "weight": "Bolder", "wrap": true},
                    {"type": "TextBlock", "text": n.next, "wrap": true},
                    {"type": "TextBlock", "text": format!("rollback serve · {} · {}", n.event, n.at), "isSubtle": true, "size": "Small", "wrap": true}
                ]
            }
        }]
    })
}
