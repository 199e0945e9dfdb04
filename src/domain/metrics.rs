//! Operational metrics as CloudWatch embedded-metric-format (EMF) log lines: one JSON line on
//! stdout per directive and per re-delivery pass, which CloudWatch Logs turns into metrics
//! (namespace `METRICS_NAMESPACE`, the template sets `AlarmSkill/<stack>`). No agent, no API
//! call, nothing on the directive's critical path but one formatted line.
//!
//! What is counted:
//! - per directive: `Directives` and `DirectiveDuration` by `Directive` (Discover, Disarm, ...)
//!   and `Outcome` (`ok`, or the Alexa error type of the reply: `BRIDGE_UNREACHABLE`, ...);
//! - at the ports, flushed into the same line: panel cloud calls and failures by kind
//!   (`PanelUnreachable`, `PanelTimeout`, `PanelServerError`, ...) and store calls and failures
//!   (`StoreUnavailable`, `StoreThrottled`, `StoreConflict`, `StoreCorrupt`), by wrapping the
//!   `PanelCloud` and `Store` ports ([`Metrics::panels`], [`Metrics::store`]), and
//!   `PanelsWithoutMonitoring`: panels the cloud reported (listed, read, or in an arm's or
//!   disarm's answer) without monitoring details, households the skill has no second path for;
//! - per re-delivery pass: `OutboxExamined`, `OutboxBacklog` (every record still pending in the
//!   shards' queues and the households' own queues, counted each pass) and `OutboxPanelGone`
//!   (records whose panel left the account, on their own slow path and alarm).
//!
//! **A metric must never reveal a duress**, to anyone, and least of all to someone who can
//! read a household's data (support staff, the household itself through a vendor app):
//! - no dimension names a household, account, panel, member or request: every metric is an
//!   aggregate over the whole stack;
//! - the directive line is derived from the reply only (its Alexa error type), and a duress
//!   disarm's reply, panel calls and store calls are those of a normal disarm: the two produce
//!   the same line, field for field, apart from the timestamp and the measured duration
//!   (tests/it/metrics.rs compares them);
//! - nothing is ever split by kind of code: there is no "duress" metric on the directive path;
//! - the outbox backlog is an operator metric about undelivered panel calls, published once per
//!   pass for the whole stack. It is what tells the on-call engineer that a silent alarm may not
//!   have reached the monitoring center, so it must exist; docs/deploy.md ("Metrics and what
//!   they must not reveal") explains who may read it and why it is not published finer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::common::deadline::Deadline;
use crate::domain::ports::panel::{
    ArmOutcome, ArmRequest, DisarmRequest, Notice, Panel, PanelCloud, PanelError, SignalRequest,
    UserList,
};
use crate::domain::ports::store::{OutboxPolicy, Store, StoreError};

/// Port counters, in the order they appear in a line.
const COUNTERS: [&str; 16] = [
    "PanelCalls",
    "PanelUnreachable",
    "PanelTimeout",
    "PanelServerError",
    "PanelRateLimited",
    "PanelOffline",
    "PanelNotFound",
    "PanelRejected",
    "PanelProtocolError",
    "PanelRefused",
    "StoreCalls",
    "StoreConflict",
    "StoreThrottled",
    "StoreUnavailable",
    "StoreCorrupt",
    "PanelsWithoutMonitoring",
];

/// Where `PanelsWithoutMonitoring` is in [`COUNTERS`].
const WITHOUT_MONITORING: usize = 15;

fn panel_counter(e: &PanelError) -> usize {
    match e {
        PanelError::Unreachable(_) => 1,
        PanelError::Timeout => 2,
        PanelError::Server(_) => 3,
        PanelError::RateLimited => 4,
        PanelError::Offline => 5,
        PanelError::NotFound => 6,
        PanelError::Unauthorized => 7,
        PanelError::Protocol(_) => 8,
        PanelError::Refused(_) | PanelError::Busy => 9,
    }
}

fn store_counter(e: &StoreError) -> usize {
    match e {
        StoreError::Conflict => 11,
        StoreError::Throttled => 12,
        StoreError::Unavailable(_) => 13,
        StoreError::Corrupt(_) => 14,
    }
}

/// Counts of the port calls since the last line.
#[derive(Default)]
pub struct Counters([AtomicU64; COUNTERS.len()]);

impl Counters {
    fn bump(&self, i: usize) {
        self.0[i].fetch_add(1, Ordering::Relaxed);
    }

    fn panel<T>(&self, r: &Result<T, PanelError>) {
        self.bump(0);
        if let Err(e) = r {
            self.bump(panel_counter(e));
        }
    }

    /// Every panel the cloud reported (confirming it is the account's) without monitoring
    /// details: a household with no second path (docs/panel-api.md, "Monitoring details").
    fn reported<T: Reports>(&self, r: &Result<T, PanelError>) {
        if let Ok(answer) = r {
            self.0[WITHOUT_MONITORING].fetch_add(answer.unmonitored(), Ordering::Relaxed);
        }
    }

    fn store<T>(&self, r: &Result<T, StoreError>) {
        self.bump(10);
        if let Err(e) = r {
            self.bump(store_counter(e));
        }
    }

    fn take(&self) -> [u64; COUNTERS.len()] {
        std::array::from_fn(|i| self.0[i].swap(0, Ordering::Relaxed))
    }
}

/// Metric definitions sharing dimension sets: (dimension sets, (name, unit, value) per metric).
type Group = (
    Vec<Vec<&'static str>>,
    Vec<(&'static str, &'static str, f64)>,
);

#[derive(Clone)]
enum Sink {
    Stdout,
    Memory(Arc<Mutex<Vec<String>>>),
}

pub struct Metrics {
    namespace: String,
    counters: Arc<Counters>,
    sink: Sink,
}

/// The lines an in-memory [`Metrics`] wrote.
pub type Lines = Arc<Mutex<Vec<String>>>;

impl Metrics {
    /// Lines to stdout, where Lambda hands them to CloudWatch Logs. The namespace comes from
    /// `METRICS_NAMESPACE` (default `AlarmSkill`).
    pub fn stdout() -> Self {
        let namespace = std::env::var("METRICS_NAMESPACE")
            .ok()
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| "AlarmSkill".to_string());
        Metrics {
            namespace,
            counters: Arc::default(),
            sink: Sink::Stdout,
        }
    }

    /// Lines kept in memory (tests, the local stack).
    pub fn in_memory(namespace: &str) -> (Self, Lines) {
        let lines = Lines::default();
        let m = Metrics {
            namespace: namespace.to_string(),
            counters: Arc::default(),
            sink: Sink::Memory(lines.clone()),
        };
        (m, lines)
    }

    /// The panel cloud port, counted.
    pub fn panels(&self, inner: Arc<dyn PanelCloud>) -> Arc<dyn PanelCloud> {
        Arc::new(MeteredPanelCloud {
            inner,
            counters: self.counters.clone(),
        })
    }

    /// The store port, counted.
    pub fn store(&self, inner: Arc<dyn Store>) -> Arc<dyn Store> {
        Arc::new(MeteredStore {
            inner,
            counters: self.counters.clone(),
        })
    }

    fn write(&self, line: Value) {
        let text = line.to_string();
        match &self.sink {
            Sink::Stdout => {
                use std::io::Write;
                // One write of the whole line, so lines from other writers can't interleave.
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out, "{text}");
            }
            Sink::Memory(lines) => lines
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(text),
        }
    }

    fn line(&self, at: DateTime<Utc>, groups: Vec<Group>, dims: &[(&str, &str)]) -> Value {
        let mut root = Map::new();
        let mut directives = Vec::new();
        for (dimensions, metrics) in groups {
            let mut defs = Vec::new();
            for (name, unit, value) in metrics {
                defs.push(json!({"Name": name, "Unit": unit}));
                root.insert(name.to_string(), json!(value));
            }
            directives.push(json!({
                "Namespace": self.namespace,
                "Dimensions": dimensions,
                "Metrics": defs,
            }));
        }
        for (k, v) in dims {
            root.insert(k.to_string(), json!(v));
        }
        root.insert(
            "_aws".to_string(),
            json!({"Timestamp": at.timestamp_millis(), "CloudWatchMetrics": directives}),
        );
        Value::Object(root)
    }

    fn port_group(&self) -> Group {
        let counts = self.counters.take();
        let metrics = COUNTERS
            .iter()
            .zip(counts)
            .map(|(name, n)| (*name, "Count", n as f64))
            .collect();
        (vec![vec![]], metrics)
    }

    /// The one line per directive: its name, the reply's outcome (`ok` or the Alexa error type)
    /// and how long it took, with the port counters since the last line.
    pub fn directive(&self, directive: &str, outcome: &str, elapsed: Duration) {
        let groups = vec![
            (
                vec![vec!["Directive", "Outcome"], vec!["Outcome"], vec![]],
                vec![
                    ("Directives", "Count", 1.0),
                    (
                        "DirectiveDuration",
                        "Milliseconds",
                        elapsed.as_secs_f64() * 1000.0,
                    ),
                ],
            ),
            self.port_group(),
        ];
        let line = self.line(
            Utc::now(),
            groups,
            &[("Directive", directive), ("Outcome", outcome)],
        );
        self.write(line);
    }

    /// The one line per re-delivery pass: records examined, every record still pending in the
    /// shards' queues and households' own queues (the real backlog, counted each pass), and the
    /// records whose panel left the account, which have their own alarm.
    pub fn redelivery_pass(&self, examined: usize, backlog: usize, gone: usize) {
        let groups = vec![
            (
                vec![vec![]],
                vec![
                    ("OutboxExamined", "Count", examined as f64),
                    ("OutboxBacklog", "Count", backlog as f64),
                    ("OutboxPanelGone", "Count", gone as f64),
                ],
            ),
            self.port_group(),
        ];
        let line = self.line(Utc::now(), groups, &[]);
        self.write(line);
    }
}

struct MeteredPanelCloud {
    inner: Arc<dyn PanelCloud>,
    counters: Arc<Counters>,
}

/// Each method forwards to the inner port and counts its error; written once as a macro because
/// the forwarding is the same for every method and only the signatures differ.
macro_rules! metered_panel_methods {
    ($(fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)*) => {
        #[async_trait]
        impl PanelCloud for MeteredPanelCloud {
            $(
                async fn $name(&self, $($arg: $ty),*) -> Result<$ret, PanelError> {
                    let r = self.inner.$name($($arg),*).await;
                    self.counters.panel(&r);
                    self.counters.reported(&r);
                    r
                }
            )*

            fn breaker_key(&self) -> String {
                self.inner.breaker_key()
            }
        }
    };
}

metered_panel_methods! {
    fn panels(account: &str, deadline: Deadline) -> Vec<Panel>;
    fn panel(account: &str, panel: &str, deadline: Deadline) -> Panel;
    fn arm(account: &str, panel: &str, request: &ArmRequest, deadline: Deadline) -> ArmOutcome;
    fn disarm(account: &str, panel: &str, request: &DisarmRequest, deadline: Deadline) -> Panel;
    fn signal(account: &str, panel: &str, request: &SignalRequest, deadline: Deadline) -> ();
    fn notify(account: &str, notice: &Notice, deadline: Deadline) -> ();
    fn users(account: &str, deadline: Deadline) -> UserList;
}

/// The panels a panel cloud answer reports without monitoring details. The same for both kinds
/// of code: a disarm's answer is the panel, whatever was said.
trait Reports {
    fn unmonitored(&self) -> u64 {
        0
    }
}

impl Reports for Panel {
    fn unmonitored(&self) -> u64 {
        u64::from(self.monitoring.is_none())
    }
}

impl Reports for Vec<Panel> {
    fn unmonitored(&self) -> u64 {
        self.iter().map(Reports::unmonitored).sum()
    }
}

impl Reports for ArmOutcome {
    fn unmonitored(&self) -> u64 {
        self.panel.unmonitored()
    }
}

impl Reports for () {}
impl Reports for UserList {}

struct MeteredStore {
    inner: Arc<dyn Store>,
    counters: Arc<Counters>,
}

impl MeteredStore {
    fn count<T>(&self, r: Result<T, StoreError>) -> Result<T, StoreError> {
        self.counters.store(&r);
        r
    }
}

/// Each method forwards to the inner store and counts its error, as `metered_panel_methods!`.
macro_rules! metered_store_methods {
    ($(fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)*) => {
        #[async_trait]
        impl Store for MeteredStore {
            $(
                async fn $name(&self, $($arg: $ty),*) -> Result<$ret, StoreError> {
                    self.count(self.inner.$name($($arg),*).await)
                }
            )*

            fn outbox_policy(&self) -> OutboxPolicy {
                self.inner.outbox_policy()
            }
        }
    };
}

crate::domain::ports::store::with_store_methods!(metered_store_methods);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directive_line_is_emf_with_every_metric_at_the_root() {
        let (m, lines) = Metrics::in_memory("AlarmSkill/test");
        m.counters.panel::<()>(&Err(PanelError::Timeout));
        m.directive("Disarm", "BRIDGE_UNREACHABLE", Duration::from_millis(12));
        let v: Value = serde_json::from_str(&lines.lock().unwrap()[0]).unwrap();
        for d in v["_aws"]["CloudWatchMetrics"].as_array().unwrap() {
            assert_eq!(d["Namespace"], "AlarmSkill/test");
            for metric in d["Metrics"].as_array().unwrap() {
                assert!(v[metric["Name"].as_str().unwrap()].is_number());
            }
            for set in d["Dimensions"].as_array().unwrap() {
                for dim in set.as_array().unwrap() {
                    assert!(v[dim.as_str().unwrap()].is_string());
                }
            }
        }
        assert_eq!(v["PanelCalls"], 1.0);
        assert_eq!(v["PanelTimeout"], 1.0);
        assert_eq!(v["Outcome"], "BRIDGE_UNREACHABLE");
        // Counters start again from zero for the next line.
        m.directive("Discover", "ok", Duration::from_millis(1));
        let v: Value = serde_json::from_str(&lines.lock().unwrap()[1]).unwrap();
        assert_eq!(v["PanelTimeout"], 0.0);
    }
}
