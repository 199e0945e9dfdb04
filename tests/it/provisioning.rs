//! Household provisioning: a fresh deploy (an empty store) follows docs/deploy.md section 11 to
//! a working enrolment, members follow the panel cloud's users by webhook, and the first sync
//! fails cleanly while the panel cloud is down. Runs on both stores (scripts/test).

use crate::support;

use alarm_skill::common::clock::Clock;
use alarm_skill::edges::webhook::{SIGNATURE_HEADER, TIMESTAMP_HEADER, signature};
use alarm_skill::local::Options;
use alarm_skill::local::demo::DemoConfig;
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
    // Up to a minute, returning as soon as the change is there: a loaded machine can hold the
    // webhook's delivery back for seconds.
    for _ in 0..2_000 {
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
/// After the first sync (alex and sam), sam is given voice code 5183; the admin's token.
async fn sam_gets_a_voice_code(h: &Harness) -> String {
    let admin = h.admin_token("acct-1042").await;
    members_eventually(h, &admin, &["alex", "sam"]).await;
    let (s, _) = h.set_pin(&admin, "sam", "voice-pin", json!("5183")).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    admin
}

/// Sam's code (5183) is refused: the member or the code is gone.
async fn sams_code_no_longer_disarms(h: &Harness) {
    let token = h.token("acct-1042").await;
    h.invoke(&arm(&token, "home", "ARMED_AWAY")).await;
    let reply = h.invoke(&disarm(&token, "home", Some("5183"))).await;
    assert_eq!(error_type(&reply), Some("UNAUTHORIZED"), "{reply}");
}

/// The household's members as `token` lists them.
async fn members(h: &Harness, token: &str) -> (StatusCode, Value) {
    h.api("GET", "/v1/household/members", Some(token), None)
        .await
}

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
    let (s, body) = members(&h, &admin).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(member_ids(&body), vec!["alex", "sam"]);
    assert_eq!(body["members"][0]["name"], "Alex");
    assert_eq!(body["members"][1]["user_number"], 2);
    assert_eq!(body["members"][0]["has_voice_pin"], false);

    // The member's voice code, then their duress code.
    for (slot, pin) in [("voice-pin", "4729"), ("duress-pin", "8361")] {
        let (s, body) = h.set_pin(&admin, "alex", slot, json!(pin)).await;
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
    let admin = sam_gets_a_voice_code(&h).await;

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
    sams_code_no_longer_disarms(&h).await;

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
    let (s, body) = members(&h, &admin).await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"], "panel_unavailable");
    h.fault("none", 0).await;
    let (s, body) = members(&h, &admin).await;
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
    use alarm_skill::adapters::store::dynamodb::{DynamoStore, local_client};
    use alarm_skill::domain::ports::store::Store;
    let h = fresh().await;
    let endpoint = support::stack::dynamodb_endpoint();
    let (_, table) = support::stack::dynamodb_table("import").await;
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
    // The cloud listed each account's panels: they are confirmed as the account's, so a
    // duress spoken in an outage before any discovery is recorded (issue 24).
    for (account, panel) in [("acct-1042", "home"), ("acct-2001", "cabin")] {
        let seen = store.household(account).await.unwrap().panels_seen;
        assert_eq!(
            seen.keys().collect::<Vec<_>>(),
            vec![panel],
            "{account}: {seen:?}"
        );
    }

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
    use alarm_skill::domain::voice_codes::{Member, Profile};
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
    let (s, body) = members(&h, &admin).await;
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
        let (s, body) = h.set_pin(&admin, member, slot, json!(pin)).await;
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
    for _ in 0..2_000 {
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
    h.assert_audit_mentions(
        &admin,
        "Sam was removed: user 2 of the panel is now someone else",
    )
    .await;
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
    // The first sync (at our clock's now) took the cloud's revision 1.
    let admin = sam_gets_a_voice_code(&h).await;
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
    sams_code_no_longer_disarms(&h).await;
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

/// `alarm-skill pepper-usage --retire p1` (docs/deploy.md section 15, "Pepper rotation"), run as
/// the operator runs it against a table on DynamoDB Local: it refuses while a code, a pending
/// outbox record or a grant still names p1, says by how many, and clears p1 once every household
/// re-enrolled, the record was delivered and the grant re-sealed. Its output names pepper ids and
/// counts only.
#[tokio::test]
async fn pepper_usage_blocks_retiring_a_pepper_until_nothing_stored_names_it() {
    use alarm_skill::adapters::store::dynamodb::{DynamoStore, local_client};
    use alarm_skill::common::secret::{Pin, Secret};
    use alarm_skill::domain::ports::store::{
        OutboxRecord, OutboxStatus, Settlement, Store, StoredGrant,
    };
    use alarm_skill::domain::redelivery::seal::{Binding, Sealed, seal};
    use alarm_skill::domain::voice_codes::{Keyring, Member, Profile, hash_code};
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD as B64;

    let endpoint = support::stack::dynamodb_endpoint();
    let (_, table) = support::stack::dynamodb_table("peppers").await;
    let store = DynamoStore::new(local_client(&endpoint), table.clone());

    // Phase 2 of a rotation: p2 joined the ring and became current; p1 is still in it.
    let (pepper1, pepper2) = ([0x11u8; 32], [0x22u8; 32]);
    let spec = |current: &str| {
        Secret::new(
            json!({"current": current,
                   "peppers": {"p1": B64.encode(pepper1), "p2": B64.encode(pepper2)}})
            .to_string(),
        )
    };
    let ring1 = Keyring::from_json(&spec("p1")).unwrap();
    let ring2 = Keyring::from_json(&spec("p2")).unwrap();

    // Two households: three codes under p1 (a duress PIN among them) and two under p2.
    let member =
        |h: &str, id: &str, n: u16, voice: (&Keyring, &str), duress: Option<(&Keyring, &str)>| {
            Member {
                id: id.into(),
                name: id.into(),
                user_number: n,
                panel_user_id: None,
                voice_pin: Some(hash_code(voice.0, h, id, &Pin::new(voice.1))),
                duress_pin: duress.map(|(r, p)| hash_code(r, h, id, &Pin::new(p))),
            }
        };
    let (hh_a, hh_b) = ("acct-7001", "acct-7002");
    let profile_a = Profile {
        members: vec![
            member(hh_a, "alex", 1, (&ring1, "4729"), Some((&ring1, "8361"))),
            member(hh_a, "sam", 2, (&ring2, "5150"), None),
        ],
        ..Profile::default()
    };
    let profile_b = Profile {
        members: vec![member(
            hh_b,
            "nia",
            1,
            (&ring2, "2468"),
            Some((&ring1, "1357")),
        )],
        ..Profile::default()
    };
    store.save_profile(hh_a, &profile_a).await.unwrap();
    store.save_profile(hh_b, &profile_b).await.unwrap();

    // Outbox: pending under p1 and p2, a delivered one under p1 (it no longer matters), and a
    // pending one whose seal names no pepper.
    let now = chrono::Utc::now();
    let record = |ring: &Keyring, request_id: &str| {
        let to = Binding {
            request_id,
            household: hh_a,
            panel: "home",
        };
        let sealed = seal(
            ring,
            to,
            Sealed {
                duress: true,
                member: Some(1),
            },
        );
        OutboxRecord::pending(request_id.into(), hh_a, "home", sealed, now, now)
    };
    let pending_p1 = record(&ring1, "req-p1-pending");
    let pending_p2 = record(&ring2, "req-p2-pending");
    let delivered_p1 = OutboxRecord {
        status: OutboxStatus::Delivered,
        ..record(&ring1, "req-p1-delivered")
    };
    let unreadable = OutboxRecord {
        seal: "no-pepper-id-here".into(),
        ..record(&ring1, "req-unreadable")
    };
    for r in [&pending_p1, &pending_p2, &delivered_p1, &unreadable] {
        store.put_outbox(r, None).await.unwrap();
    }

    // Grants: one sealed under p1 (NA), one under p2 (EU).
    let account = "acct-7003";
    let grant = |ring: &Keyring, token: &str| StoredGrant {
        access_token: ring.seal(format!("Atza|access-{token}").as_bytes(), b"aad"),
        refresh_token: ring.seal(format!("Atzr|refresh-{token}").as_bytes(), b"aad"),
        expires_at: now,
    };
    let grant_p1 = grant(&ring1, "na");
    store.put_grant(account, "NA", &grant_p1).await.unwrap();
    store
        .put_grant(account, "EU", &grant(&ring2, "eu"))
        .await
        .unwrap();

    let run = |args: Vec<String>| {
        let (endpoint, table) = (endpoint.clone(), table.clone());
        async move {
            let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_alarm-skill"))
                .arg("pepper-usage")
                .args(["--table", &table, "--dynamodb-endpoint", &endpoint])
                .args(&args)
                .output()
                .await
                .expect("run alarm-skill pepper-usage");
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).to_string(),
                text,
            )
        }
    };
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    // A run that must exit with `want`: its stdout and all its output.
    let run_expect = |a: &[&str], want: Option<i32>| {
        let ran = run(args(a));
        async move {
            let (code, stdout, text) = ran.await;
            assert_eq!(code, want, "{text}");
            (stdout, text)
        }
    };
    let counts = |stdout: &str, id: &str| -> Value {
        let v: Value = serde_json::from_str(stdout).expect(stdout);
        v["usage"]["peppers"][id].clone()
    };
    // What the report counts for pepper `id`: codes, households, pending outbox, grants.
    let expect_counts = |stdout: &str, id: &str, [codes, households, pending, grants]: [u32; 4]| {
        assert_eq!(
            counts(stdout, id),
            json!({"codes": codes, "households": households, "pending_outbox": pending, "grants": grants}),
            "{stdout}"
        );
    };

    // Everything that must never appear in the output: peppers, code hashes, seal bodies,
    // tokens, account ids and request ids.
    let mut secrets: Vec<String> = vec![
        B64.encode(pepper1),
        B64.encode(pepper2),
        hex::encode(pepper1),
        hex::encode(pepper2),
        "Atz".into(),
        "acct-".into(),
        "req-".into(),
        "no-pepper-id-here".into(),
    ];
    for p in [&profile_a, &profile_b] {
        for m in &p.members {
            for c in [&m.voice_pin, &m.duress_pin].into_iter().flatten() {
                secrets.push(hex::encode(c.mac));
            }
        }
    }
    for sealed in [
        &pending_p1.seal,
        &pending_p2.seal,
        &grant_p1.access_token,
        &grant_p1.refresh_token,
    ] {
        secrets.push(sealed.split_once('.').unwrap().1.to_string());
    }
    let assert_clean = |text: &str| {
        for s in &secrets {
            assert!(!text.contains(s.as_str()), "output leaks {s:?}:\n{text}");
        }
    };

    // Blocked: p1 still holds 3 codes in 2 households, 1 pending record, 1 grant; the
    // unreadable record blocks too.
    let (stdout, text) = run_expect(&["--retire", "p1", "--json"], Some(1)).await;
    assert_clean(&text);
    expect_counts(&stdout, "p1", [3, 2, 1, 1]);
    expect_counts(&stdout, "p2", [2, 2, 1, 1]);
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        report["usage"]["unreadable"],
        json!({"profiles": 0, "pending_outbox": 1, "grants": 0})
    );
    assert_eq!(report["usage"]["complete"], json!(true));
    assert_eq!(report["retire"]["result"]["verdict"], "blocked", "{stdout}");

    // The table form says the same, for a human.
    let (stdout, text) = run_expect(&["--retire", "p1"], Some(1)).await;
    assert_clean(&text);
    let row = |id: &str| {
        stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(id))
            .map(|l| l.split_whitespace().skip(1).collect::<Vec<_>>())
    };
    assert_eq!(row("p1"), Some(vec!["3", "2", "1", "1"]), "{stdout}");
    assert!(
        stdout.contains(
            "retire p1: BLOCKED: 3 codes in 2 households, 1 pending outbox records, 1 grants"
        ),
        "{stdout}"
    );

    // Paged one item at a time to the end, it counts what one big page counts.
    let (stdout, _) = run_expect(&["--json", "--page-size", "1"], Some(0)).await;
    expect_counts(&stdout, "p1", [3, 2, 1, 1]);

    // Each blocker alone keeps p1: first the households re-enrol under p2 (and the unreadable
    // record is delivered), leaving the pending record and the grant...
    for (h, pins) in [
        (
            hh_a,
            [("alex", "4729", Some("8361")), ("sam", "5150", None)].as_slice(),
        ),
        (hh_b, [("nia", "2468", Some("1357"))].as_slice()),
    ] {
        let mut profile = store.household(h).await.unwrap().profile;
        for (id, voice, duress) in pins {
            let m = profile.member_mut(id).unwrap();
            m.voice_pin = Some(hash_code(&ring2, h, id, &Pin::new(*voice)));
            m.duress_pin = duress.map(|p| hash_code(&ring2, h, id, &Pin::new(p)));
        }
        store.save_profile(h, &profile).await.unwrap();
    }
    store
        .settle_outbox(&unreadable.request_id, &Settlement::Delivered, None)
        .await
        .unwrap();
    let (stdout, _) = run_expect(&["--retire", "p1", "--json"], Some(1)).await;
    expect_counts(&stdout, "p1", [0, 0, 1, 1]);
    // ...then the grant is re-sealed on a token refresh, leaving the pending record alone...
    store
        .put_grant(account, "NA", &grant(&ring2, "na2"))
        .await
        .unwrap();
    let (stdout, _) = run_expect(&["--retire", "p1", "--json"], Some(1)).await;
    expect_counts(&stdout, "p1", [0, 0, 1, 0]);
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        report["usage"]["unreadable"],
        json!({"profiles": 0, "pending_outbox": 0, "grants": 0})
    );
    // ...and once it is delivered, nothing names p1.
    store
        .settle_outbox(&pending_p1.request_id, &Settlement::Delivered, None)
        .await
        .unwrap();

    let (stdout, text) = run_expect(&["--retire", "p1", "--json"], Some(0)).await;
    assert_clean(&text);
    assert_eq!(counts(&stdout, "p1"), Value::Null, "{stdout}");
    expect_counts(&stdout, "p2", [5, 2, 1, 2]);
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["retire"]["result"]["verdict"], "clear", "{stdout}");
    let (stdout, _) = run_expect(&["--retire", "p1"], Some(0)).await;
    assert!(stdout.contains("retire p1: clear"), "{stdout}");
    // One item per page and a cap of two pages: the scan can't finish, and a pepper nothing
    // names (in what it read) is not cleared.
    let scan = ["--retire", "p9", "--page-size", "1", "--max-pages", "2"];
    let (_, text) = run_expect(&scan, Some(2)).await;
    assert!(text.contains("unknown: the scan is incomplete"), "{text}");
    run_expect(&["--retire", "p9"], Some(0)).await;
    // A grant alone keeps p1 too (say, one sealed by a container that had not yet read phase 2).
    store
        .put_grant("acct-7004", "NA", &grant(&ring1, "late"))
        .await
        .unwrap();
    let (stdout, _) = run_expect(&["--retire", "p1", "--json"], Some(1)).await;
    expect_counts(&stdout, "p1", [0, 0, 0, 1]);
    // p2 is what everything needs now.
    run_expect(&["--retire", "p2"], Some(1)).await;

    // A table that can't be reached is an error, not a verdict.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_alarm-skill"))
        .args(["pepper-usage", "--table", &table, "--retire", "p1"])
        .args(["--dynamodb-endpoint", "http://127.0.0.1:9"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
}

/// Member names carry no control or bidirectional formatting character, wherever they come in:
/// the management API refuses such a name (400), and a panel user list holding one is refused
/// whole, by webhook and by sync, so nothing changes: no forged audit line, no reversed name in
/// a notice, and no member (nor their code) lost to a "rename".
#[tokio::test]
async fn names_with_control_or_bidi_characters_are_refused_wherever_they_come_in() {
    let h = fresh().await;
    let admin = sam_gets_a_voice_code(&h).await;
    let (_, before) = members(&h, &admin).await;
    let forged = [
        "Eve\u{202E}",
        "Eve\nAdmin reset the voice disarm lockout",
        "Eve\0",
        "\u{2066}Eve\u{2069}",
    ];
    for name in forged {
        let member = json!({"id": "eve", "name": name, "user_number": 3});
        let (s, body) = h
            .api("POST", "/v1/household/members", Some(&admin), Some(member))
            .await;
        assert_eq!(
            (s, body["error"].clone()),
            (StatusCode::BAD_REQUEST, json!("bad_request")),
            "{name:?}: {body}"
        );
    }
    // The cloud's webhook renames Sam with a right-to-left override.
    let sam_reversed = json!([{"number": 1, "name": "Alex"}, {"number": 2, "name": "\u{202E}maS"}]);
    let (s, body) = signed_webhook(&h, &users_event(99, 1, sam_reversed, &h)).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    // The cloud's list holds such a name when the admin syncs.
    h.post(
        "/sim/accounts/acct-1042/users",
        json!({"number": 3, "name": "Eve\nAdmin reset the voice disarm lockout"}),
    )
    .await;
    let (s, body) = h
        .api("POST", "/v1/household/members/sync", Some(&admin), None)
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "bad_request");
    assert!(
        body["message"].as_str().unwrap().contains("panel user 3"),
        "{body}"
    );
    assert_eq!(members(&h, &admin).await.1, before);
    let (_, audit) = h.audit_as(&admin).await;
    let text = audit.to_string();
    for c in ['\u{202E}', '\u{2066}', '\0'] {
        assert!(!text.contains(c), "{text}");
    }
    assert!(!text.contains("Eve"), "{text}");
    // Sam is still Sam, code and all.
    let token = h.token("acct-1042").await;
    h.invoke(&arm(&token, "home", "ARMED_AWAY")).await;
    let reply = h.invoke(&disarm(&token, "home", Some("5183"))).await;
    assert_eq!(reply["event"]["header"]["name"], "Response", "{reply}");
}
