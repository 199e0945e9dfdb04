//! Crash points: the steps of a disarm and of the re-delivery worker where a process may die
//! (SIGKILL, a function timeout, a lost sandbox), so that tests/it/crash_points.rs can kill the
//! deployed binaries exactly there and prove that no duress is lost, none is sent twice and no
//! disarm is ever replayed.
//!
//! The points are `fail` crate failpoints, compiled only with the `failpoints` feature (on with
//! `local`, hence in `cargo test` builds). Without it [`crash_point!`] expands to nothing: the
//! Lambda zips, built `--no-default-features`, hold neither the points nor their names, which
//! `scripts/release-zips` checks. With it, a binary reads the `FAILPOINTS` variable at start
//! ([`setup`]), e.g. `FAILPOINTS=crashpoint:disarm-panel-answered=return`: `return` kills the
//! process on the spot with SIGKILL (no destructor, no flush, no reply), and the fail crate's
//! other actions (`sleep(ms)`, `pause`) hold it there for the test to kill.

/// The spoken code is checked, nothing is written yet: a death here must leave no trace and
/// no disarm.
pub const DISARM_CODE_VERIFIED: &str = "crashpoint:disarm-code-verified";
/// After the decision and its outbox record are written, before the panel call.
pub const DISARM_DECISION_WRITTEN: &str = "crashpoint:disarm-decision-written";
/// After the panel cloud answered, before the outbox record is settled.
pub const DISARM_PANEL_ANSWERED: &str = "crashpoint:disarm-panel-answered";
/// The worker: the cloud acknowledged the signal, the record is not settled yet.
pub const REDELIVERY_SIGNAL_ACKED: &str = "crashpoint:redelivery-signal-acked";
/// The worker holds a shard's lease and has not released it.
pub const REDELIVERY_LEASE_HELD: &str = "crashpoint:redelivery-lease-held";

/// The reference panel cloud (local stack only): a `signals` call decided durably (its 121
/// and request id journalled together), not yet acknowledged.
pub const SIM_SIGNAL_DECIDED: &str = "crashpoint:sim-signal-decided";

/// Every crash point, for the tests and the release check.
pub const ALL: [&str; 6] = [
    DISARM_CODE_VERIFIED,
    DISARM_DECISION_WRITTEN,
    DISARM_PANEL_ANSWERED,
    REDELIVERY_SIGNAL_ACKED,
    REDELIVERY_LEASE_HELD,
    SIM_SIGNAL_DECIDED,
];

/// Arms the points named in `FAILPOINTS`. Call once at start; without the feature, nothing.
pub fn setup() {
    #[cfg(feature = "failpoints")]
    {
        // Holds the fail crate's global registry for the life of the process.
        std::mem::forget(fail::FailScenario::setup());
    }
}

/// Where the `return` action of a point leads: the process sends itself SIGKILL, the signal a
/// lost sandbox or an operator's kill delivers, which nothing in the process can catch or
/// delay.
#[cfg(feature = "failpoints")]
pub fn hit(name: &'static str) {
    fail::eval(name, |_| {
        eprintln!("{name}: SIGKILL");
        // SAFETY: getpid and kill take no pointers and touch no memory of this process.
        unsafe {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
        // SIGKILL to oneself is delivered before kill returns; should it ever not be, die anyway.
        std::process::abort()
    });
}

/// A crash point; nothing at all without the `failpoints` feature.
macro_rules! crash_point {
    ($name:expr) => {
        #[cfg(feature = "failpoints")]
        $crate::common::crash::hit($name);
    };
    // Only where `$when` holds (not evaluated at all without the feature).
    ($name:expr, if $when:expr) => {
        #[cfg(feature = "failpoints")]
        if $when {
            $crate::common::crash::hit($name);
        }
    };
}
pub(crate) use crash_point;
