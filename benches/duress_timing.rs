//! Timing side channel of the duress PIN: 1,000 normal and 1,000 duress disarms in-process, in
//! random order, each from an armed panel. Prints both distributions, the median difference and
//! a two-sample Kolmogorov–Smirnov test. Target: median difference under 2 %, p > 0.05.
//!
//! Run: `cargo bench --bench duress_timing`
//!
//! `cargo bench --bench duress_timing -- --control` runs the same measurement with the duress
//! PIN replaced by a second member's *normal* PIN: no duress anywhere, so whatever the KS test
//! reports there is this machine's noise floor, the yardstick for the real run.

mod common;

use std::time::Duration;

use alarm_skill::panel::{ArmMode, ArmRequest, Source};
use common::*;
use rand::seq::SliceRandom;

/// Two-sample KS statistic D and its asymptotic p-value (with the usual small-sample
/// correction of the Kolmogorov distribution's argument).
fn ks(a: &[f64], b: &[f64]) -> (f64, f64) {
    let (n, m) = (a.len() as f64, b.len() as f64);
    let (mut i, mut j, mut d) = (0, 0, 0.0f64);
    while i < a.len() && j < b.len() {
        let x = a[i].min(b[j]);
        while i < a.len() && a[i] <= x {
            i += 1;
        }
        while j < b.len() && b[j] <= x {
            j += 1;
        }
        d = d.max((i as f64 / n - j as f64 / m).abs());
    }
    let ne = (n * m / (n + m)).sqrt();
    let lambda = (ne + 0.12 + 0.11 / ne) * d;
    let mut p = 0.0;
    for k in 1..=100 {
        let k = k as f64;
        let term = 2.0 * (-1.0f64).powf(k - 1.0) * (-2.0 * k * k * lambda * lambda).exp();
        p += term;
        if term.abs() < 1e-12 {
            break;
        }
    }
    (d, p.clamp(0.0, 1.0))
}

/// Control: "8361" becomes the normal PIN of a second member, Bob, and Alex loses the duress PIN.
fn replace_duress_with_a_normal_pin(b: &Bench) {
    use alarm_skill::secret::Pin;
    use alarm_skill::voice_codes::{Member, hash_code};
    b.rt.block_on(async {
        let deps = b.skill.deps();
        let mut profile = deps.store.household("demo").await.unwrap().profile;
        profile.members[0].duress_pin = None;
        profile.members.push(Member {
            id: "bob".into(),
            name: "Bob".into(),
            user_number: 2,
            voice_pin: Some(hash_code(&deps.keyring, "demo", "bob", &Pin::new("8361"))),
            duress_pin: None,
        });
        deps.store.save_profile("demo", &profile).await.unwrap();
    });
}

fn deciles(v: &[f64]) -> String {
    (1..=9)
        .map(|k| format!("{:7.1}", percentile(v, k as f64 / 10.0)))
        .collect::<Vec<_>>()
        .join("")
}

fn main() {
    // `cargo test` runs bench targets without `--bench`: a quick smoke pass, as criterion does.
    let full = std::env::args().any(|a| a == "--bench");
    let (per_kind, warmup) = if full { (1_000, 200) } else { (5, 2) };
    let control = std::env::args().any(|a| a == "--control");
    let b = setup();
    if control {
        replace_duress_with_a_normal_pin(&b);
    }
    let normal = disarm(&b.token, "4729");
    let duress = disarm(&b.token, "8361");
    let mut order: Vec<bool> = std::iter::repeat_n(false, per_kind)
        .chain(std::iter::repeat_n(true, per_kind))
        .collect();
    order.shuffle(&mut rand::rng());
    let warm: Vec<bool> = (0..warmup).map(|i| i % 2 == 0).collect();
    let mut wall = (vec![], vec![]);
    let mut cpu = (vec![], vec![]);
    for (i, is_duress) in warm.iter().chain(order.iter()).enumerate() {
        // Arm and let the exit delay pass, outside the measurement.
        b.sim
            .arm(
                "demo",
                "home",
                &ArmRequest {
                    mode: ArmMode::Away,
                    bypass_open_zones: false,
                    source: Source::Keypad,
                    request_id: uuid::Uuid::new_v4().to_string(),
                },
            )
            .unwrap();
        b.clock.advance(chrono::Duration::seconds(61));
        let d = if *is_duress { &duress } else { &normal };
        let (w, c, reply) = timed(&b, d);
        assert_eq!(reply["event"]["header"]["name"], "Response", "{reply}");
        if i < warmup {
            continue;
        }
        let (wv, cv): (&mut Vec<Duration>, &mut Vec<Duration>) = if *is_duress {
            (&mut wall.1, &mut cpu.1)
        } else {
            (&mut wall.0, &mut cpu.0)
        };
        wv.push(w);
        cv.push(c);
    }
    let duress_signals = b
        .sim
        .monitoring()
        .iter()
        .filter(|e| e.code == "121")
        .count();
    let expected = if control { 0 } else { per_kind + warmup / 2 };
    assert_eq!(
        duress_signals, expected,
        "every duress raised exactly one 121"
    );
    if control {
        println!("CONTROL RUN: the second class is a normal PIN (Bob's), not a duress PIN");
    }
    for (what, (n, d)) in [("wall", (&wall.0, &wall.1)), ("cpu", (&cpu.0, &cpu.1))] {
        let (n, d) = (micros(n), micros(d));
        let (mn, md) = (percentile(&n, 0.5), percentile(&d, 0.5));
        let (ks_d, p) = ks(&n, &d);
        println!("{what} time, µs, deciles 10%..90%:");
        println!("  normal ({:>4}) {}", n.len(), deciles(&n));
        println!("  duress ({:>4}) {}", d.len(), deciles(&d));
        println!(
            "  median normal {mn:.1} µs, duress {md:.1} µs, difference {:+.2} %; KS D = {ks_d:.4}, p = {p:.3}",
            (md - mn) / mn * 100.0
        );
    }
}
