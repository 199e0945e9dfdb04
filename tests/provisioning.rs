//! Household provisioning: a fresh deploy (an empty store) follows docs/deploy.md section 11 to
//! a working enrolment, members follow the panel cloud's users by webhook, and the first sync
//! fails cleanly while the panel cloud is down. Runs on both stores (scripts/test).

mod support;

use alarm_skill::clock::Clock;
use alarm_skill::local::Options;
use alarm_skill::local::demo::DemoConfig;
use alarm_skill::webhook::{SIGNATURE_HEADER, TIMESTAMP_HEADER, signature};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::stack::*;

/// Panels and panel users as the vendor's cloud has them, and nothing in the skill's store:
/// no `households` seed, as after `sam deploy`.
const FRESH: &str = r#"{
  "accounts": [
    {"id": "acct-1042", "users": [{"number": 1, "name": "Alex"}, {"number": 2, "name": "Sam"}],
     "panels": [{"id": "home", "name": "Home Alarm", "zones": [
         {"id": "front-door", "number": 1, "name": "Front door", "kind": "contact", "entry": true}]}]},
    {"id": "acct-2001", "users": [{"number": 1, "name": "Nia"}],
     "panels": [{"id": "cabin", "name": "Cabin", "zones": []}]}
  ]
}"#;

async fn fresh() -> Harness {
    Harness::start_with(Options {
        config: DemoConfig::parse(FRESH).expect("fresh config"),
        ..test_options()
    })
    .await
}

fn member_ids(body: &Value) -> Vec<String> {
    body["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| m["id"].as_str().expect("id").to_string())
        .collect()
}

/// Waits until the webhook has applied a users change (the simulator sends it asynchronously).
async fn members_eventually(h: &Harness, token: &str, want: &[&str]) -> Value {
    for _ in 0..100 {
        let (s, body) = h
            .api("GET", "/v1/household/members", Some(token), None)
            .await;
        assert_eq!(s, StatusCode::OK, "{body}");
        if member_ids(&body) == want {
            return body;
        }
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    }
    panic!("members never became {want:?}");
}

/// Posts `event` to the skill's webhook, signed as the panel cloud signs.
async fn signed_webhook(h: &Harness, event: &Value) -> (StatusCode, Value) {
    let body = serde_json::to_vec(event).expect("json");
    let ts = chrono::Utc::now().timestamp();
    let resp = h
        .http
        .post(format!("{}/webhooks/panel", h.base))
        .header(TIMESTAMP_HEADER, ts.to_string())
        .header(
            SIGNATURE_HEADER,
            signature::sign(&h.stack.webhook_secret, ts, &body),
        )
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("webhook");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_guides_enrolment_steps_work_on_a_fresh_stack_with_an_empty_store() {
    let h = fresh().await;
    let dump = store_dump(&h).await;
    let empty = dump.as_object().expect("dump").values().all(|v| {
        v.as_array().is_none_or(Vec::is_empty) && v.as_object().is_none_or(|o| o.is_empty())
    });
    assert!(empty, "the store starts empty: {dump}");

    // Section 11: an admin token, then the members (the panel cloud's user list).
    let admin = h.admin_token("acct-1042").await;
    let (s, body) = h
        .api("GET", "/v1/household/members", Some(&admin), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(member_ids(&body), vec!["alex", "sam"]);
    assert_eq!(body["members"][0]["name"], "Alex");
    assert_eq!(body["members"][1]["user_number"], 2);
    assert_eq!(body["members"][0]["has_voice_pin"], false);

    // The member's voice code, then their duress code.
    for (slot, pin) in [("voice-pin", "4729"), ("duress-pin", "8361")] {
        let (s, body) = h
            .api(
                "PUT",
                &format!("/v1/household/members/alex/{slot}"),
                Some(&admin),
                Some(json!({ "pin": pin })),
            )
            .await;
        assert_eq!(s, StatusCode::NO_CONTENT, "{slot}: {body}");
    }

    // Section 12: discovery, and a voice disarm with each code.
    let token = h.token("acct-1042").await;
    let found = h.invoke(&discover(&token)).await;
    let names: Vec<&str> = found["event"]["payload"]["endpoints"]
        .as_array()
        .expect("endpoints")
        .iter()
        .filter_map(|e| e["friendlyName"].as_str())
        .collect();
    assert!(names.contains(&"Home Alarm"), "{names:?}");
    for pin in ["4729", "8361"] {
        h.invoke(&arm(&token, "home", "ARMED_AWAY")).await;
        let reply = h.invoke(&disarm(&token, "home", Some(pin))).await;
        assert_eq!(reply["event"]["header"]["name"], "Response", "{reply}");
        assert_eq!(property(&reply, "armState"), "DISARMED");
    }
    assert_eq!(
        h.signals()
            .await
            .iter()
            .filter(|s| s.starts_with("121/"))
            .collect::<Vec<_>>(),
        vec!["121/1/1"],
        "the duress code raised exactly one silent alarm for user 1"
    );
    // The other account's admin sees only their own household.
    let other = h.admin_token("acct-2001").await;
    let (_, body) = h
        .api("GET", "/v1/household/members", Some(&other), None)
        .await;
    assert_eq!(member_ids(&body), vec!["nia"]);
}

#[tokio::test]
async fn members_follow_the_panel_users_by_webhook() {
    let h = fresh().await;
    // The webhook only reaches a household that granted events; provisioning doesn't need it.
    let admin = h.admin_token("acct-1042").await;
    members_eventually(&h, &admin, &["alex", "sam"]).await;
    let (s, _) = h
        .api(
            "PUT",
            "/v1/household/members/sam/voice-pin",
            Some(&admin),
            Some(json!({"pin": "5183"})),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);

    h.post(
        "/sim/accounts/acct-1042/users",
        json!({"number": 3, "name": "Jo Ramos"}),
    )
    .await;
    members_eventually(&h, &admin, &["alex", "sam", "jo-ramos"]).await;

    // Sam leaves the household at the panel: the member and their voice code go with them.
    let resp = h
        .http
        .delete(format!("{}/sim/accounts/acct-1042/users/2", h.base))
        .send()
        .await
        .expect("delete user");
    assert!(resp.status().is_success());
    members_eventually(&h, &admin, &["alex", "jo-ramos"]).await;
    let token = h.token("acct-1042").await;
    h.invoke(&arm(&token, "home", "ARMED_AWAY")).await;
    let reply = h.invoke(&disarm(&token, "home", Some("5183"))).await;
    assert_eq!(error_type(&reply), Some("UNAUTHORIZED"), "{reply}");

    let (_, audit) = h
        .api("GET", "/v1/household/audit", Some(&admin), None)
        .await;
    let lines: Vec<&str> = audit["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["message"].as_str())
        .collect();
    assert!(
        lines.contains(&"Sam was removed: no longer a user of the panel"),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"Jo Ramos was added from the panel's users"),
        "{lines:?}"
    );
}

#[tokio::test]
async fn a_replayed_older_user_list_does_not_bring_a_removed_member_back() {
    let h = fresh().await;
    let admin = h.admin_token("acct-1042").await;
    members_eventually(&h, &admin, &["alex", "sam"]).await;
    // A signed users_changed from before the last sync (as a delayed delivery would be).
    let old = json!({
        "event_id": uuid::Uuid::new_v4().to_string(),
        "account": "acct-1042",
        "occurred_at": (h.stack.clock.now() - chrono::Duration::minutes(5)).to_rfc3339(),
        "source": "app",
        "type": "users_changed",
        "users": [{"number": 1, "name": "Alex"}, {"number": 2, "name": "Sam"}, {"number": 9, "name": "Ex"}]
    });
    let (status, body) = signed_webhook(&h, &old).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "stale");
    members_eventually(&h, &admin, &["alex", "sam"]).await;
}

#[tokio::test]
async fn the_first_sync_fails_cleanly_while_the_panel_cloud_is_down_and_works_after() {
    let h = fresh().await;
    let admin = h.admin_token("acct-1042").await;
    h.fault("down", 0).await;
    let (s, body) = h
        .api("GET", "/v1/household/members", Some(&admin), None)
        .await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"], "panel_unavailable");
    h.fault("none", 0).await;
    let (s, body) = h
        .api("GET", "/v1/household/members", Some(&admin), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(member_ids(&body), vec!["alex", "sam"]);
    // An explicit re-sync reports what it changed (nothing now).
    let (s, body) = h
        .api("POST", "/v1/household/members/sync", Some(&admin), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body["members"], 2);
    assert_eq!(body["added"], json!([]));
}

/// `alarm-skill import`: existing households in bulk, into a DynamoDB table (DynamoDB Local
/// here, which scripts/test starts).
#[tokio::test]
async fn bulk_import_takes_the_members_of_every_listed_account() {
    use alarm_skill::store::Store;
    use alarm_skill::store::dynamodb::{DynamoStore, create_table, local_client};
    let h = fresh().await;
    let endpoint = std::env::var("DYNAMODB_ENDPOINT")
        .expect("DYNAMODB_ENDPOINT is not set: run scripts/test, which starts DynamoDB Local");
    let table = format!("import-{}", uuid::Uuid::new_v4().simple());
    create_table(&local_client(&endpoint), &table)
        .await
        .expect("table");
    let dir = std::env::temp_dir().join(format!("import-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("accounts.txt"),
        "# existing households\nacct-1042\n\nacct-2001\n",
    )
    .unwrap();
    std::fs::write(dir.join("key"), h.stack.sim.api_key().expose()).unwrap();
    let run = |panel_url: String| {
        let dir = dir.clone();
        let (endpoint, table) = (endpoint.clone(), table.clone());
        async move {
            tokio::process::Command::new(env!("CARGO_BIN_EXE_alarm-skill"))
                .arg("import")
                .arg("--accounts")
                .arg(dir.join("accounts.txt"))
                .arg("--panel-url")
                .arg(panel_url)
                .arg("--api-key-file")
                .arg(dir.join("key"))
                .args(["--table", &table, "--dynamodb-endpoint", &endpoint])
                .output()
                .await
                .expect("run alarm-skill import")
        }
    };
    let out = run(format!("http://{}", h.stack.panel_api.addr())).await;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(report.len(), 2, "{stdout}");
    assert_eq!(report[0]["account"], "acct-1042");
    assert_eq!(report[0]["added"], json!(["alex", "sam"]));
    let store = DynamoStore::new(local_client(&endpoint), table.clone());
    let names: Vec<String> = store
        .household("acct-2001")
        .await
        .unwrap()
        .profile
        .members
        .iter()
        .map(|m| m.name.clone())
        .collect();
    assert_eq!(names, vec!["Nia"]);

    // A panel cloud that can't be reached: every account reported, exit status 1.
    let out = run("http://127.0.0.1:9".to_string()).await;
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.lines().filter(|l| l.contains("\"error\"")).count(),
        2,
        "{stdout}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// A household stored before provisioning existed (members, never synced) keeps working while
/// the panel cloud is down, and is synced once it is back.
#[tokio::test]
async fn a_household_from_before_provisioning_keeps_its_members_during_an_outage() {
    use alarm_skill::voice_codes::{Member, Profile};
    let h = fresh().await;
    let old = Profile {
        members: vec![Member {
            id: "alexandra".into(),
            name: "Alexandra".into(),
            user_number: 1,
            panel_user_id: None,
            voice_pin: None,
            duress_pin: None,
        }],
        ..Profile::default()
    };
    h.stack.store.save_profile("acct-1042", &old).await.unwrap();
    let admin = h.admin_token("acct-1042").await;
    h.fault("down", 0).await;
    let (s, body) = h
        .api("GET", "/v1/household/members", Some(&admin), None)
        .await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(member_ids(&body), vec!["alexandra"]);
    h.fault("none", 0).await;
    // Another name on user 1, and no id on file to say it is the same person: the cloud's
    // user 1 is taken for someone else, so the hand-made member (and any codes) goes.
    let body = members_eventually(&h, &admin, &["alex", "sam"]).await;
    assert_eq!(body["members"][0]["name"], "Alex");
}

/// The codes of `member` in the household, as the store has them: (voice, duress).
async fn has_codes(h: &Harness, account: &str, member: &str) -> Option<(bool, bool)> {
    let p = h.stack.store.household(account).await.unwrap().profile;
    p.member(member)
        .map(|m| (m.voice_pin.is_some(), m.duress_pin.is_some()))
}

#[tokio::test]
async fn a_reused_user_number_does_not_inherit_the_former_members_codes() {
    let h = fresh().await;
    let admin = h.admin_token("acct-1042").await;
    members_eventually(&h, &admin, &["alex", "sam"]).await;
    for (member, slot, pin) in [
        ("sam", "voice-pin", "5183"),
        ("sam", "duress-pin", "6052"),
        ("alex", "voice-pin", "4729"),
    ] {
        let (s, body) = h
            .api(
                "PUT",
                &format!("/v1/household/members/{member}/{slot}"),
                Some(&admin),
                Some(json!({ "pin": pin })),
            )
            .await;
        assert_eq!(s, StatusCode::NO_CONTENT, "{body}");
    }
    // The reference cloud gives number 2 to Jordan: a new person (a new id) on Sam's slot.
    h.post(
        "/sim/accounts/acct-1042/users",
        json!({"number": 2, "name": "Jordan"}),
    )
    .await;
    members_eventually(&h, &admin, &["alex", "jordan"]).await;
    assert_eq!(
        has_codes(&h, "acct-1042", "jordan").await,
        Some((false, false))
    );
    assert_eq!(has_codes(&h, "acct-1042", "sam").await, None);
    // Sam's voice PIN no longer disarms, and Sam's duress PIN raises no 121 in Jordan's name.
    let token = h.token("acct-1042").await;
    for pin in ["5183", "6052"] {
        h.invoke(&arm(&token, "home", "ARMED_AWAY")).await;
        let reply = h.invoke(&disarm(&token, "home", Some(pin))).await;
        assert_eq!(
            reply["event"]["header"]["name"], "ErrorResponse",
            "{pin}: {reply}"
        );
        assert_eq!(
            h.panel("home").await["arm_state"],
            "armed_away",
            "{pin}: {reply}"
        );
    }
    assert!(
        !h.signals().await.iter().any(|s| s.starts_with("121/")),
        "{:?}",
        h.signals().await
    );
    // A rename of the same person (the same id) keeps the member and the codes.
    let alex = h.stack.sim.users("acct-1042").users[0].clone();
    assert_eq!(alex.name, "Alex");
    h.post(
        "/sim/accounts/acct-1042/users",
        json!({"id": alex.id, "number": 1, "name": "Alex Q"}),
    )
    .await;
    for _ in 0..100 {
        let p = h.stack.store.household("acct-1042").await.unwrap().profile;
        if p.member("alex").is_some_and(|m| m.name == "Alex Q") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    }
    assert_eq!(
        has_codes(&h, "acct-1042", "alex").await,
        Some((true, false))
    );
    h.api("POST", "/v1/household/lockout/reset", Some(&admin), None)
        .await;
    let reply = h.invoke(&disarm(&token, "home", Some("4729"))).await;
    assert_eq!(reply["event"]["header"]["name"], "Response", "{reply}");
    let (_, audit) = h
        .api("GET", "/v1/household/audit?limit=100", Some(&admin), None)
        .await;
    assert!(
        audit
            .to_string()
            .contains("Sam was removed: user 2 of the panel is now someone else"),
        "{audit}"
    );
}

/// A signed `users_changed` at revision `revision`, `minutes` from now by our clock.
fn users_event(revision: u64, minutes: i64, users: Value, h: &Harness) -> Value {
    json!({
        "event_id": uuid::Uuid::new_v4().to_string(),
        "account": "acct-1042",
        "occurred_at": (h.stack.clock.now() + chrono::Duration::minutes(minutes)).to_rfc3339(),
        "source": "app",
        "type": "users_changed",
        "revision": revision,
        "users": users,
    })
}

#[tokio::test]
async fn user_lists_late_and_out_of_order_resolve_by_the_clouds_revision() {
    let h = fresh().await;
    let admin = h.admin_token("acct-1042").await;
    // The first sync (at our clock's now) took the cloud's revision 1.
    members_eventually(&h, &admin, &["alex", "sam"]).await;
    let (s, _) = h
        .api(
            "PUT",
            "/v1/household/members/sam/voice-pin",
            Some(&admin),
            Some(json!({"pin": "5183"})),
        )
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let alex = json!({"id": "u-alex", "number": 1, "name": "Alex"});
    let sam = json!({"id": "u-sam", "number": 2, "name": "Sam"});
    // A removal stamped (by a cloud clock that runs behind ours) before our last sync, and
    // delivered late: newer by the cloud's sequence, so applied. Sam's code goes.
    let (status, body) = signed_webhook(&h, &users_event(3, -10, json!([alex]), &h)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    members_eventually(&h, &admin, &["alex"]).await;
    // Revision 2 (Sam still there, and Jo added) arrives after 3, stamped later: stale.
    let (status, body) = signed_webhook(
        &h,
        &users_event(
            2,
            5,
            json!([alex, sam, {"id": "u-jo", "number": 3, "name": "Jo"}]),
            &h,
        ),
    )
    .await;
    assert_eq!(
        (status, body["status"].clone()),
        (StatusCode::OK, json!("stale"))
    );
    members_eventually(&h, &admin, &["alex"]).await;
    // Revision 5 then 4: 5 (Jordan on 2) wins, 4 (Sam back on 2) is stale whatever its time.
    let jordan = json!({"id": "u-jordan", "number": 2, "name": "Jordan"});
    let (status, _) = signed_webhook(&h, &users_event(5, -20, json!([alex, jordan]), &h)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let (status, body) = signed_webhook(&h, &users_event(4, 20, json!([alex, sam]), &h)).await;
    assert_eq!(
        (status, body["status"].clone()),
        (StatusCode::OK, json!("stale"))
    );
    members_eventually(&h, &admin, &["alex", "jordan"]).await;
    assert_eq!(
        has_codes(&h, "acct-1042", "jordan").await,
        Some((false, false))
    );
    let token = h.token("acct-1042").await;
    h.invoke(&arm(&token, "home", "ARMED_AWAY")).await;
    let reply = h.invoke(&disarm(&token, "home", Some("5183"))).await;
    assert_eq!(error_type(&reply), Some("UNAUTHORIZED"), "{reply}");
    // An admin's re-sync reads the cloud's own list (its revision 1, older than 5): it can't
    // take the household back either.
    let (s, body) = h
        .api("POST", "/v1/household/members/sync", Some(&admin), None)
        .await;
    assert!(s.is_success(), "{s} {body}");
    members_eventually(&h, &admin, &["alex", "jordan"]).await;
    let p = h.stack.store.household("acct-1042").await.unwrap().profile;
    assert_eq!(p.members_revision, Some(5));
}
