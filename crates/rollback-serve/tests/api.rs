//! The operator API driven with plain HTTP requests, as a chat bot would:
//! list, one target, timeline, every command, every error; and the OpenAPI
//! description checked against the routes and the answers.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{BOT, Bot, SERVE, Shelf, VIEWER, events, start, until, write};
use rollback_core::audit::MemoryAuditSink;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

fn watch_file(dir: &std::path::Path) -> std::path::PathBuf {
    write(
        dir,
        "rollback.yaml",
        &format!(
            r#"policy:
  interval: 100ms
  bake_time: 1h
  verify: 300ms
  approval: manual
probes:
  - name: error_rate
    success: "< 0.01"
    scripted:
      per_revision: {{bad: [0.05], v1: [0.001], v2: [0.001]}}
targets:
  - url: shelf://shop/web
  - url: shelf://shop/api
  - url: shelf://shop/db
{SERVE}  alertmanager:
    bearer_token: "${{AM_TOKEN}}"
    routes: [{{matchers: ['alertname="HighErrorRate"'], target: "shop/{{service}}"}}]
"#
        ),
    )
}

async fn phase_of(bot: &Bot, id: &str) -> String {
    let (_, v) = bot.get(&format!("/api/v1/targets/{id}")).await;
    v["phase"]["phase"].as_str().unwrap_or("").to_owned()
}

async fn wait_phase(bot: &Bot, id: &str, phase: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let now = phase_of(bot, id).await;
        if now == phase {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{id} did not reach {phase} (it is {now})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_bot_reads_commands_and_is_told_what_went_wrong() {
    let dir = tempfile::tempdir().unwrap();
    let shelf = Shelf::default();
    shelf.put("shop/web", &["v1", "v2"]);
    let (api, _) = shelf.put("shop/api", &["v1", "bad"]);
    shelf.put("shop/db", &["v1", "v2"]);
    let audit = MemoryAuditSink::new();
    let server = start(&watch_file(dir.path()), shelf.registry(), &audit).await;
    let anonymous = Bot::new(&server, None);
    let viewer = Bot::new(&server, Some(VIEWER));
    let bot = Bot::new(&server, Some(BOT));

    assert_eq!(
        anonymous.get("/healthz").await,
        (200, json!({"status": "ok"}))
    );
    assert_eq!(
        anonymous.get("/readyz").await,
        (200, json!({"status": "ready", "targets": 3}))
    );

    // Reading takes a valid token.
    let (status, body) = anonymous.get("/api/v1/targets").await;
    assert_eq!(status, 401);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("Authorization: Bearer"),
        "{body}"
    );
    let (status, body) = Bot::new(&server, Some("guess"))
        .get("/api/v1/targets")
        .await;
    assert_eq!(
        (status, body),
        (
            401,
            json!({"error": "the token is not one of serve.operators"})
        )
    );

    // The bad revision of shop/api breaches and waits for approval.
    wait_phase(&viewer, "shop%2Fapi", "awaiting_approval").await;
    let (status, list) = viewer.get("/api/v1/targets").await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = list["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["target"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["shop/api", "shop/db", "shop/web"]);
    let api_view = &list["targets"][0];
    assert_eq!(api_view["url"], "shelf://shop/api");
    assert_eq!(api_view["revision"], "bad");
    assert_eq!(api_view["phase"]["to"], "v1");
    assert_eq!(api_view["last_decision"]["decision"], "await_approval");
    assert!(
        api_view["last_decision"]["detail"]
            .as_str()
            .unwrap()
            .contains("probe error_rate failed 1 times"),
        "{api_view}"
    );
    assert_eq!(
        api_view["supervision"],
        json!({"state": "watching", "revision": "bad"})
    );

    // A viewer may not command; an unauthenticated command is refused; both audited.
    let (status, body) = viewer.post("/api/v1/targets/shop%2Fweb/pause", None).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("viewer may not pause target shop/web"),
        "{body}"
    );
    let (status, _) = anonymous
        .post("/api/v1/targets/shop%2Fapi/approve", None)
        .await;
    assert_eq!(status, 401);
    assert!(events(&audit, "shop/web").contains(&"viewer pause denied".to_owned()));
    assert!(events(&audit, "shop/api").contains(&"unauthenticated approve denied".to_owned()));
    assert_eq!(api.current_id().as_str(), "bad", "nothing was done");

    // Pause, a pause again (rejected: 409 with the reason), resume.
    assert_eq!(
        bot.post("/api/v1/targets/shop%2Fweb/pause", None).await,
        (
            200,
            json!({"target": "shop/web", "command": "pause", "phase": "paused"})
        )
    );
    let (status, body) = bot.post("/api/v1/targets/shop%2Fweb/pause", None).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .starts_with("cannot pause target shop/web"),
        "{body}"
    );
    assert_eq!(
        bot.post("/api/v1/targets/shop%2Fweb/resume", None).await.1["phase"],
        "observing"
    );

    // Approve: shop/api rolls back to v1 and is verified.
    let (status, body) = bot.post("/api/v1/targets/shop%2Fapi/approve", None).await;
    assert_eq!(status, 200, "{body}");
    wait_phase(&viewer, "shop%2Fapi", "rolled_back").await;
    assert_eq!(api.current_id().as_str(), "v1");

    // Rollback: a body that is not {"to": …} is 400; a revision not in
    // the history is 409; to v1 is done.
    let (status, body) = bot
        .post(
            "/api/v1/targets/shop%2Fweb/rollback",
            Some(r#"{"too": "v1"}"#),
        )
        .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("unknown field `too`"),
        "{body}"
    );
    let (status, body) = bot
        .post(
            "/api/v1/targets/shop%2Fweb/rollback",
            Some(r#"{"to": "v9"}"#),
        )
        .await;
    assert_eq!(status, 409);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("revision v9 is not in the history"),
        "{body}"
    );
    let (status, body) = bot
        .post(
            "/api/v1/targets/shop%2Fweb/rollback",
            Some(r#"{"to": "v1"}"#),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    wait_phase(&viewer, "shop%2Fweb", "rolled_back").await;

    // Promote; promote again is rejected.
    assert_eq!(
        bot.post("/api/v1/targets/shop%2Fdb/promote", None).await,
        (
            200,
            json!({"target": "shop/db", "command": "promote", "phase": "promoted"})
        )
    );
    assert_eq!(
        bot.post("/api/v1/targets/shop%2Fdb/promote", None).await.0,
        409
    );

    // Unknown targets and routes.
    let (status, body) = bot.get("/api/v1/targets/shop%2Fnope").await;
    assert_eq!(status, 404);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("GET /api/v1/targets lists"),
        "{body}"
    );
    assert_eq!(
        bot.post("/api/v1/targets/shop%2Fnope/pause", None).await.0,
        404
    );
    assert_eq!(bot.get("/api/v2/targets").await.0, 404);
    let r = bot
        .http
        .delete(format!("{}/api/v1/targets", bot.base))
        .bearer_auth(BOT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("does not take that method")
    );

    // The timeline shows the approval; limit cuts it; a bad query is 400.
    let (status, t) = viewer.get("/api/v1/targets/shop%2Fapi/timeline").await;
    assert_eq!(status, 200);
    assert_eq!(t["target"], "shop/api");
    let records = t["records"].as_array().unwrap();
    let by_bot: Vec<&Value> = records
        .iter()
        .filter(|r| r["event"] == "command_accepted")
        .collect();
    assert_eq!(by_bot.len(), 1, "{t}");
    assert_eq!(by_bot[0]["actor"], "chatops-bot");
    assert_eq!(by_bot[0]["command"], "approve");
    let (_, short) = viewer
        .get("/api/v1/targets/shop%2Fapi/timeline?limit=2")
        .await;
    assert_eq!(short["records"].as_array().unwrap().len(), 2);
    assert_eq!(short["records"][1], *records.last().unwrap());
    assert_eq!(
        viewer
            .get("/api/v1/targets/shop%2Fapi/timeline?limit=x")
            .await
            .0,
        400
    );
    assert_eq!(
        viewer
            .get("/api/v1/targets/shop%2Fapi/timeline?since=1")
            .await
            .0,
        400
    );

    // The metrics counted the commands.
    let metrics = reqwest::get(format!("{}/metrics", server.url()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        r#"rollback_api_commands_total{command="pause",outcome="denied"} 1"#,
        r#"rollback_api_commands_total{command="approve",outcome="unauthenticated"} 1"#,
        r#"rollback_api_commands_total{command="approve",outcome="accepted"} 1"#,
        r#"rollback_api_commands_total{command="rollback",outcome="rejected"} 1"#,
        r#"rollback_rollbacks_total{target="shop/api",outcome="succeeded"} 1"#,
        r#"rollback_target_phase{target="shop/db",phase="promoted"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} missing in\n{metrics}");
    }
    let report = server.shutdown().await;
    assert!(report.interrupted.is_empty());
}

/// A small check of a JSON value against the subset of OpenAPI schemas the
/// description uses: `$ref`, `allOf`, `nullable`, `type`, `enum`,
/// `required`, `properties`, `items`, `additionalProperties: false`.
fn check(schema: &Value, value: &Value, doc: &Value, at: &str, errors: &mut Vec<String>) {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        let mut s = doc;
        for part in r.trim_start_matches("#/").split('/') {
            s = &s[part];
        }
        assert!(!s.is_null(), "{r} does not resolve");
        return check(s, value, doc, at, errors);
    }
    if value.is_null() && schema.get("nullable") == Some(&Value::Bool(true)) {
        return;
    }
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        for s in all {
            check(s, value, doc, at, errors);
        }
    }
    let ok = match schema.get("type").and_then(Value::as_str) {
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        _ => true,
    };
    if !ok {
        errors.push(format!("{at}: {value} is not of type {}", schema["type"]));
        return;
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_array)
        && !e.contains(value)
    {
        errors.push(format!(
            "{at}: {value} is not one of {schema}",
            schema = schema["enum"]
        ));
    }
    if let Some(obj) = value.as_object() {
        for r in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if !obj.contains_key(r.as_str().unwrap()) {
                errors.push(format!("{at}: required {r} missing"));
            }
        }
        let props = schema.get("properties").and_then(Value::as_object);
        for (k, v) in obj {
            match props.and_then(|p| p.get(k)) {
                Some(s) => check(s, v, doc, &format!("{at}.{k}"), errors),
                None if schema.get("additionalProperties") == Some(&Value::Bool(false)) => {
                    errors.push(format!("{at}: {k} is not in the schema"))
                }
                None => {}
            }
        }
    }
    if let (Some(items), Some(arr)) = (schema.get("items"), value.as_array()) {
        for (i, v) in arr.iter().enumerate() {
            check(items, v, doc, &format!("{at}[{i}]"), errors);
        }
    }
}

fn response_schema<'a>(doc: &'a Value, path: &str, method: &str, status: u16) -> &'a Value {
    let mut r = &doc["paths"][path][method]["responses"][status.to_string()];
    if let Some(reference) = r.get("$ref").and_then(Value::as_str) {
        r = &doc["components"]["responses"][reference.rsplit('/').next().unwrap()];
    }
    let s = &r["content"]["application/json"]["schema"];
    assert!(!s.is_null(), "{method} {path} {status} has no JSON schema");
    s
}

#[tokio::test]
async fn the_openapi_description_matches_the_routes_and_the_answers() {
    let doc: Value = serde_yaml_ng::from_str(rollback_serve::OPENAPI_YAML).unwrap();
    let documented: BTreeSet<(String, String)> = doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .filter(|m| ["get", "post", "put", "patch", "delete"].contains(&m.as_str()))
                .map(move |m| (m.clone(), path.clone()))
        })
        .collect();
    let routes: BTreeSet<(String, String)> = rollback_serve::ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(documented, routes, "openapi.yaml and ROUTES differ");

    let dir = tempfile::tempdir().unwrap();
    let shelf = Shelf::default();
    shelf.put("shop/web", &["v1", "v2"]);
    shelf.put("shop/api", &["v1", "bad"]);
    shelf.put("shop/db", &["v1", "v2"]);
    let audit = MemoryAuditSink::new();
    let server = start(&watch_file(dir.path()), shelf.registry(), &audit).await;

    // Every route is served: without a token, each answers something other
    // than "no such route" or "wrong method", and the same for the server
    // from the description (served at /openapi.yaml).
    let http = reqwest::Client::new();
    for (method, path) in rollback_serve::ROUTES {
        let url = format!("{}{}", server.url(), path.replace("{target}", "shop%2Fweb"));
        let r = match *method {
            "get" => http.get(&url),
            _ => http.post(&url),
        }
        .send()
        .await
        .unwrap();
        assert!(
            ![404, 405].contains(&r.status().as_u16()),
            "{method} {path}: {}",
            r.status()
        );
    }
    let served = http
        .get(format!("{}/openapi.yaml", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(served.headers()["content-type"], "application/yaml");
    assert_eq!(served.text().await.unwrap(), rollback_serve::OPENAPI_YAML);

    // The answers fit their schemas.
    let viewer = Bot::new(&server, Some(VIEWER));
    let bot = Bot::new(&server, Some(BOT));
    until("shop/api awaits approval", WAIT, || {
        events(&audit, "shop/api").contains(&"decided await_approval".to_owned())
    })
    .await;
    let mut answers = vec![
        (
            "/healthz",
            "get",
            Bot::new(&server, None).get("/healthz").await,
        ),
        ("/readyz", "get", viewer.get("/readyz").await),
        (
            "/api/v1/targets",
            "get",
            viewer.get("/api/v1/targets").await,
        ),
        (
            "/api/v1/targets/{target}",
            "get",
            viewer.get("/api/v1/targets/shop%2Fapi").await,
        ),
        (
            "/api/v1/targets/{target}/timeline",
            "get",
            viewer.get("/api/v1/targets/shop%2Fapi/timeline").await,
        ),
        (
            "/api/v1/targets/{target}",
            "get",
            viewer.get("/api/v1/targets/x").await,
        ),
        (
            "/api/v1/targets/{target}/pause",
            "post",
            bot.post("/api/v1/targets/shop%2Fweb/pause", None).await,
        ),
        (
            "/api/v1/targets/{target}/pause",
            "post",
            viewer.post("/api/v1/targets/shop%2Fweb/pause", None).await,
        ),
        (
            "/api/v1/targets/{target}/approve",
            "post",
            bot.post("/api/v1/targets/shop%2Fweb/approve", None).await,
        ),
        (
            "/api/v1/targets/{target}/rollback",
            "post",
            bot.post("/api/v1/targets/shop%2Fapi/rollback", Some("[]"))
                .await,
        ),
        (
            "/api/v1/targets/{target}/rollback",
            "post",
            Bot::new(&server, None)
                .post("/api/v1/targets/shop%2Fapi/rollback", None)
                .await,
        ),
    ];
    answers.push((
        "/api/v1/targets/{target}/approve",
        "post",
        bot.post("/api/v1/targets/shop%2Fapi/approve", None).await,
    ));
    let statuses: Vec<u16> = answers.iter().map(|a| a.2.0).collect();
    assert_eq!(
        statuses,
        [200, 200, 200, 200, 200, 404, 200, 403, 409, 400, 401, 200]
    );
    let mut errors = Vec::new();
    for (path, method, (status, body)) in &answers {
        let schema = response_schema(&doc, path, method, *status);
        check(
            schema,
            body,
            &doc,
            &format!("{method} {path} {status}"),
            &mut errors,
        );
    }
    assert!(errors.is_empty(), "{errors:#?}");
    drop(server);
}
