//! The household web app (`/app/`) and the local console (`/`) in real headless Chromium,
//! driven over WebDriver (Debian's `chromium` and `chromium-driver`; scripts/test installs
//! them). Screenshots of every page go to `target/screenshots/`.
//!
//! Also, without a browser: the dev issuer's authorization-code flow with PKCE, which the app
//! signs in with (and which Alexa's account linking uses).

use crate::support;

use std::collections::BTreeMap;

use alarm_skill::local::Options;
use alarm_skill::local::demo::DemoConfig;
use base64::Engine;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::stack::{Harness, RICH_CONFIG, arm, disarm, test_options};
use support::webdriver::{Browser, Exchange};

const TAB: &str = "\u{E004}";
const ENTER: &str = "\u{E007}";

/// Signs in from the app's start page with the keyboard only, as a household admin, through
/// the dev issuer's login page. Returns when the app has loaded the household.
async fn sign_in(b: &Browser, base: &str, shots: bool) {
    b.goto(&format!("{base}/app/")).await;
    b.wait_for(
        "the sign-in button",
        "const e = document.getElementById('sign-in'); return e && e.offsetParent !== null;",
    )
    .await;
    if shots {
        check_accessible(b, "app signed out").await;
    }
    // Tab: the skip link, then the sign-in button; Enter presses it.
    b.keys(&format!("{TAB}{TAB}")).await;
    let focused = b.js("return document.activeElement.id", json!([])).await;
    assert_eq!(
        focused, "sign-in",
        "the sign-in button is reachable by keyboard"
    );
    b.keys(ENTER).await;
    let q = at_login_page(b).await;
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["code_challenge_method"], "S256");
    assert_eq!(q["code_challenge"].len(), 43, "base64url SHA-256");
    assert_eq!(q["redirect_uri"], format!("{base}/app/"));
    assert!(
        !q.contains_key("prompt"),
        "only a step-up forces a fresh authentication"
    );
    if shots {
        b.screenshot("dev-issuer-login", false).await;
        check_accessible(b, "login page").await;
    }
    // The account field has the focus order: field, admin box, button. Enter submits.
    b.click("#username").await;
    b.keys(ENTER).await;
    household_loaded(b).await;
    assert_eq!(
        b.url().await,
        format!("{base}/app/"),
        "the code left the address bar at once"
    );
}

/// Waits for the issuer's login page; returns the authorization request's parameters.
async fn at_login_page(b: &Browser) -> BTreeMap<String, String> {
    b.wait_for(
        "the issuer's login page",
        "return document.getElementById('login') !== null",
    )
    .await;
    let url = url::Url::parse(&b.url().await).expect("authorize URL");
    assert_eq!(url.path(), "/oauth2/authorize");
    url.query_pairs().into_owned().collect()
}

async fn household_loaded(b: &Browser) {
    b.wait_for(
        "the household to load",
        "return document.body.dataset.ready === 'true'",
    )
    .await;
}

/// axe-core finds nothing; labels for every control, and no horizontal scrolling at the
/// current width.
async fn check_accessible(b: &Browser, page: &str) {
    b.assert_axe_clean(page).await;
    let unlabelled = b
        .js(
            "return [...document.querySelectorAll('input:not([type=hidden]), select, textarea, button')]
               .filter((e) => e.offsetParent !== null)
               .filter((e) => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                              && !(e.textContent || '').trim())
               .map((e) => e.outerHTML);",
            json!([]),
        )
        .await;
    assert_eq!(unlabelled, json!([]), "{page}: controls without a label");
    let overflow = b
        .js(
            "return document.documentElement.scrollWidth - window.innerWidth;",
            json!([]),
        )
        .await;
    assert!(
        overflow.as_i64().unwrap_or(1) <= 0,
        "{page}: scrolls sideways by {overflow} px"
    );
    // WCAG AA: text against its nearest opaque background at 4.5:1 at least.
    let low = b
        .js(
            r#"
            const rgb = (s) => (s.match(/[\d.]+/g) || []).map(Number);
            const lum = ([r, g, b]) => {
              const f = (c) => { c /= 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4; };
              return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
            };
            const bg = (e) => {
              for (; e; e = e.parentElement) {
                const c = rgb(getComputedStyle(e).backgroundColor);
                if (c.length === 3 || c[3] === 1) return c.slice(0, 3);
              }
              return [255, 255, 255];
            };
            const bad = [];
            for (const e of document.querySelectorAll('body *')) {
              if (e.offsetParent === null) continue;
              const own = [...e.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim());
              if (!own) continue;
              const fg = rgb(getComputedStyle(e).color).slice(0, 3);
              const [a, b2] = [lum(fg), lum(bg(e))];
              const ratio = (Math.max(a, b2) + 0.05) / (Math.min(a, b2) + 0.05);
              if (ratio < 4.5) bad.push(e.tagName + ' ' + ratio.toFixed(2) + ' ' + e.textContent.trim().slice(0, 40));
            }
            return bad;"#,
            json!([]),
        )
        .await;
    assert_eq!(low, json!([]), "{page}: text below 4.5:1 contrast");
}

/// `text` with every run of whitespace (an HTML file's or a doc's line breaks) one space.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn every_explanation_of_the_code_spacing_rule_says_a_swap_counts_as_one() {
    let rule = alarm_skill::domain::voice_codes::SPACING_RULE;
    for file in [
        "src/edges/webapp/app/index.html",
        "docs/voice-codes.md",
        "docs/deploy.md",
        "docs/google-home.md",
    ] {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(
            one_line(&text).contains(rule),
            "{file} explains the spacing rule in other words than \"{rule}\""
        );
        assert!(
            !one_line(&text).contains("at least 2 digits"),
            "{file}: a swap differs in 2 digits and is still refused"
        );
    }
}

/// No Content-Security-Policy violation (nor any other console error) on the page.
async fn check_console_clean(b: &Browser, page: &str) {
    let errors: Vec<Value> = b
        .log("browser")
        .await
        .into_iter()
        .filter(|e| {
            let m = e["message"].as_str().unwrap_or_default();
            // The management API's 4xx answers (a rule broken) are expected, and logged by
            // Chromium as failed loads; anything else severe is not.
            let expected = m.contains("/v1/household/") && m.contains("status of 4");
            m.contains("Content Security Policy") || (e["level"] == "SEVERE" && !expected)
        })
        .collect();
    assert!(errors.is_empty(), "{page}: console errors {errors:#?}");
}

async fn member_form(b: &Browser, member: &str, slot: &str, pin: &str) {
    let input = format!("#pin-{slot}-{member}");
    b.type_into(&input, pin).await;
    // Enter in the field submits its form, as on a phone keyboard's "go".
    b.keys(ENTER).await;
    // The answer shows next to the form once the app has reloaded the household.
    b.wait_for(
        "the app to answer",
        &format!(
            "const m = document.querySelector('#member-{member} ~ form[data-slot={slot}] .form-msg');
             return m && m.textContent;"
        ),
    )
    .await;
    assert_eq!(
        b.value(&input).await,
        "",
        "the PIN input is cleared after a submit"
    );
}

async fn clear_messages(b: &Browser) {
    b.js(
        "document.getElementById('status').textContent = '';
         const e = document.getElementById('error'); e.textContent = ''; e.hidden = true;",
        json!([]),
    )
    .await;
}

/// No PIN in any URL, and no PIN or token in storage; PINs only in management API bodies.
fn assert_pins_confined(exchanges: &[Exchange], base: &str, pins: &[&str]) {
    for x in exchanges {
        assert!(
            x.url.starts_with(&format!("{base}/")),
            "a request to another origin: {}",
            x.url
        );
        for pin in pins {
            assert!(!support::holds_pin(&x.url, pin), "PIN in a URL: {}", x.url);
            if let Some(body) = &x.request_body
                && support::holds_pin(body, pin)
            {
                assert!(
                    x.url.contains("/v1/household/members/") && x.method == "PUT",
                    "PIN sent to {} {}",
                    x.method,
                    x.url
                );
            }
            if let Some(body) = &x.response_body {
                assert!(
                    !body.contains(&format!("\"{pin}\"")),
                    "PIN in a response of {}",
                    x.url
                );
            }
        }
    }
}

#[tokio::test]
async fn sign_in_enrol_codes_see_a_rule_explained_and_reset_a_lockout() {
    let h = Harness::rich().await;
    // A phone's viewport: the app must work at 390 px.
    let b = Browser::start(390, 844).await;
    sign_in(&b, &h.base, true).await;
    b.screenshot("app-members-phone", false).await;
    check_accessible(&b, "app signed in").await;
    // Who is signed in, in the header: the account, never the token.
    assert_eq!(b.text("#account").await, "Signed in as demo");
    let rules = b.text("#code-rules").await;
    assert!(
        one_line(&rules).contains(alarm_skill::domain::voice_codes::SPACING_RULE),
        "the hint states the rule the API enforces: {rules}"
    );
    let names = b
        .js(
            "return [...document.querySelectorAll('.member-name')].map((e) => e.textContent)",
            json!([]),
        )
        .await;
    assert_eq!(names, json!(["Alex", "Sam"]));
    // PIN fields: masked, never offered to a password manager, and without a name, so even a
    // form submitted without JavaScript could not put them in a URL (the CSP forbids that too).
    let fields = b
        .js(
            "return [...document.querySelectorAll('input.pin')].map((e) =>
               [e.type, e.autocomplete, e.inputMode, e.name]);",
            json!([]),
        )
        .await;
    assert_eq!(
        fields,
        Value::Array(vec![json!(["password", "one-time-code", "numeric", ""]); 4]),
        "{fields}"
    );
    let storage = b.storage().await;
    assert_eq!(
        storage,
        json!({"local": {}, "session": {}}),
        "no token or PKCE secret left in storage"
    );

    // A rule broken, explained: 1234 is among the most common PINs.
    member_form(&b, "sam", "duress-pin", "1234").await;
    let error = b.text("#error").await;
    assert!(
        error.contains("Not saved") && error.contains("most commonly chosen PINs"),
        "{error}"
    );
    let beside = b
        .text("#member-sam ~ form[data-slot=duress-pin] .form-msg")
        .await;
    assert_eq!(beside, error, "the explanation also shows next to the form");
    b.screenshot("app-rule-explained-phone", true).await;
    check_accessible(&b, "app with an error").await;
    // And one too close to another code: Alex's voice PIN 4729 with two digits swapped, which
    // differs in 2 digits and is still refused: the answer says why.
    clear_messages(&b).await;
    member_form(&b, "sam", "duress-pin", "7429").await;
    let error = b.text("#error").await;
    assert!(error.contains("Not saved"), "{error}");
    assert!(
        error.contains(alarm_skill::domain::voice_codes::SPACING_RULE),
        "the refusal says a swap counts as one change: {error}"
    );
    assert!(
        !error.contains("Alex"),
        "a conflict never names the other member: {error}"
    );

    // Enrol Sam's new voice PIN and a duress PIN, then use them by voice.
    clear_messages(&b).await;
    member_form(&b, "sam", "voice-pin", "5190").await;
    assert_eq!(b.text("#status").await, "Voice PIN saved for Sam.");
    clear_messages(&b).await;
    member_form(&b, "sam", "duress-pin", "7604").await;
    assert_eq!(b.text("#status").await, "Duress PIN saved for Sam.");
    let token = h.token("demo").await;
    h.invoke(&arm(&token, "home", "ARMED_AWAY")).await;
    let r = h.invoke(&disarm(&token, "home", Some("5190"))).await;
    assert_eq!(r["event"]["header"]["name"], "Response", "{r}");
    h.invoke(&arm(&token, "home", "ARMED_AWAY")).await;
    let r = h.invoke(&disarm(&token, "home", Some("7604"))).await;
    assert_eq!(r["event"]["header"]["name"], "Response", "{r}");
    let duress: Vec<Value> = h
        .monitoring()
        .await
        .into_iter()
        .filter(|e| e["code"] == "121")
        .collect();
    assert_eq!(duress.len(), 1, "Sam's duress PIN raised the 121");
    assert_eq!(duress[0]["user"], 2);
    let r = h.invoke(&disarm(&token, "home", Some("5183"))).await;
    assert_eq!(
        r["event"]["payload"]["type"], "UNAUTHORIZED",
        "the replaced PIN no longer works"
    );

    // Three wrong codes lock voice disarm; the admin sees it and resets it.
    h.invoke(&arm(&token, "home", "ARMED_AWAY")).await;
    for pin in ["1111", "2222"] {
        h.invoke(&disarm(&token, "home", Some(pin))).await;
    }
    b.click("#refresh").await;
    b.wait_for(
        "the lockout to show",
        "return document.getElementById('lockout-state').textContent.includes('is locked')",
    )
    .await;
    b.screenshot("app-lockout-phone", true).await;
    check_accessible(&b, "app with voice disarm locked").await;
    b.click("#reset-lockout").await;
    b.wait_for(
        "the lockout reset",
        "return document.getElementById('lockout-state').textContent === 'Not locked. No wrong codes.'",
    )
    .await;
    assert_eq!(
        b.text("#status").await,
        "Lockout reset: voice disarm works again."
    );
    let admin = h.admin_token("demo").await;
    let (_, lockout) = h.lockout_as(&admin).await;
    assert_eq!(lockout["consecutive_failures"], 0);
    assert_eq!(lockout["locked"], false);
    let r = h.invoke(&disarm(&token, "home", Some("4729"))).await;
    assert_eq!(
        r["event"]["header"]["name"], "Response",
        "voice disarm works again"
    );
    let audit = b.text("#audit").await;
    assert!(
        audit.contains("Admin reset the voice disarm lockout"),
        "{audit}"
    );
    assert!(audit.contains("Admin changed Sam's voice codes"), "{audit}");

    // Settings, through the form.
    choose_and_submit(
        &b,
        "#pinless option[value=refuse]",
        "#settings button[type=submit]",
    )
    .await;
    b.wait_for(
        "the settings to save",
        "return document.getElementById('status').textContent === 'Settings saved.'",
    )
    .await;
    let (_, settings) = h
        .api("GET", "/v1/household/settings", Some(&admin), None)
        .await;
    assert_eq!(settings["pinless_disarm"], "refuse");

    let exchanges = b.network().await;
    assert_pins_confined(&exchanges, &h.base, &["1234", "7429", "5190", "7604"]);
    let app_page = exchanges
        .iter()
        .find(|x| x.url == format!("{}/app/", h.base) && x.status == 200)
        .expect("the app page was loaded");
    let csp = app_page.response_headers["content-security-policy"]
        .as_str()
        .unwrap_or_default();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe"),
        "{csp}"
    );
    assert_eq!(b.storage().await, json!({"local": {}, "session": {}}));
    check_console_clean(&b, "app").await;

    // The engine finds what it exists to find: the same page, its language and a PIN field's
    // label taken away.
    b.js(
        "document.documentElement.removeAttribute('lang');
         const input = document.getElementById('pin-voice-pin-sam');
         input.closest('label').replaceWith(input);",
        json!([]),
    )
    .await;
    let found = b.axe_violations("app, broken on purpose").await;
    for rule in ["html-has-lang (serious)", "label (critical)"] {
        assert!(
            found.iter().any(|v| v.starts_with(rule)),
            "{rule} not among {found:#?}"
        );
    }
    assert!(
        found.iter().any(|v| v.contains("#pin-voice-pin-sam")),
        "the unlabelled field is named: {found:#?}"
    );
    b.quit().await;
}

/// A household where Alex has a duress PIN, and the same household where Alex has none.
fn household(with_duress: bool) -> Options {
    let config = if with_duress {
        RICH_CONFIG.to_string()
    } else {
        RICH_CONFIG.replace(r#", "duress_pin": "8361""#, "")
    };
    assert_eq!(with_duress, config.contains("8361"));
    Options {
        config: DemoConfig::parse(&config).expect("config"),
        ..test_options()
    }
}

/// The page's DOM, with what legitimately differs between two runs taken out: times, ports.
async fn dom(b: &Browser, base: &str) -> String {
    let html = b
        .js(
            "const c = document.body.cloneNode(true);
             c.querySelectorAll('time').forEach((t) => { t.textContent = ''; t.removeAttribute('datetime'); });
             return c.innerHTML;",
            json!([]),
        )
        .await;
    html.as_str().unwrap_or_default().replace(base, "BASE")
}

/// Every exchange, with the values that are random per sign-in replaced by placeholders.
fn normalized(exchanges: &[Exchange], base: &str) -> Vec<Value> {
    // The sign-in's random values, in the order they appear.
    let mut secrets: Vec<String> = vec![];
    for x in exchanges {
        if let Ok(u) = url::Url::parse(&x.url) {
            for (k, v) in u.query_pairs() {
                if matches!(k.as_ref(), "state" | "code_challenge" | "code") {
                    secrets.push(v.into_owned());
                }
            }
        }
        if let Some(body) = &x.request_body {
            for (k, v) in url::form_urlencoded::parse(body.as_bytes()) {
                if matches!(
                    k.as_ref(),
                    "state" | "code_challenge" | "code" | "code_verifier"
                ) {
                    secrets.push(v.into_owned());
                }
            }
        }
        if let Some(t) = x
            .response_body
            .as_deref()
            .and_then(|b| serde_json::from_str::<Value>(b).ok())
            .and_then(|v| v["access_token"].as_str().map(str::to_string))
        {
            secrets.push(t);
        }
    }
    let encoded_base: String = url::form_urlencoded::byte_serialize(base.as_bytes()).collect();
    let scrub = |s: &str| {
        let mut s = s.replace(base, "BASE").replace(&encoded_base, "BASE");
        for (i, secret) in secrets.iter().enumerate() {
            if !secret.is_empty() {
                s = s.replace(secret.as_str(), &format!("<random {i}>"));
            }
        }
        s
    };
    fn times(v: &mut Value) {
        match v {
            Value::Object(m) => {
                for (k, x) in m.iter_mut() {
                    if k == "at" {
                        *x = json!("<time>");
                    } else {
                        times(x);
                    }
                }
            }
            Value::Array(a) => a.iter_mut().for_each(times),
            _ => {}
        }
    }
    exchanges
        .iter()
        .map(|x| {
            let body = x
                .response_body
                .as_deref()
                .map(|b| match serde_json::from_str::<Value>(b) {
                    Ok(mut v) => {
                        times(&mut v);
                        json!(scrub(&v.to_string()))
                    }
                    Err(_) => json!(scrub(b)),
                });
            let header = |name: &str| x.response_headers[name].as_str().map(&scrub);
            json!({
                "request": format!("{} {}", x.method, scrub(&x.url)),
                "request_body": x.request_body.as_deref().map(&scrub),
                "status": x.status,
                "content_type": header("content-type"),
                "content_length": header("content-length"),
                "location": header("location"),
                "response_body": body,
            })
        })
        .collect()
}

/// Signs in, sets Alex's duress PIN, deletes it; the DOM after each step and every exchange.
async fn duress_session(with_duress: bool) -> (Vec<String>, Vec<Value>) {
    let h = Harness::start_with(household(with_duress)).await;
    let b = Browser::start(1024, 900).await;
    sign_in(&b, &h.base, false).await;
    let mut doms = vec![dom(&b, &h.base).await];
    // The two members' cards are the same but for name, id and user number.
    let cards = b
        .js(
            "return [...document.querySelectorAll('.member')].map((e) => e.outerHTML)",
            json!([]),
        )
        .await;
    let card = |i: usize, name: &str, id: &str, number: &str| {
        cards[i]
            .as_str()
            .unwrap_or_default()
            .replace(&format!(">{name}<"), ">NAME<")
            .replace(&format!("{name}: "), "NAME: ")
            .replace(&format!("-{id}\""), "-ID\"")
            .replace(&format!(">{number}<"), ">N<")
    };
    assert_eq!(
        card(0, "Alex", "alex", "1"),
        card(1, "Sam", "sam", "2"),
        "Alex's card (duress PIN: {with_duress}) differs from Sam's (none)"
    );
    member_form(&b, "alex", "duress-pin", "9046").await;
    assert_eq!(b.text("#status").await, "Duress PIN saved for Alex.");
    doms.push(dom(&b, &h.base).await);
    clear_messages(&b).await;
    b.click("#member-alex ~ form[data-slot=duress-pin] button.delete")
        .await;
    b.wait_for(
        "the delete to answer",
        // Shown next to the form once the household is reloaded.
        "const m = document.querySelector('#member-alex ~ form[data-slot=duress-pin] .form-msg');
         return m && m.textContent === 'Duress PIN deleted for Alex.';",
    )
    .await;
    doms.push(dom(&b, &h.base).await);
    if with_duress {
        b.screenshot("app-members-desktop", true).await;
    }
    let exchanges = b.network().await;
    assert_pins_confined(&exchanges, &h.base, &["9046", "8361"]);
    assert!(
        exchanges
            .iter()
            .any(|x| x.url.ends_with("/duress-pin") && x.method == "PUT"),
        "the network log holds the page's requests"
    );
    check_console_clean(&b, "app").await;
    b.quit().await;
    (doms, normalized(&exchanges, &h.base))
}

#[tokio::test]
async fn the_app_never_tells_whether_a_member_has_a_duress_pin() {
    let (dom_with, net_with) = duress_session(true).await;
    let (dom_without, net_without) = duress_session(false).await;
    assert_eq!(dom_with.len(), 3);
    for (i, (a, b)) in dom_with.iter().zip(&dom_without).enumerate() {
        assert_eq!(a, b, "the rendered page differs at step {i}");
    }
    assert!(net_with.len() >= 10, "{net_with:#?}");
    assert_eq!(
        net_with.len(),
        net_without.len(),
        "a different number of requests"
    );
    for (a, b) in net_with.iter().zip(&net_without) {
        assert_eq!(a, b, "a request or response differs");
    }
}

/// Waits until the console has polled twice more: what it shows is then at least as new as now.
/// Picks the `option` of a form's select, then clicks the form's `submit` button.
async fn choose_and_submit(b: &Browser, option: &str, submit: &str) {
    b.click(option).await;
    b.click(submit).await;
}

/// Waits (bounded) for an element matching `selector` to show: its text.
async fn text_once_shown(b: &Browser, what: &str, selector: &str) -> Value {
    let script = format!(
        "const li = document.querySelector('{selector}'); return li ? li.textContent : null;"
    );
    b.wait_for(what, &script).await
}

async fn two_polls(b: &Browser) {
    let n = b
        .js(
            "return Number(document.body.dataset.polled || 0)",
            json!([]),
        )
        .await
        .as_i64()
        .unwrap_or(0);
    b.wait_for(
        "two more polls",
        &format!(
            "return Number(document.body.dataset.polled || 0) >= {}",
            n + 2
        ),
    )
    .await;
}

#[tokio::test]
async fn the_console_shows_a_duress_disarm_on_both_sides() {
    let h = Harness::start().await;
    let b = Browser::start(1280, 800).await;
    b.goto(&format!("{}/", h.base)).await;
    b.wait_for(
        "the console to poll",
        "return Number(document.body.dataset.polled || 0) >= 1",
    )
    .await;
    check_accessible(&b, "console").await;
    // The status line words the cloud's state as the control does.
    assert_eq!(b.text("#fault-state").await, "Panel cloud API now: working");
    assert_eq!(
        b.js(
            "const s = document.getElementById('fault'); return s.selectedOptions[0].textContent;",
            json!([])
        )
        .await,
        "working"
    );

    async fn say(b: &Browser, command: &str, pin: Option<&str>) -> String {
        let before = b
            .js(
                "return document.querySelectorAll('#transcript li.reply').length",
                json!([]),
            )
            .await;
        b.click(&format!("#command option[value='{command}']"))
            .await;
        if let Some(p) = pin {
            b.type_into("#pin", p).await;
        }
        b.click("#say").await;
        assert_eq!(b.value("#pin").await, "", "the code is cleared at once");
        b.wait_for(
            "the assistant's reply",
            &format!("return document.querySelectorAll('#transcript li.reply').length > {before}"),
        )
        .await;
        b.text("#transcript li.reply").await
    }
    /// Armed away by voice, then `pin` said: the reply, and what the household then sees.
    async fn disarm_from_away(b: &Browser, pin: &str) -> (String, (String, String)) {
        assert!(
            say(b, "arm away", None)
                .await
                .contains("Home is armed in away mode")
        );
        let reply = say(b, "disarm", Some(pin)).await;
        (reply, household_side(b).await)
    }

    async fn household_side(b: &Browser) -> (String, String) {
        // Two polls that started after the reply: all of it is as new as the disarm.
        two_polls(b).await;
        b.wait_for(
            "the panel and the notification to show the disarm",
            "const li = document.querySelector('#notifications li');
             return document.getElementById('panel').dataset.state === 'disarmed'
                 && li && li.textContent.includes('disarmed');",
        )
        .await;
        let last_note = b
            .js(
                "const li = document.querySelector('#notifications li');
                 return li ? li.textContent.replace(/^[^·]*· /, '') : '';",
                json!([]),
            )
            .await;
        (
            b.text("#panel dl").await,
            last_note.as_str().unwrap_or_default().to_string(),
        )
    }

    let (normal_reply, normal_side) = disarm_from_away(&b, "4729").await;
    two_polls(&b).await;
    assert_eq!(
        b.js(
            "return document.querySelectorAll('#events li[data-code=\"121\"]').length",
            json!([])
        )
        .await,
        0,
        "no 121 for the normal PIN"
    );

    let (duress_reply, duress_side) = disarm_from_away(&b, "8361").await;
    assert_eq!(normal_reply, "Alexa: Home is disarmed.");
    assert_eq!(
        duress_reply, normal_reply,
        "the same reply to the household"
    );
    assert_eq!(duress_side, normal_side, "the same panel and notification");
    let event = text_once_shown(
        &b,
        "the 121 at the monitoring center",
        "#events li[data-code=\"121\"]",
    )
    .await;
    assert!(
        event
            .as_str()
            .unwrap_or_default()
            .contains("121 Duress · user 1"),
        "{event}"
    );
    let dispatch = text_once_shown(
        &b,
        "the duress dispatch",
        "#dispatches li[data-reason=\"duress\"]",
    )
    .await;
    assert!(
        dispatch.as_str().unwrap_or_default().contains("user 1"),
        "{dispatch}"
    );
    b.screenshot("console-duress", false).await;

    // Google hears the same duress PIN the same way.
    b.click("#assistant option[value=google]").await;
    say(&b, "arm away", None).await;
    let google = say(&b, "disarm", Some("8361")).await;
    assert_eq!(google, "Google: Home is disarmed.");

    // `alarm-skill say` in another terminal shows in the transcript too, either assistant.
    for args in [&["status"][..], &["--assistant", "google", "status"]] {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_alarm-skill"))
            .arg("say")
            .args(args)
            .args(["--url", &h.base])
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .expect("alarm-skill say runs");
        assert!(out.status.success(), "{out:?}");
    }
    b.wait_for(
        "alarm-skill say's utterances in the transcript",
        "return document.querySelectorAll('#transcript li.you').length === 8",
    )
    .await;
    let transcript = b
        .js(
            "return [...document.querySelectorAll('#transcript li')].slice(0, 4).map((li) => li.textContent)",
            json!([]),
        )
        .await;
    assert_eq!(
        transcript,
        json!([
            "Google: Home is disarmed.",
            "You: Google, status of home.",
            "Alexa: Home is disarmed.",
            "You: Alexa, status of home.",
        ])
    );
    let said = b.text("#transcript").await;
    assert!(
        !said.contains("8361") && !said.contains("4729"),
        "no code in the transcript: {said}"
    );

    // The simulator's controls: a zone, the clock, a fault.
    b.click("#zones li[data-zone=back-door] button").await;
    b.wait_for(
        "the back door to show open",
        "const li = document.querySelector('#zones li[data-zone=back-door]');
         return li && li.textContent.includes(': open');",
    )
    .await;
    assert_eq!(h.panel("home").await["zones"][1]["open"], true);
    let before = h.get("/sim/panels").await["now"].clone();
    b.click("[data-advance='300']").await;
    two_polls(&b).await;
    let after = h.get("/sim/panels").await["now"].clone();
    let secs = |v: &Value| {
        chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap_or_default())
            .expect("time")
            .timestamp()
    };
    assert!(secs(&after) - secs(&before) >= 300, "{before} → {after}");
    choose_and_submit(&b, "#fault option[value=error]", "#fault-form button").await;
    b.wait_for(
        "the fault to show",
        "return document.getElementById('fault-state').textContent === 'Panel cloud API now: answers 500'",
    )
    .await;
    assert_eq!(h.get("/sim/faults").await["mode"], "error");

    let exchanges = b.network().await;
    for x in &exchanges {
        assert!(
            !support::holds_pin(&x.url, "8361") && !support::holds_pin(&x.url, "4729"),
            "{}",
            x.url
        );
    }
    check_console_clean(&b, "console").await;
    b.quit().await;
}

/// What the console shows, part by part: the markup of each panel and list, the status line.
async fn console_parts(b: &Browser) -> Value {
    b.js(
        "const html = (id) => document.getElementById(id).innerHTML;
         return {
           account: document.getElementById('account').value,
           state: document.getElementById('panel').dataset.state,
           panel: html('panel'), zones: html('zones'), transcript: html('transcript'),
           notifications: html('notifications'), events: html('events'),
           dispatches: html('dispatches'),
           fault: document.getElementById('fault-state').textContent,
         };",
        json!([]),
    )
    .await
}

/// The console as it arrives, its script blocked: what a screenshot taken at load shows.
async fn console_without_script(h: &Harness) -> Browser {
    let b = Browser::start(1280, 800).await;
    b.cdp("Network.enable", json!({})).await;
    b.cdp(
        "Network.setBlockedURLs",
        json!({"urls": ["*/console/console.js"]}),
    )
    .await;
    b.goto(&format!("{}/", h.base)).await;
    b
}

/// The console loaded again with its script, once the script has drawn the page.
async fn console_with_script(b: &Browser, h: &Harness) {
    b.cdp("Network.setBlockedURLs", json!({"urls": []})).await;
    b.goto(&format!("{}/", h.base)).await;
    b.wait_for(
        "the console to poll",
        "return Number(document.body.dataset.polled || 0) >= 1",
    )
    .await;
}

#[tokio::test]
async fn the_console_arrives_with_its_state_drawn_before_its_script_runs() {
    let h = Harness::start().await;
    // Something in every part: a transcript, notifications, a 121 and its dispatch.
    h.post("/dev/say", json!({"command": "arm", "mode": "away"}))
        .await;
    h.post("/dev/say", json!({"command": "disarm", "pin": "8361"}))
        .await;
    // Each read lets frames still on the DC-09 link arrive first.
    assert!(h.monitoring().await.iter().any(|e| e["code"] == "121"));
    assert!(
        h.get("/sim/monitoring/dispatches")
            .await
            .as_array()
            .is_some_and(|d| !d.is_empty())
    );

    // The page without its script: what a screenshot taken at load shows.
    let b = console_without_script(&h).await;
    assert_eq!(
        b.js(
            "return document.body.dataset.polled === undefined",
            json!([])
        )
        .await,
        true,
        "the console's script did not run"
    );
    let first = console_parts(&b).await;
    let part = |k: &str| first[k].as_str().unwrap_or_default().to_string();
    assert_eq!(first["account"], "demo");
    assert_eq!(first["state"], "disarmed");
    assert!(
        part("panel").contains("<dt>State</dt><dd>disarmed</dd>"),
        "{first}"
    );
    assert_eq!(part("zones").matches("<li").count(), 3, "{first}");
    assert!(
        part("transcript").contains("Alexa: Home is disarmed."),
        "{first}"
    );
    assert!(
        part("transcript").contains("You: Alexa, disarm home (with a code)."),
        "{first}"
    );
    assert!(part("notifications").contains("disarmed"), "{first}");
    assert!(part("events").contains("121 Duress · user 1"), "{first}");
    assert!(part("dispatches").contains("duress"), "{first}");
    assert_eq!(first["fault"], "Panel cloud API now: working");
    b.screenshot("console-first-paint", false).await;
    check_accessible(&b, "console before its script ran").await;

    // With its script, the page draws the same state in the same markup.
    console_with_script(&b, &h).await;
    assert_eq!(console_parts(&b).await, first);
    b.quit().await;
}

/// Item 6 of issue 26: for each event the center received, which path carried it. The skill's
/// second path is a transmitter on line `SECOND_PATH_LINE` of the demo household's account
/// 1234; here the test sends its frames itself, over TCP to the stack's real receiver: a
/// communication trouble (350) before the panel cloud reports again, and a copy of the cloud's
/// duress, which the center merges. Drawn the same before and after the script runs, axe clean.
#[tokio::test]
async fn the_console_shows_which_path_carried_each_event() {
    use alarm_skill::local::simulator::monitoring::SECOND_PATH_LINE;
    /// Each event shown, newest first: code, path, class, and its text after the time.
    async fn paths(b: &Browser) -> Value {
        b.js(
            "return [...document.querySelectorAll('#events li')]
                 .map((li) => [li.dataset.code, li.dataset.path, li.className,
                               li.textContent.replace(/^[^·]*· /, '')]);",
            json!([]),
        )
        .await
    }
    let h = Harness::start().await;
    let receiver = h.stack.receiver.addr();
    let line = support::dc09::route("1234", SECOND_PATH_LINE);
    let now = |v: Value| {
        chrono::DateTime::parse_from_rfc3339(v["now"].as_str().unwrap_or_default())
            .expect("the stack's clock")
            .to_utc()
    };
    let t0 = now(h.get("/sim/panels").await);
    let event = support::dc09::event(350, 1);
    let (_, answer) = support::dc09::send(receiver, &line, 1, &event, t0, t0, None).await;
    assert_eq!(answer.id, alarm_skill::wire::dc09::frame::MessageId::Ack);
    // The cloud reports again, after the trouble: the duress (the demo panel reports no
    // openings and closings), which clears the trouble.
    h.post("/dev/say", json!({"command": "arm", "mode": "away"}))
        .await;
    h.post("/dev/say", json!({"command": "disarm", "pin": "8361"}))
        .await;
    let duress = h.monitoring().await;
    let duress = duress
        .iter()
        .find(|e| e["code"] == "121")
        .expect("the cloud's 121");
    let occurred = now(json!({"now": duress["at"]}));
    let t1 = now(h.get("/sim/panels").await);
    let copy = support::dc09::event(121, 1);
    let (_, answer) = support::dc09::send(receiver, &line, 2, &copy, occurred, t1, None).await;
    assert_eq!(answer.id, alarm_skill::wire::dc09::frame::MessageId::Ack);
    let duresses = h.get("/sim/monitoring/dispatches").await;
    assert_eq!(duresses.as_array().map_or(0, Vec::len), 1, "{duresses}");

    let b = console_without_script(&h).await;
    let first = console_parts(&b).await;
    let shown = paths(&b).await;
    let at = |t: chrono::DateTime<chrono::Utc>| t.format("%H:%M:%S").to_string();
    // Newest first.
    assert_eq!(
        shown,
        json!([
            [
                "121",
                "second_path",
                "merged",
                "121 Duress · user 1 · via second path · merged: already dispatched"
            ],
            [
                "121",
                "panel_cloud",
                "alert",
                "121 Duress · user 1 · via panel cloud"
            ],
            [
                "350",
                "second_path",
                "",
                format!(
                    "350 Communication trouble · user 1 · via second path · cleared: the panel cloud reported at {}",
                    at(occurred)
                )
            ],
        ]),
        "{first}"
    );
    check_accessible(&b, "console with both paths").await;
    b.screenshot("console-two-paths", false).await;

    // The script draws the same, from `GET /sim/monitoring`.
    console_with_script(&b, &h).await;
    assert_eq!(console_parts(&b).await, first);
    assert_eq!(paths(&b).await, shown);
    check_accessible(&b, "console with both paths, drawn by its script").await;
    b.quit().await;
}

fn challenge(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// The app's authorization request for `scope`, with `changes` made to it.
fn auth_request(
    h: &Harness,
    scope: &str,
    verifier: &str,
    changes: &[(&str, &str)],
) -> BTreeMap<String, String> {
    let mut p: BTreeMap<String, String> = [
        ("response_type", "code"),
        ("client_id", alarm_skill::local::AUDIENCE),
        ("redirect_uri", &format!("{}/app/", h.base)),
        ("scope", scope),
        ("state", "s1"),
        ("code_challenge", &challenge(verifier)),
        ("code_challenge_method", "S256"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in changes {
        p.insert(k.to_string(), v.to_string());
    }
    p
}

/// The login form's POST, as a browser sends it, with `changes` to the request.
async fn post_login(
    h: &Harness,
    http: &reqwest::Client,
    scope: &str,
    verifier: &str,
    changes: &[(&str, &str)],
) -> reqwest::Response {
    let mut form = auth_request(h, scope, verifier, changes);
    form.insert("username".into(), "demo".into());
    form.insert("admin".into(), "yes".into());
    http.post(format!("{}/oauth2/authorize", h.base))
        .form(&form)
        .send()
        .await
        .expect("login")
}

/// Where a 303 from the issuer sends the browser: its path and query.
fn sent_back(resp: &reqwest::Response) -> (String, BTreeMap<String, String>) {
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    let location = resp.headers()["location"].to_str().expect("location");
    let back = url::Url::parse(location).expect("redirect");
    (
        back.path().to_string(),
        back.query_pairs().into_owned().collect(),
    )
}

/// The login form's POST; returns the redirect's code, checking the state came back.
async fn authorize(h: &Harness, http: &reqwest::Client, scope: &str, verifier: &str) -> String {
    let resp = post_login(h, http, scope, verifier, &[]).await;
    let (path, q) = sent_back(&resp);
    assert_eq!(path, "/app/");
    assert_eq!(q["state"], "s1");
    q["code"].clone()
}

async fn redeem(
    h: &Harness,
    http: &reqwest::Client,
    code: &str,
    verifier: &str,
) -> (StatusCode, Value) {
    let resp = http
        .post(format!("{}/oauth2/token", h.base))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("client_id", alarm_skill::local::AUDIENCE),
            ("redirect_uri", &format!("{}/app/", h.base)),
            ("code_verifier", verifier),
        ])
        .send()
        .await
        .expect("token");
    (resp.status(), resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_dev_issuer_runs_the_code_flow_with_pkce_and_redirects_only_home() {
    let h = Harness::start().await;
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let verifier = "v".repeat(43) + "-fresh_verifier.~";

    // A foreign redirect URI gets an error page, never a redirect.
    let challenge_ = challenge(&verifier);
    let url = url::Url::parse_with_params(
        &format!("{}/oauth2/authorize", h.base),
        &[
            ("response_type", "code"),
            ("client_id", alarm_skill::local::AUDIENCE),
            ("redirect_uri", "https://attacker.example/app/"),
            ("code_challenge", challenge_.as_str()),
            ("code_challenge_method", "S256"),
        ],
    )
    .expect("url");
    let resp = http.get(url).send().await.expect("authorize");
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(resp.headers().get("location").is_none());
    let page = resp.text().await.expect("page");
    assert!(page.contains("redirect_uri is not registered"), "{page}");

    // A wrong verifier is refused, and burns the code.
    let code = authorize(&h, &http, "openid", &verifier).await;
    let (status, body) = redeem(&h, &http, &code, &("w".repeat(43))).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    let (status, _) = redeem(&h, &http, &code, &verifier).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "a code is good for one attempt"
    );

    // The right verifier: a management token, good for the API and not for directives.
    let code = authorize(&h, &http, "openid", &verifier).await;
    let (status, body) = redeem(&h, &http, &code, &verifier).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = body["access_token"].as_str().expect("token").to_string();
    let (status, members) = h
        .api("GET", "/v1/household/members", Some(&token), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(members["members"][0]["id"], "alex");
    let r = h.invoke(&arm(&token, "home", "ARMED_AWAY")).await;
    assert_eq!(
        r["event"]["payload"]["type"],
        "INVALID_AUTHORIZATION_CREDENTIAL"
    );
    let (_, again) = redeem(&h, &http, &code, &verifier).await;
    assert_eq!(again["error"], "invalid_grant", "redeemed codes are gone");

    // Alexa's account linking asks for alarm/control: a directive token, no management.
    let code = authorize(&h, &http, "alarm/control", &verifier).await;
    let (_, body) = redeem(&h, &http, &code, &verifier).await;
    let alexa = body["access_token"].as_str().expect("token").to_string();
    let r = h.invoke(&arm(&alexa, "home", "ARMED_AWAY")).await;
    assert_eq!(r["event"]["header"]["name"], "Arm.Response", "{r}");
    let (status, body) = h
        .api("GET", "/v1/household/members", Some(&alexa), None)
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (StatusCode::FORBIDDEN, Some("wrong_token"))
    );

    // `/` is the console for a browser, the stack's banner for curl.
    let banner = h.get("/").await;
    assert_eq!(banner["service"], alarm_skill::local::BANNER);
    let console = http
        .get(format!("{}/", h.base))
        .header("accept", "text/html")
        .send()
        .await
        .expect("GET /");
    assert!(
        console
            .text()
            .await
            .expect("page")
            .contains("local console")
    );

    // The app's files carry the strict policy and are never cached.
    for path in [
        "/app/",
        "/app/app.js",
        "/app/app.css",
        "/app/config.json",
        "/oauth2/login.css",
    ] {
        let resp = http
            .get(format!("{}{path}", h.base))
            .send()
            .await
            .expect("GET");
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        let csp = resp.headers()["content-security-policy"]
            .to_str()
            .expect("csp");
        assert!(
            csp.contains("default-src 'none'") && !csp.contains("unsafe"),
            "{path}: {csp}"
        );
        assert_eq!(resp.headers()["cache-control"], "no-store", "{path}");
        assert_eq!(
            resp.headers()["x-content-type-options"],
            "nosniff",
            "{path}"
        );
    }
}

#[tokio::test]
async fn the_http_api_lambda_serves_the_app_with_its_sign_in_settings() {
    use support::lambda::{Function, http_event, world};
    let (_h, env) = world().await;
    let body = |r: &Value| r["body"].as_str().unwrap_or_default().to_string();

    // Configured as the template configures it with Cognito.
    let mut with_app = env.clone();
    for (k, v) in [
        ("APP_OAUTH_CLIENT_ID", "household-management-client"),
        (
            "APP_OAUTH_AUTHORIZE_URL",
            "https://alarm.auth.us-east-1.amazoncognito.com/oauth2/authorize",
        ),
        (
            "APP_OAUTH_TOKEN_URL",
            "https://alarm.auth.us-east-1.amazoncognito.com/oauth2/token",
        ),
        ("APP_OAUTH_REDIRECT_URI", "https://api.example.com/app/"),
    ] {
        with_app.push((k.to_string(), v.to_string()));
    }
    let mut f = Function::start(support::lambda::HTTP_API, &with_app).await;
    let (_, _, r) = f.invoke(http_event("GET", "/app/", json!({}), None)).await;
    assert_eq!(r["statusCode"], 200, "{r}");
    assert!(body(&r).contains("<script src=\"app.js\" defer></script>"));
    let csp = r["headers"]["content-security-policy"]
        .as_str()
        .unwrap_or_default();
    assert!(
        csp.contains("connect-src 'self' https://alarm.auth.us-east-1.amazoncognito.com;"),
        "{csp}"
    );
    let (_, _, r) = f
        .invoke(http_event("GET", "/app/config.json", json!({}), None))
        .await;
    assert_eq!(r["statusCode"], 200, "{r}");
    let config: Value = serde_json::from_str(&body(&r)).expect("json");
    assert_eq!(config["client_id"], "household-management-client");
    assert_eq!(config["redirect_uri"], "https://api.example.com/app/");
    assert_eq!(config["scope"], "openid");
    for file in ["/app/app.js", "/app/app.css", "/app/icon.svg"] {
        let (_, _, r) = f.invoke(http_event("GET", file, json!({}), None)).await;
        assert_eq!(r["statusCode"], 200, "{file}: {r}");
    }
    drop(f);

    // Not configured: the page loads and says so.
    let mut f = Function::start(support::lambda::HTTP_API, &env).await;
    let (_, _, r) = f
        .invoke(http_event("GET", "/app/config.json", json!({}), None))
        .await;
    assert_eq!(r["statusCode"], 404, "{r}");
    assert_eq!(
        serde_json::from_str::<Value>(&body(&r)).expect("json")["error"],
        "not_configured"
    );
    drop(f);

    // Half configured: refused at start, naming what is missing.
    let mut partial = env.clone();
    partial.push(("APP_OAUTH_CLIENT_ID".into(), "x".into()));
    let f = Function::start(support::lambda::HTTP_API, &partial).await;
    let (status, out) = f.exit().await;
    assert!(!status.success());
    assert!(out.contains("APP_OAUTH_AUTHORIZE_URL"), "{out}");
}

/// A stack, a client that shows the issuer's redirects instead of following them, and a
/// PKCE verifier.
async fn issuer_world() -> (Harness, reqwest::Client, String) {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    (Harness::start().await, http, "x".repeat(50))
}

/// `GET /oauth2/authorize` with the app's request, `changes` made to it.
async fn authorize_page(
    h: &Harness,
    http: &reqwest::Client,
    verifier: &str,
    changes: &[(&str, &str)],
) -> reqwest::Response {
    let url = url::Url::parse_with_params(
        &format!("{}/oauth2/authorize", h.base),
        auth_request(h, "openid", verifier, changes),
    )
    .expect("url");
    http.get(url).send().await.expect("authorize")
}

#[tokio::test]
async fn the_dev_issuer_matches_redirect_uris_exactly() {
    let (h, http, verifier) = issuer_world().await;

    // Same origin, not registered: the issuer's own page, no form, no code (RFC 9700 §4.1.3).
    for uri in [
        format!("{}/sim/panels", h.base),
        format!("{}/app/?next=/sim/panels", h.base),
        format!("{}/app", h.base),
    ] {
        let resp = authorize_page(&h, &http, &verifier, &[("redirect_uri", &uri)]).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{uri}");
        assert!(resp.headers().get("location").is_none());
        let page = resp.text().await.expect("page");
        assert!(
            page.contains("redirect_uri is not registered"),
            "{uri}: {page}"
        );
        assert!(!page.contains("id=\"login\""), "{uri}: a sign-in form");
        let resp = post_login(&h, &http, "openid", &verifier, &[("redirect_uri", &uri)]).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{uri}: a code");
        assert!(resp.headers().get("location").is_none());
    }
}

#[tokio::test]
async fn the_dev_issuer_redirects_errors_once_the_redirect_uri_is_known_good() {
    let (h, http, verifier) = issuer_world().await;
    // The client and its redirect URI check out: every other error goes back to the client
    // (RFC 6749 §4.1.2.1, RFC 7636 §4.4.1), with the state, from the page and the form alike.
    for (change, error) in [
        (("code_challenge_method", "plain"), "invalid_request"),
        (("code_challenge_method", ""), "invalid_request"),
        (("code_challenge", "too-short"), "invalid_request"),
        (("response_type", "token"), "unsupported_response_type"),
        (("scope", "openid admin/everything"), "invalid_scope"),
        (("prompt", "none"), "login_required"),
    ] {
        let from_page = authorize_page(&h, &http, &verifier, &[change]).await;
        let from_form = post_login(&h, &http, "openid", &verifier, &[change]).await;
        for resp in [from_page, from_form] {
            let (path, q) = sent_back(&resp);
            assert_eq!(path, "/app/", "{change:?}");
            assert_eq!(q["error"], error, "{change:?}");
            assert!(!q["error_description"].is_empty(), "{change:?}");
            assert_eq!(q["state"], "s1", "{change:?}");
            assert!(!q.contains_key("code"), "{change:?}");
        }
    }

    // A step-up's request for a fresh authentication: the form, as always.
    let resp = authorize_page(
        &h,
        &http,
        &verifier,
        &[("prompt", "login"), ("max_age", "0")],
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.text().await.expect("page").contains("id=\"login\""));
}

#[tokio::test]
async fn the_dev_issuers_token_response_names_the_granted_scope() {
    let (h, http, verifier) = issuer_world().await;

    // The token response names the scope granted (RFC 6749 §5.1), the one in the token.
    for (asked, granted) in [
        ("openid", alarm_skill::local::dev_issuer::MANAGEMENT_SCOPE),
        ("alarm/control", "alarm/control"),
    ] {
        let code = authorize(&h, &http, asked, &verifier).await;
        let (status, body) = redeem(&h, &http, &code, &verifier).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["scope"], granted, "{body}");
        let token = body["access_token"].as_str().expect("token");
        let claims: Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(token.split('.').nth(1).expect("claims"))
                .expect("base64"),
        )
        .expect("json");
        assert_eq!(claims["scope"], granted);
    }
}

#[tokio::test]
async fn a_flood_of_unauthenticated_logins_does_not_lock_out_a_real_sign_in() {
    let (h, http, verifier) = issuer_world().await;
    // More than the issuer keeps pending; each gets a code nobody redeems.
    for _ in 0..1_100 {
        let resp = post_login(&h, &http, "openid", &"y".repeat(43), &[]).await;
        assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    }
    let code = authorize(&h, &http, "openid", &verifier).await;
    let (status, body) = redeem(&h, &http, &code, &verifier).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = body["access_token"].as_str().expect("token");
    let (status, _) = h
        .api("GET", "/v1/household/members", Some(token), None)
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn a_code_change_after_a_stale_sign_in_asks_for_a_fresh_authentication() {
    let h = Harness::start_with(Options {
        config: DemoConfig::parse(RICH_CONFIG).expect("config"),
        step_up: alarm_skill::edges::management::StepUp {
            max_age: chrono::Duration::seconds(1),
            ..Default::default()
        },
        ..test_options()
    })
    .await;
    let b = Browser::start(390, 844).await;
    sign_in(&b, &h.base, false).await;
    // Past the step-up's window: a lower bound, whatever the machine's load.
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
    clear_messages(&b).await;
    b.type_into("#pin-voice-pin-sam", "5190").await;
    b.keys(ENTER).await;
    let said = b
        .wait_for(
            "the app to sign out",
            "const t = document.getElementById('status').textContent;
             return document.getElementById('signed-in').hidden && t !== 'Saving…' && t;",
        )
        .await;
    let said = said.as_str().unwrap_or_default();
    assert!(
        said.starts_with("Confirm it's you: sign in again"),
        "{said}"
    );
    assert!(!said.contains("expired"), "{said}");
    let focused = b.js("return document.activeElement.id", json!([])).await;
    assert_eq!(focused, "sign-in", "the sign-in button, ready to press");
    assert_eq!(
        b.js(
            "return document.getElementById('account').hidden",
            json!([])
        )
        .await,
        true,
        "signed out, no account shows"
    );
    b.screenshot("app-step-up-phone", false).await;
    check_accessible(&b, "app asking to sign in again").await;

    // Signing in again asks the issuer for a fresh authentication, not a session's.
    b.click("#sign-in").await;
    let q = at_login_page(&b).await;
    assert_eq!(q.get("prompt").map(String::as_str), Some("login"));
    assert_eq!(q.get("max_age").map(String::as_str), Some("0"));
    b.click("#login").await;
    household_loaded(&b).await;
    assert_eq!(b.storage().await, json!({"local": {}, "session": {}}));
    check_console_clean(&b, "app after a step-up").await;
    b.quit().await;
}

/// The console's "Echo devices" section shows what every Echo plays as it happens
/// (docs/echo-alerts.md): the newest line first.
#[tokio::test]
async fn the_console_shows_what_the_echo_devices_play() {
    let h = Harness::start().await;
    let t = h.token("demo").await;
    let b = Browser::start(1280, 800).await;
    b.goto(&format!("{}/", h.base)).await;
    // The Echo section lists the chosen account's alerts: wait until one is chosen.
    let chosen = "return document.getElementById('account').value === 'demo'";
    b.wait_for("the console to choose the demo account", chosen)
        .await;
    async fn shows(b: &Browser, line: &str) -> String {
        let script = format!(
            "const li = document.querySelector('#echo li');
             return li && li.textContent.endsWith({line:?}) ? li.textContent : null;"
        );
        let text = b
            .wait_for(&format!("the Echo devices to show {line}"), &script)
            .await;
        text.as_str().unwrap_or_default().to_string()
    }
    h.invoke(&arm(&t, "home", "ARMED_AWAY")).await;
    shows(&b, "exit delay, 60 s").await;
    b.click("[data-advance='60']").await;
    shows(&b, "exit delay stopped · now silent").await;
    h.post("/sim/panels/home/zones/front-door/open", json!({}))
        .await;
    shows(&b, "entry delay, 30 s").await;
    b.screenshot("console-echo-entry-delay", false).await;
    b.click("[data-advance='30']").await;
    shows(&b, "entry delay stopped · siren").await;
    h.invoke(&disarm(&t, "home", Some("4729"))).await;
    shows(&b, "siren stopped · now silent").await;
    assert_eq!(
        b.js(
            "return document.querySelectorAll('#echo li').length",
            json!([])
        )
        .await,
        json!(5)
    );
    check_accessible(&b, "console with the Echo devices' alerts").await;
    check_console_clean(&b, "console with the Echo devices' alerts").await;
    b.quit().await;
}
