//! Shared set-up for the benchmarks: the production handler over the embedded store and the
//! in-process simulator, with real JWT verification (the JWKS is fetched once over loopback,
//! then cached, as on a warm Lambda).
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use alarm_skill::adapters::account_link::jwks::JwksVerifier;
use alarm_skill::adapters::lwa::LwaClient;
use alarm_skill::adapters::store::memory::MemoryStore;
use alarm_skill::common::clock::{AdjustableClock, Clock};
use alarm_skill::common::secret::{Pin, Secret};
use alarm_skill::domain::ports::panel::PanelCloud;
use alarm_skill::domain::ports::store::Store;
use alarm_skill::domain::skill::{Skill, SkillDeps, SkillSettings};
use alarm_skill::domain::voice_codes::{Keyring, Member, Profile, hash_code};
use alarm_skill::edges::config::{AlexaRegion, OAuthConfig};
use alarm_skill::local::demo::DemoConfig;
use alarm_skill::local::dev_issuer::{self, DevIssuer};
use alarm_skill::local::simulator::Simulator;
use serde_json::{Value, json};

pub struct Bench {
    pub rt: tokio::runtime::Runtime,
    pub skill: Arc<Skill>,
    pub sim: Arc<Simulator>,
    pub clock: Arc<AdjustableClock>,
    pub token: String,
}

pub fn setup() -> Bench {
    setup_with(|sim| sim)
}

/// As [`setup`], with the skill calling the panel cloud through `panels(sim)`.
pub fn setup_with(panels: impl FnOnce(Arc<Simulator>) -> Arc<dyn PanelCloud>) -> Bench {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (skill, sim, clock, token) = rt.block_on(async {
        alarm_skill::adapters::account_link::install_crypto_provider();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let key =
            alarm_skill::local::dev_keys::rsa_2048(alarm_skill::local::dev_keys::Role::Issuer)
                .unwrap();
        let issuer = Arc::new(DevIssuer::with_key(&base, "bench", key));
        let token = issuer
            .mint("demo", false, chrono::Duration::hours(12))
            .unwrap();
        tokio::spawn(async move {
            axum::serve(listener, dev_issuer::routes(issuer))
                .await
                .unwrap();
        });
        let http = reqwest::Client::new();
        let oauth = OAuthConfig::cognito(&base, &format!("{base}/.well-known/jwks.json"), "bench");
        let clock = Arc::new(AdjustableClock::running());
        let dyn_clock: Arc<dyn Clock> = clock.clone();
        let demo = DemoConfig::demo();
        let sim = Arc::new(Simulator::new(
            &demo.accounts,
            clock.clone(),
            Secret::new("k"),
        ));
        let store = Arc::new(MemoryStore::new());
        let keyring = Arc::new(Keyring::random());
        let mut profile = Profile::default();
        profile.members.push(Member {
            id: "alex".into(),
            name: "Alex".into(),
            user_number: 1,
            panel_user_id: None,
            voice_pin: Some(hash_code(&keyring, "demo", "alex", &Pin::new("4729"))),
            duress_pin: Some(hash_code(&keyring, "demo", "alex", &Pin::new("8361"))),
        });
        store.save_profile("demo", &profile).await.unwrap();
        let lwa = Arc::new(LwaClient::new(
            format!("{base}/unused"),
            "bench".into(),
            Secret::new("unused"),
            AlexaRegion::Na,
            store.clone(),
            keyring.clone(),
            dyn_clock.clone(),
            http.clone(),
        ));
        let skill = Arc::new(Skill::new(
            SkillDeps {
                store,
                panels: panels(sim.clone()),
                tokens: Arc::new(JwksVerifier::new(&oauth, http)),
                grants: lwa,
                keyring,
                clock: dyn_clock,
            },
            SkillSettings::default(),
        ));
        (skill, sim, clock, token)
    });
    Bench {
        rt,
        skill,
        sim,
        clock,
        token,
    }
}

fn header(ns: &str, name: &str) -> Value {
    json!({"namespace": ns, "name": name, "messageId": "bench-message",
           "correlationToken": "bench-correlation", "payloadVersion": "3"})
}

pub fn directive(token: &str, ns: &str, name: &str, endpoint: &str, payload: Value) -> Value {
    json!({"directive": {"header": header(ns, name),
        "endpoint": {"scope": {"type": "BearerToken", "token": token}, "endpointId": endpoint, "cookie": {}},
        "payload": payload}})
}

pub fn discover(token: &str) -> Value {
    json!({"directive": {"header": header("Alexa.Discovery", "Discover"),
        "payload": {"scope": {"type": "BearerToken", "token": token}}}})
}

pub fn disarm(token: &str, pin: &str) -> Value {
    directive(
        token,
        "Alexa.SecurityPanelController",
        "Disarm",
        "home",
        json!({"authorization": {"type": "FOUR_DIGIT_PIN", "value": pin}}),
    )
}

pub fn arm(token: &str) -> Value {
    directive(
        token,
        "Alexa.SecurityPanelController",
        "Arm",
        "home",
        json!({"armState": "ARMED_AWAY"}),
    )
}

/// CPU time of the calling thread.
pub fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own; CLOCK_THREAD_CPUTIME_ID is
    // supported on every Linux the benchmark runs on.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Runs one directive; returns (wall, cpu) and the reply.
pub fn timed(b: &Bench, d: &Value) -> (Duration, Duration, Value) {
    let deadline = alarm_skill::common::deadline::Deadline::for_directive(None);
    let (w0, c0) = (Instant::now(), thread_cpu());
    let reply = b.rt.block_on(b.skill.handle(d, deadline));
    (w0.elapsed(), thread_cpu() - c0, reply)
}

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let idx = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[idx]
}

pub fn micros(v: &[Duration]) -> Vec<f64> {
    let mut out: Vec<f64> = v.iter().map(|d| d.as_secs_f64() * 1e6).collect();
    out.sort_by(f64::total_cmp);
    out
}

/// One table row: the sample count, CPU p50/p90/p99 and wall p50 in µs, `name` padded to `width`.
pub fn print_row(name: &str, width: usize, wall: &[Duration], cpu: &[Duration]) {
    let (c, w) = (micros(cpu), micros(wall));
    println!(
        "{name:<width$} {:>5} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
        c.len(),
        percentile(&c, 0.5),
        percentile(&c, 0.9),
        percentile(&c, 0.99),
        percentile(&w, 0.5)
    );
}

/// Peak resident set size of this process, from /proc/self/status (VmHWM), in KiB.
pub fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}
