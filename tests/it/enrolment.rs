//! Voice-code enrolment through the management API: every rule, who may enrol, the rate limit,
//! the audit, and that no rejection reveals another member's code.

use crate::support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::stack::*;

#[tokio::test]
async fn only_the_household_admin_can_manage_codes() {
    let h = Harness::rich().await;
    // A household member signed in to the management client, without the admin group.
    let member = h
        .token_with(json!({"sub": "demo", "use": "management"}))
        .await;
    let (s, body) = h.api("GET", "/v1/household/members", None, None).await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"], "unauthorized");
    let (s, _) = h
        .api("GET", "/v1/household/members", Some("garbage"), None)
        .await;
    assert_eq!(s, StatusCode::UNAUTHORIZED);
    for (method, path) in [
        ("GET", "/v1/household/members"),
        ("PUT", "/v1/household/members/sam/voice-pin"),
        ("DELETE", "/v1/household/members/alex/duress-pin"),
        ("POST", "/v1/household/lockout/reset"),
        ("GET", "/v1/household/audit"),
    ] {
        let (s, body) = h
            .api(method, path, Some(&member), Some(json!({"pin": "2749"})))
            .await;
        assert_eq!(s, StatusCode::FORBIDDEN, "{method} {path}");
        assert_eq!(body["error"], "forbidden");
    }
    // Alexa's account-linking token manages nothing, even with the admin group: 403 with
    // RFC 6750's insufficient_scope, not a 401 that would send the app to sign in again.
    let linking = h
        .token_with(json!({"sub": "demo", "admin": true, "use": "directives"}))
        .await;
    for (method, path) in [
        ("GET", "/v1/household/members"),
        ("PUT", "/v1/household/members/sam/voice-pin"),
        ("DELETE", "/v1/household/members/alex/duress-pin"),
    ] {
        let resp = h
            .http
            .request(method.parse().unwrap(), format!("{}{path}", h.base))
            .bearer_auth(&linking)
            .json(&json!({"pin": "2749"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{method} {path}");
        assert_eq!(
            resp.headers()["www-authenticate"],
            "Bearer error=\"insufficient_scope\""
        );
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "wrong_token");
    }
    // An admin of another household manages only their own: "sam" is not theirs.
    let neighbor = h.admin_token("neighbor").await;
    let (s, _) = h
        .set_pin(&neighbor, "sam", "voice-pin", json!("2749"))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn members_are_listed_without_their_codes() {
    let (h, admin) = Harness::rich_admin().await;
    let (s, body) = h
        .api("GET", "/v1/household/members", Some(&admin), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    // Alex has a duress PIN and Sam has none; the listing must not tell them apart.
    assert_eq!(
        body,
        json!({"members": [
            {"id":"alex","name":"Alex","user_number":1,"has_voice_pin":true},
            {"id":"sam","name":"Sam","user_number":2,"has_voice_pin":true}]})
    );
    assert!(!body.to_string().to_lowercase().contains("duress"));
}

/// Everything the management API shows about `member`'s codes, with the name taken out.
/// `DELETE path` as `token`: the status.
async fn delete_as(h: &Harness, token: &str, path: &str) -> StatusCode {
    h.api("DELETE", path, Some(token), None).await.0
}

/// The audit messages among `messages` that contain `text`.
fn containing<'a>(messages: &[&'a str], text: &str) -> Vec<&'a str> {
    messages
        .iter()
        .copied()
        .filter(|m| m.contains(text))
        .collect()
}

/// `POST /v1/household/members` with `member` as `token`: (status, body).
async fn add_member(h: &Harness, token: &str, member: Value) -> (StatusCode, Value) {
    h.api("POST", "/v1/household/members", Some(token), Some(member))
        .await
}

async fn observable(h: &Harness, admin: &str, member: &str, name: &str) -> Vec<Value> {
    let (_, list) = h
        .api("GET", "/v1/household/members", Some(admin), None)
        .await;
    let mut view = list["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == member)
        .unwrap()
        .clone();
    for key in ["id", "name", "user_number"] {
        view.as_object_mut().unwrap().remove(key);
    }
    let (_, audit) = h
        .api("GET", "/v1/household/audit?limit=1", Some(admin), None)
        .await;
    let mut entry = audit["entries"][0].clone();
    entry["at"] = json!("<at>");
    entry["message"] = json!(entry["message"].as_str().unwrap().replace(name, "<name>"));
    vec![view, entry]
}

#[tokio::test]
async fn setting_replacing_and_deleting_a_duress_pin_look_the_same_with_or_without_one() {
    let (h, admin) = Harness::rich_admin().await;
    let profile = || {
        let store = h.stack.store.clone();
        async move { store.household("demo").await.unwrap().profile }
    };
    let has_duress = |p: &alarm_skill::domain::voice_codes::Profile, id: &str| {
        p.member(id).unwrap().duress_pin.is_some()
    };
    // Each step is done to Alex, who has a duress PIN, then to Sam, who has none: replace vs
    // set, then delete vs delete-nothing. Every answer, listing, audit entry and store write
    // must match.
    let call = |method: &'static str, member: &'static str, pin: Option<&'static str>| {
        let (h, admin) = (&h, &admin);
        async move {
            let before = profile().await.version;
            let (status, reply) = h
                .api(
                    method,
                    &format!("/v1/household/members/{member}/duress-pin"),
                    Some(admin),
                    pin.map(|p| json!({ "pin": p })),
                )
                .await;
            let writes = profile().await.version - before;
            let name = if member == "alex" { "Alex" } else { "Sam" };
            let mut shown = observable(h, admin, member, name).await;
            shown.push(json!([status.as_u16(), reply, writes]));
            shown
        }
    };
    for (method, pins) in [
        ("PUT", [Some("7026"), Some("3916")]),
        ("DELETE", [None, None]),
    ] {
        let p = profile().await;
        assert!(has_duress(&p, "alex") && !has_duress(&p, "sam"));
        let alex = call(method, "alex", pins[0]).await;
        let sam = call(method, "sam", pins[1]).await;
        assert_eq!(alex, sam, "{method}: Alex and Sam told apart");
        assert_eq!(alex[2][0], 204, "{method}");
        assert_eq!(alex[2][2], 1, "{method}: one profile write");
        if method == "PUT" {
            // Back to "Alex has one, Sam has none" for the delete step.
            call("DELETE", "sam", None).await;
        }
    }
}

#[tokio::test]
async fn every_enrolment_rule_has_its_own_clear_error() {
    let (h, admin) = Harness::rich_admin().await;
    for pin in [
        json!("123"),
        json!("12345"),
        json!("12a4"),
        json!(""),
        json!(" 274"),
    ] {
        let (s, body) = h.set_pin(&admin, "sam", "voice-pin", pin.clone()).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{pin}");
        assert_eq!(body["error"], "invalid_format");
        assert_eq!(body["message"], "a voice code is exactly 4 digits");
    }
    let (s, body) = h.set_pin(&admin, "sam", "voice-pin", json!(2749)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(body["message"], "field pin must be a string");
    // Every attempt counts against the hourly enrolment limit (10): start a new window.
    h.advance(3_600).await;
    for pin in ["1234", "0000", "2580", "1111", "9876", "1212", "1990"] {
        let (s, body) = h.set_pin(&admin, "sam", "voice-pin", json!(pin)).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{pin}");
        assert_eq!(body["error"], "too_common", "{pin}");
        assert!(!support::holds_pin(&body.to_string(), pin));
    }
    let (s, _) = h.set_pin(&admin, "sam", "voice-pin", json!("2749")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    assert_eq!(
        h.set_pin(&admin, "nobody", "voice-pin", json!("2749"))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn conflicts_never_reveal_whose_code_or_how_close() {
    let (h, admin) = Harness::rich_admin().await;
    // Alex: 4729 (voice), 8361 (duress). Sam: 5183 (voice).
    let cases = [
        ("sam", "voice-pin", "4729"),   // equals Alex's voice PIN
        ("sam", "voice-pin", "8361"),   // equals Alex's duress PIN
        ("sam", "voice-pin", "8360"),   // one digit from a duress PIN
        ("alex", "duress-pin", "4728"), // duress one digit from Alex's own PIN
        ("alex", "duress-pin", "5184"), // duress one digit from Sam's PIN
        ("alex", "duress-pin", "5183"), // duress equal to Sam's PIN
        ("sam", "duress-pin", "5193"),  // duress one digit from Sam's own PIN
    ];
    let mut bodies = vec![];
    for (member, slot, pin) in cases {
        let (s, body) = h.set_pin(&admin, member, slot, json!(pin)).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{member} {slot} {pin}");
        assert_eq!(body["error"], "too_similar");
        let text = body.to_string();
        for leak in ["4729", "8361", "5183", "Alex", "Sam", "alex", "sam"] {
            assert!(!text.contains(leak), "{text} reveals {leak}");
        }
        bodies.push(body);
    }
    assert!(
        bodies.iter().all(|b| *b == bodies[0]),
        "one identical error for every conflict"
    );
    // Every attempt counted against the hourly limit; start a new window.
    h.advance(3_600).await;
    // Two digits away from every code is fine, for either kind.
    let (s, _) = h.set_pin(&admin, "sam", "duress-pin", json!("5218")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    // The slot being replaced is not compared: re-setting a code to itself is fine.
    let (s, _) = h.set_pin(&admin, "sam", "voice-pin", json!("5183")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    // A voice PIN one digit from the new duress PIN is not.
    let (s, _) = h.set_pin(&admin, "sam", "voice-pin", json!("5219")).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    let (s, _) = h.set_pin(&admin, "sam", "voice-pin", json!("6283")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn enrolment_is_rate_limited_and_audited_without_codes() {
    let (h, admin) = Harness::rich_admin().await;
    let mut statuses = vec![];
    for i in 0..12 {
        // Alternate valid and rejected attempts: both count.
        let pin = if i % 2 == 0 { "2749" } else { "1234" };
        statuses.push(h.set_pin(&admin, "sam", "voice-pin", json!(pin)).await.0);
    }
    assert!(
        statuses[..10]
            .iter()
            .all(|s| *s != StatusCode::TOO_MANY_REQUESTS)
    );
    assert_eq!(statuses[10], StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(statuses[11], StatusCode::TOO_MANY_REQUESTS);
    h.advance(3_600).await;
    assert_eq!(
        h.set_pin(&admin, "sam", "voice-pin", json!("2749")).await.0,
        StatusCode::NO_CONTENT
    );

    let (_, audit) = h.audit_as(&admin).await;
    let messages = support::strings(&audit["entries"], "message");
    assert_eq!(
        messages
            .iter()
            .filter(|m| **m == "Admin changed Sam's voice codes")
            .count(),
        6
    );
    assert_eq!(
        messages
            .iter()
            .filter(|m| **m == "Admin's voice code change for Sam was rejected")
            .count(),
        5
    );
    // Both refusals of the hour, on one line.
    let refusals = containing(&messages, "too many changes");
    assert_eq!(
        refusals,
        ["Voice code change refused: too many changes this hour (2 times)"]
    );
    // Everything but the entries' times: their fractions of a second are digits that spell a PIN
    // now and then (a DynamoDB Local run failed on "2749" in one).
    let mut without_times = audit.clone();
    for entry in without_times["entries"].as_array_mut().unwrap() {
        entry.as_object_mut().unwrap().remove("at");
    }
    let text = without_times.to_string();
    for leak in ["2749", "1234", "duress"] {
        assert!(!text.to_lowercase().contains(leak), "audit mentions {leak}");
    }
}

#[tokio::test]
async fn code_changes_take_effect_for_voice_at_once() {
    let (h, admin) = Harness::rich_admin().await;
    let t = h.token("demo").await;
    let (s, _) = h.set_pin(&admin, "sam", "duress-pin", json!("7026")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    h.invoke(&arm(&t, "home", "ARMED_STAY")).await;
    let r = h.invoke(&disarm(&t, "home", Some("7026"))).await;
    assert_eq!(r["event"]["header"]["name"], "Response");
    assert!(
        h.signals().await.contains(&"121/1/2".to_string()),
        "duress for Sam, user 2"
    );

    let s = delete_as(&h, &admin, "/v1/household/members/sam/duress-pin").await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    h.invoke(&arm(&t, "home", "ARMED_STAY")).await;
    let r = h.invoke(&disarm(&t, "home", Some("7026"))).await;
    assert_eq!(error_type(&r), Some("UNAUTHORIZED"));

    // Members can be added and removed; a removed member's codes stop working.
    let (s, _) = add_member(&h, &admin, json!({"id":"kim","name":"Kim","user_number":3})).await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, body) = add_member(
        &h,
        &admin,
        json!({"id":"kim2","name":"Kim","user_number":3}),
    )
    .await;
    assert_eq!(
        (s, body["error"].clone()),
        (StatusCode::CONFLICT, json!("member_exists"))
    );
    assert_eq!(
        h.set_pin(&admin, "kim", "voice-pin", json!("3916")).await.0,
        StatusCode::NO_CONTENT
    );
    h.api("POST", "/v1/household/lockout/reset", Some(&admin), None)
        .await;
    let r = h.invoke(&disarm(&t, "home", Some("3916"))).await;
    assert_eq!(r["event"]["header"]["name"], "Response");
    let (s, _) = h
        .api("DELETE", "/v1/household/members/kim", Some(&admin), None)
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    h.invoke(&arm(&t, "home", "ARMED_STAY")).await;
    assert_eq!(
        error_type(&h.invoke(&disarm(&t, "home", Some("3916"))).await),
        Some("UNAUTHORIZED")
    );
}

#[tokio::test]
async fn slips_across_lengths_and_prefixes_get_the_same_generic_error() {
    let (h, admin) = Harness::rich_admin().await;
    let (s, _) = h
        .put_settings(&admin, json!({"google_enabled": true}))
        .await;
    assert_eq!(s, StatusCode::OK);
    // Alex: 4729 (voice), 8361 (duress). Sam: 5183 (voice).
    let (_, reference) = h.set_pin(&admin, "sam", "voice-pin", json!("8360")).await;
    assert_eq!(reference["error"], "too_similar");
    let (s, _) = h
        .set_pin(&admin, "sam", "voice-pin", json!("50718264"))
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    for (member, slot, pin) in [
        ("sam", "duress-pin", "47290"),   // an extra digit on Alex's voice PIN
        ("sam", "duress-pin", "7429"),    // two digits of it swapped
        ("sam", "voice-pin", "836150"),   // starts with Alex's duress PIN
        ("alex", "duress-pin", "507182"), // the start of Sam's new voice PIN (kept in the store)
        ("alex", "voice-pin", "5071"),    // the same, for a voice PIN
    ] {
        let (s, body) = h.set_pin(&admin, member, slot, json!(pin)).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{member} {slot} {pin}");
        assert_eq!(body, reference, "{member} {slot} {pin}");
    }
    h.advance(3_600).await;
    // Two edits away across lengths, and no prefix: accepted.
    let (s, _) = h.set_pin(&admin, "sam", "duress-pin", json!("74290")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
}

/// A raw management call: (status, content type, body as JSON or Null).
async fn raw(
    h: &Harness,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Vec<u8>>,
) -> (StatusCode, String, Value) {
    call_reading(h, method, path, token, body, "content-type").await
}

/// `method path` as `token` with a JSON `body`: (status, the `header` answered or "", body as
/// JSON or Null).
async fn call_reading(
    h: &Harness,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Vec<u8>>,
    header: &str,
) -> (StatusCode, String, Value) {
    let mut req = h
        .http
        .request(method.parse().unwrap(), format!("{}{path}", h.base));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let value = resp
        .headers()
        .get(header)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let text = resp.text().await.unwrap();
    (
        status,
        value,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn framework_rejections_answer_in_the_documented_json_error_shape() {
    let (h, admin) = Harness::rich_admin().await;
    let big = format!("{{\"pin\":\"{}\"}}", "4".repeat(64 * 1024)).into_bytes();
    /// Method, path, body, and the status and error code it must get.
    type Case = (
        &'static str,
        &'static str,
        Option<Vec<u8>>,
        StatusCode,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        (
            "GET",
            "/v1/household/audit?limit=abc",
            None,
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "GET",
            "/v1/household/audit?limit=-1",
            None,
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "PUT",
            "/v1/household/members/sam/voice-pin",
            Some(big),
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
        ),
        (
            "PUT",
            "/v1/household/members/sam/voice-pin",
            Some(b"{not json".to_vec()),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "PUT",
            "/v1/household/members/%FF%FE/voice-pin",
            Some(b"{\"pin\":\"2749\"}".to_vec()),
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "GET",
            "/v1/household/nothing-here",
            None,
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "PUT",
            "/v1/household/members/sam/voice-pin/extra",
            Some(b"{}".to_vec()),
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        (
            "GET",
            "/v1/household/members/sam",
            None,
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            "PATCH",
            "/v1/household/settings",
            None,
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        (
            "DELETE",
            "/v1/household/audit",
            None,
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
    ];
    for (method, path, body, status, code) in cases {
        let (s, ct, body) = raw(&h, method, path, Some(&admin), body).await;
        assert_eq!(
            (s, body["error"].as_str()),
            (status, Some(code)),
            "{method} {path}: {body}"
        );
        assert!(ct.starts_with("application/json"), "{method} {path}: {ct}");
        let keys: Vec<&String> = body.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["error", "message"], "{method} {path}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    // The limit still works when it is a number.
    let (s, _, body) = raw(&h, "GET", "/v1/household/audit?limit=1", Some(&admin), None).await;
    assert_eq!(s, StatusCode::OK, "{body}");
}

/// The rich household, with the management API's step-up as given.
async fn with_step_up(step_up: alarm_skill::edges::management::StepUp) -> Harness {
    Harness::start_with(alarm_skill::local::Options {
        config: alarm_skill::local::demo::DemoConfig::parse(RICH_CONFIG).unwrap(),
        step_up,
        ..test_options()
    })
    .await
}

#[tokio::test]
async fn every_code_change_needs_a_recent_sign_in_and_says_nothing_else() {
    let h = with_step_up(alarm_skill::edges::management::StepUp {
        max_age: chrono::Duration::seconds(1),
        ..Default::default()
    })
    .await;
    let old = h.admin_token("demo").await;
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
    // Setting (Sam has no duress PIN), replacing (Alex has one), deleting either, removing a
    // member: one identical refusal, which tells nothing about the codes there.
    let mut bodies = vec![];
    for (method, path, body) in [
        (
            "PUT",
            "/v1/household/members/sam/duress-pin",
            Some(json!({"pin": "7026"})),
        ),
        (
            "PUT",
            "/v1/household/members/alex/duress-pin",
            Some(json!({"pin": "7026"})),
        ),
        (
            "PUT",
            "/v1/household/members/alex/voice-pin",
            Some(json!({"pin": "7026"})),
        ),
        ("DELETE", "/v1/household/members/alex/duress-pin", None),
        ("DELETE", "/v1/household/members/sam/duress-pin", None),
        ("DELETE", "/v1/household/members/sam", None),
    ] {
        let mut req = h
            .http
            .request(method.parse().unwrap(), format!("{}{path}", h.base))
            .bearer_auth(&old);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
        let challenge = resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            challenge.contains("insufficient_user_authentication")
                && challenge.contains("max_age=1"),
            "{challenge}"
        );
        let body: Value = resp.json().await.unwrap();
        assert_eq!(
            body["error"], "reauthentication_required",
            "{method} {path}"
        );
        bodies.push(body);
    }
    assert!(bodies.iter().all(|b| *b == bodies[0]));
    // Nothing changed, and reading needs no fresh sign-in.
    let p = h.stack.store.household("demo").await.unwrap().profile;
    assert!(p.member("alex").unwrap().duress_pin.is_some());
    assert!(p.member("sam").unwrap().duress_pin.is_none());
    let (s, _) = h
        .api("GET", "/v1/household/members", Some(&old), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    // After signing in again, the change goes through.
    let fresh = h.admin_token("demo").await;
    let (s, body) = h.set_pin(&fresh, "sam", "duress-pin", json!("7026")).await;
    assert_eq!(s, StatusCode::NO_CONTENT, "{body}");
}

/// Past the limits, asking again doesn't grow the audit log: each refusal counts on its kind's
/// one line of the hour, whatever slot (voice or duress) or member was asked for, and the next
/// hour's refusals start one new line. On the store the suite runs on (scripts/test runs both).
#[tokio::test]
async fn refusals_past_the_limits_take_one_audit_line_an_hour() {
    let (h, admin) = Harness::rich_admin().await;
    let (_, audit) = h.audit_as(&admin).await;
    let lines_before = audit["entries"].as_array().unwrap().len();
    for slot in ["voice-pin", "duress-pin"].iter().cycle().take(5) {
        let s = delete_as(&h, &admin, &format!("/v1/household/members/sam/{slot}")).await;
        assert_eq!(s, StatusCode::NO_CONTENT);
    }
    let paths = [
        "/v1/household/members/sam/voice-pin",
        "/v1/household/members/alex/duress-pin",
        "/v1/household/members/sam",
    ];
    for path in paths.iter().cycle().take(60) {
        assert_eq!(
            delete_as(&h, &admin, path).await,
            StatusCode::TOO_MANY_REQUESTS
        );
    }
    for _ in 0..30 {
        let s = h.set_pin(&admin, "sam", "voice-pin", json!("1234")).await.0;
        if s == StatusCode::TOO_MANY_REQUESTS {
            continue;
        }
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    }
    let (_, audit) = h.audit_as(&admin).await;
    let messages = support::strings(&audit["entries"], "message");
    let refusals = containing(&messages, "refused");
    assert_eq!(
        refusals,
        [
            "Voice code change refused: too many changes this hour (20 times)",
            "Voice code deletion refused: too many deletions in the last 24 hours (60 times)",
        ]
    );
    // Five deletions and ten rejected changes, each on its own line, and the two above.
    assert_eq!(messages.len(), lines_before + 5 + 10 + 2, "{messages:?}");
    h.advance(3_600).await;
    assert_eq!(
        delete_as(&h, &admin, paths[0]).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    let (_, audit) = h.audit_as(&admin).await;
    let messages = support::strings(&audit["entries"], "message");
    assert_eq!(
        messages[0],
        "Voice code deletion refused: too many deletions in the last 24 hours"
    );
}

#[tokio::test]
async fn deletions_have_a_tighter_limit_of_their_own() {
    let (h, admin) = Harness::rich_admin().await;
    // The default: 5 deletions a day, whether a code was there or not.
    let mut statuses = vec![];
    for i in 0..6 {
        let (member, slot) = [("alex", "duress-pin"), ("sam", "duress-pin")][i % 2];
        let s = delete_as(
            &h,
            &admin,
            &format!("/v1/household/members/{member}/{slot}"),
        )
        .await;
        statuses.push(s);
    }
    assert!(
        statuses[..5].iter().all(|s| *s == StatusCode::NO_CONTENT),
        "{statuses:?}"
    );
    assert_eq!(statuses[5], StatusCode::TOO_MANY_REQUESTS);
    let (s, body) = h
        .api("DELETE", "/v1/household/members/sam", Some(&admin), None)
        .await;
    assert_eq!(
        (s, body["error"].clone()),
        (StatusCode::TOO_MANY_REQUESTS, json!("rate_limited"))
    );
    // Setting a code is under the other limit, and still allowed.
    assert_eq!(
        h.set_pin(&admin, "sam", "duress-pin", json!("7026"))
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    // A new day's window allows deletions again.
    h.advance(24 * 3_600).await;
    let s = delete_as(&h, &admin, "/v1/household/members/sam/duress-pin").await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    h.assert_audit_mentions(
        &admin,
        "Voice code deletion refused: too many deletions in the last 24 hours",
    )
    .await;
}

#[tokio::test]
async fn every_code_change_sends_the_household_one_notice_whatever_the_kind() {
    let (h, admin) = Harness::rich_admin().await;
    let notices = || async {
        let all = h.get("/sim/notifications").await;
        all.as_array()
            .unwrap()
            .iter()
            .filter(|n| n["kind"] == "voice_codes_changed")
            .map(|n| n["message"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert!(notices().await.is_empty());
    // Alex: replace the duress PIN, delete it, set the voice PIN, delete it. Sam: set a duress
    // PIN where there was none, delete one that isn't there.
    let steps: [(&str, &str, &str, Option<&str>); 6] = [
        ("PUT", "alex", "duress-pin", Some("7026")),
        ("DELETE", "alex", "duress-pin", None),
        ("PUT", "alex", "voice-pin", Some("3916")),
        ("DELETE", "alex", "voice-pin", None),
        ("PUT", "sam", "duress-pin", Some("6283")),
        ("DELETE", "sam", "voice-pin", None),
    ];
    for (i, (method, member, slot, pin)) in steps.into_iter().enumerate() {
        let (s, body) = h
            .api(
                method,
                &format!("/v1/household/members/{member}/{slot}"),
                Some(&admin),
                pin.map(|p| json!({ "pin": p })),
            )
            .await;
        assert_eq!(
            s,
            StatusCode::NO_CONTENT,
            "{method} {member} {slot}: {body}"
        );
        assert_eq!(notices().await.len(), i + 1, "one notice per change");
    }
    let all = notices().await;
    // The same words for every kind of change of one member.
    assert!(all[..4].iter().all(|m| *m == all[0]), "{all:?}");
    assert_eq!(all[4], all[0].replace("Alex", "Sam"));
    assert_eq!(all[5], all[4]);
    assert!(!all.join(" ").to_lowercase().contains("duress"));
    // A rejected change sends none.
    let (s, _) = h.set_pin(&admin, "sam", "voice-pin", json!("1234")).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(notices().await.len(), 6);
}

#[tokio::test]
async fn no_enrolment_answer_tells_which_kind_of_code_is_near() {
    let (h, admin) = Harness::rich_admin().await;
    // Alex: voice PIN 4729, duress PIN 8361. Sam's new code one edit from each, either kind:
    // every answer the app gets, and every audit line, is the same.
    let mut answers = vec![];
    for slot in ["voice-pin", "duress-pin"] {
        for pin in ["4728", "7429", "8360", "8631"] {
            let (s, body) = h.set_pin(&admin, "sam", slot, json!(pin)).await;
            answers.push((s, body));
        }
    }
    assert!(answers.iter().all(|a| *a == answers[0]), "{answers:?}");
    let (s, body) = &answers[0];
    assert_eq!(
        (*s, body["error"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("too_similar"))
    );
    // The app shows the message as it is (app.js, `explain`): no word of a duress code.
    let hint = body["message"].as_str().unwrap();
    assert!(!hint.to_lowercase().contains("duress"), "{hint}");
    let (_, audit) = h.audit_as(&admin).await;
    let lines = support::strings(&audit["entries"], "message");
    assert!(
        lines[..8]
            .iter()
            .all(|l| *l == "Admin's voice code change for Sam was rejected"),
        "{lines:?}"
    );
    // Two edits from every code is fine, for either kind.
    h.advance(3_600).await;
    let (s, body) = h.set_pin(&admin, "sam", "voice-pin", json!("4792")).await;
    assert_eq!(
        s,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a swap is one edit: {body}"
    );
    let (s, _) = h.set_pin(&admin, "sam", "voice-pin", json!("4718")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
}

/// `(status, WWW-Authenticate, body)` of `method path` as `token`.
async fn refusal(
    h: &Harness,
    token: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, String, Value) {
    let body = body.map(|b| b.to_string().into_bytes());
    call_reading(h, method, path, Some(token), body, "www-authenticate").await
}

#[tokio::test]
async fn weakening_disarming_and_removing_members_by_sync_need_the_same_recent_sign_in() {
    let h = with_step_up(alarm_skill::edges::management::StepUp {
        max_age: chrono::Duration::seconds(1),
        ..Default::default()
    })
    .await;
    let old = h.admin_token("demo").await;
    // Kim, added by hand, is no panel user: a sync would remove her. Adding needs no step-up.
    let (s, _) = h
        .api(
            "POST",
            "/v1/household/members",
            Some(&old),
            Some(json!({"id": "kim", "name": "Kim", "user_number": 3})),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
    let code_change = refusal(
        &h,
        &old,
        "PUT",
        "/v1/household/members/sam/voice-pin",
        Some(json!({"pin": "2749"})),
    )
    .await;
    assert_eq!(code_change.0, StatusCode::UNAUTHORIZED);
    assert!(code_change.1.contains("insufficient_user_authentication"));
    for (method, path, body) in [
        (
            "PUT",
            "/v1/household/settings",
            Some(json!({"pinless_disarm": "allow"})),
        ),
        ("POST", "/v1/household/lockout/reset", None),
        ("POST", "/v1/household/members/sync", None),
    ] {
        let got = refusal(&h, &old, method, path, body).await;
        assert_eq!(
            got, code_change,
            "{method} {path}: the same 401 as a code change"
        );
    }
    let (_, settings) = h
        .api("GET", "/v1/household/settings", Some(&old), None)
        .await;
    assert_eq!(settings["pinless_disarm"], "refuse_when_codes_enrolled");
    let p = h.stack.store.household("demo").await.unwrap().profile;
    assert!(p.member("kim").is_some(), "the refused sync removed no one");
    // Making disarming stricter needs no fresh sign-in; loosening it again does.
    let (s, _) = h
        .put_settings(&old, json!({"pinless_disarm": "refuse"}))
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, body) = h
        .put_settings(
            &old,
            json!({"pinless_disarm": "refuse_when_codes_enrolled"}),
        )
        .await;
    assert_eq!((s, body), (code_change.0, code_change.2.clone()));
    assert!(
        notices_of(&h).await.is_empty(),
        "nothing happened to tell of"
    );
}

/// The household notices the panel cloud sent: `(kind, message)`, oldest first.
async fn notices_of(h: &Harness) -> Vec<(String, String)> {
    let all = h.get("/sim/notifications").await;
    all.as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let text = |k: &str| n[k].as_str().unwrap().to_string();
            (text("kind"), text("message"))
        })
        .collect()
}

#[tokio::test]
async fn weakening_disarming_and_removing_members_by_sync_are_told_and_audited() {
    let (h, admin) = Harness::rich_admin().await;
    let (s, _) = h
        .put_settings(&admin, json!({"pinless_disarm": "allow"}))
        .await;
    assert_eq!(s, StatusCode::OK);
    let (s, _) = h
        .api("POST", "/v1/household/lockout/reset", Some(&admin), None)
        .await;
    assert_eq!(s, StatusCode::OK);
    for (id, number) in [("kim", 3), ("jo", 4)] {
        let name = if id == "kim" { "Kim" } else { "Jo" };
        let (s, _) = h
            .api(
                "POST",
                "/v1/household/members",
                Some(&admin),
                Some(json!({"id": id, "name": name, "user_number": number})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED);
    }
    let (s, _) = h.set_pin(&admin, "kim", "duress-pin", json!("3916")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, outcome) = h
        .api("POST", "/v1/household/members/sync", Some(&admin), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{outcome}");
    assert_eq!(outcome["removed"], json!(["kim", "jo"]));
    let kinds: Vec<(String, String)> = notices_of(&h).await;
    let want = [
        ("voice_disarm_settings_changed", None),
        ("voice_pin_lockout_reset", None),
        ("voice_codes_changed", Some("Kim")),
        ("voice_codes_changed", Some("Kim")),
        ("voice_codes_changed", Some("Jo")),
    ];
    assert_eq!(kinds.len(), want.len(), "{kinds:?}");
    for ((kind, message), (want_kind, name)) in kinds.iter().zip(want) {
        assert_eq!(kind, want_kind, "{kinds:?}");
        assert!(name.is_none_or(|n| message.contains(n)), "{message}");
        assert!(!message.to_lowercase().contains("duress"), "{message}");
    }
    // Jo, without any code, gets the same notice as Kim, who had a duress PIN.
    assert_eq!(kinds[3].1.replace("Kim", "Jo"), kinds[4].1);
    let (_, audit) = h.audit_as(&admin).await;
    for line in [
        "Admin changed the policy for disarming without a voice code",
        "Admin reset the voice disarm lockout",
        "Kim was removed: no longer a user of the panel",
        "Jo was removed: no longer a user of the panel",
    ] {
        assert!(audit.to_string().contains(line), "{line}: {audit}");
    }
    // Making disarming stricter tells no one.
    let (s, _) = h
        .put_settings(&admin, json!({"pinless_disarm": "refuse"}))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(notices_of(&h).await.len(), want.len());
}

#[tokio::test]
async fn removals_count_against_a_rolling_deletion_limit_not_a_calendar_day() {
    let (h, admin) = Harness::rich_admin().await;
    // To one minute before midnight UTC on the stack's clock.
    let now = alarm_skill::common::clock::Clock::now(h.stack.clock.as_ref()).timestamp();
    h.advance(86_400 - now.rem_euclid(86_400) - 60).await;
    for (id, number) in [("kim", 3), ("jo", 4)] {
        let (s, _) = h
            .api(
                "POST",
                "/v1/household/members",
                Some(&admin),
                Some(json!({"id": id, "name": id, "user_number": number})),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED);
    }
    let delete = |member: &'static str| {
        let (h, admin) = (&h, admin.clone());
        async move {
            let path = format!("/v1/household/members/{member}/duress-pin");
            h.api("DELETE", &path, Some(&admin), None).await
        }
    };
    let sync = || {
        let (h, admin) = (&h, admin.clone());
        async move {
            h.api("POST", "/v1/household/members/sync", Some(&admin), None)
                .await
        }
    };
    for member in ["alex", "sam", "alex", "sam"] {
        assert_eq!(delete(member).await.0, StatusCode::NO_CONTENT);
    }
    // 4 of 5 used: a sync removing Kim and Jo would take 2. Refused whole.
    let (s, body) = sync().await;
    assert_eq!(
        (s, body["error"].as_str()),
        (StatusCode::TOO_MANY_REQUESTS, Some("rate_limited"))
    );
    let p = h.stack.store.household("demo").await.unwrap().profile;
    assert!(p.member("kim").is_some() && p.member("jo").is_some());
    h.advance(30).await;
    assert_eq!(delete("alex").await.0, StatusCode::NO_CONTENT);
    // A minute and a half later it is another UTC day, not another window.
    h.advance(90).await;
    assert_eq!(delete("sam").await.0, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(sync().await.0, StatusCode::TOO_MANY_REQUESTS);
    h.assert_audit_mentions(
        &admin,
        "Voice code deletion refused: too many deletions in the last 24 hours",
    )
    .await;
    // 24 hours after the first four, only the fifth is in the window: the sync goes through.
    h.advance(24 * 3_600 - 120).await;
    let (s, body) = sync().await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["removed"], json!(["kim", "jo"]));
    assert_eq!(delete("sam").await.0, StatusCode::NO_CONTENT);
    assert_eq!(delete("sam").await.0, StatusCode::NO_CONTENT);
    assert_eq!(delete("sam").await.0, StatusCode::TOO_MANY_REQUESTS);
}
