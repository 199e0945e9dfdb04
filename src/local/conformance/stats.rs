//! The rank statistics of the equal-work check (and of benches/refcloud_cost.rs): the
//! Mann–Whitney U test and the Hodges–Lehmann shift. A rank test, because disarm times are
//! skewed with a long tail (a scheduler pause, a slow sync) that would swamp a mean; with the
//! two kinds interleaved in random order, its p-value stays valid however loaded the machine
//! is: noise costs power, never false alarms.
//!
//! Written here rather than taken from a crate: the few statistics crates that have it pull in
//! a linear-algebra stack for a hundred lines of arithmetic.

/// The outcome of a two-sided Mann–Whitney U test of `a` against `b`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RankTest {
    /// U of `b`: how many (a, b) pairs have b > a (a tie counts one half).
    pub u: f64,
    /// The normal approximation's z (tie-corrected, with continuity correction); positive when
    /// `b` tends to be larger.
    pub z: f64,
    /// Two-sided p-value.
    pub p: f64,
}

/// Mann–Whitney U of two samples, by the normal approximation (both samples of 20 or more
/// make it accurate well below the p-values the check acts on). `None` for an empty sample or
/// when every value is tied (nothing to rank).
pub fn mann_whitney(a: &[f64], b: &[f64]) -> Option<RankTest> {
    let (n1, n2) = (a.len() as f64, b.len() as f64);
    if a.is_empty() || b.is_empty() {
        return None;
    }
    let mut all: Vec<(f64, bool)> = a
        .iter()
        .map(|&x| (x, false))
        .chain(b.iter().map(|&x| (x, true)))
        .collect();
    all.sort_by(|x, y| x.0.total_cmp(&y.0));
    // Average ranks over ties, and the tie term of the variance.
    let mut rank_sum_b = 0.0;
    let mut tie_term = 0.0;
    let mut i = 0;
    while i < all.len() {
        let mut j = i + 1;
        while j < all.len() && all[j].0 == all[i].0 {
            j += 1;
        }
        let t = (j - i) as f64;
        // Ranks i+1 ..= j, averaged.
        let rank = (i + 1 + j) as f64 / 2.0;
        rank_sum_b += rank * all[i..j].iter().filter(|x| x.1).count() as f64;
        tie_term += t * t * t - t;
        i = j;
    }
    let n = n1 + n2;
    let u = rank_sum_b - n2 * (n2 + 1.0) / 2.0;
    let mean = n1 * n2 / 2.0;
    let var = n1 * n2 / 12.0 * ((n + 1.0) - tie_term / (n * (n - 1.0)));
    if var <= 0.0 {
        return None;
    }
    let diff = u - mean;
    let corrected = (diff.abs() - 0.5).max(0.0) * diff.signum();
    let z = corrected / var.sqrt();
    let p = erfc(z.abs() / std::f64::consts::SQRT_2).min(1.0);
    Some(RankTest { u, z, p })
}

/// Hodges–Lehmann estimate of how much larger `b` is than `a`: the median of all differences
/// b − a. Robust like the medians, but estimates the shift itself.
pub fn hodges_lehmann(a: &[f64], b: &[f64]) -> f64 {
    let mut d: Vec<f64> = b
        .iter()
        .flat_map(|&y| a.iter().map(move |&x| y - x))
        .collect();
    median(&mut d)
}

/// The median (the mean of the middle two for an even count); 0 for an empty sample.
pub fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The complementary error function (W. J. Cody's rational Chebyshev approximation as given
/// in Numerical Recipes, `erfcc`: relative error below 1.2e-7 everywhere).
pub fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erfc_matches_known_values() {
        // erfc(0) = 1, erfc(1) = 0.157299207, erfc(2) = 0.004677735, erfc(-1) = 1.842700793.
        for (x, want) in [
            (0.0, 1.0),
            (1.0, 0.157_299_207),
            (2.0, 0.004_677_735),
            (-1.0, 1.842_700_793),
        ] {
            assert!((erfc(x) - want).abs() < 1e-6, "erfc({x}) = {}", erfc(x));
        }
    }

    #[test]
    fn mann_whitney_matches_a_worked_example() {
        // Separated samples: every b above every a, U = n1*n2 = 9.
        let t = mann_whitney(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]).unwrap();
        assert_eq!(t.u, 9.0);
        assert!(t.z > 0.0);
        // Exact two-sided p for 3 v 3 fully separated is 0.1; the approximation with continuity
        // correction gives 0.081 (z = 1.746).
        assert!((t.p - 0.0809).abs() < 1e-3, "{t:?}");
        // The same samples the other way round: U = 0, z negative, same p.
        let r = mann_whitney(&[4.0, 5.0, 6.0], &[1.0, 2.0, 3.0]).unwrap();
        assert_eq!(r.u, 0.0);
        assert!((r.p - t.p).abs() < 1e-12);
        // Ties take average ranks: identical samples are no evidence at all.
        let same = mann_whitney(&[1.0, 2.0, 2.0, 3.0], &[1.0, 2.0, 2.0, 3.0]).unwrap();
        assert_eq!(same.u, 8.0);
        assert!(same.p > 0.99, "{same:?}");
        assert!(mann_whitney(&[1.0; 5], &[1.0; 5]).is_none());
        assert!(mann_whitney(&[], &[1.0]).is_none());
    }

    /// Two samples of 300 from one skewed distribution (a deterministic generator): an
    /// exponential tail on a floor, like request times.
    fn two_samples() -> (Vec<f64>, Vec<f64>) {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut draw = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let u = (x >> 11) as f64 / (1u64 << 53) as f64;
            1.0 - 0.3 * (1.0 - u).ln()
        };
        let a: Vec<f64> = (0..300).map(|_| draw()).collect();
        let b: Vec<f64> = (0..300).map(|_| draw()).collect();
        (a, b)
    }

    #[test]
    fn the_kits_verdict_fails_a_ten_percent_difference_either_way_and_passes_none() {
        use crate::local::conformance::timing_verdict;
        let (a, b) = two_samples();
        assert!(timing_verdict(&a, &b).is_ok());
        let slower: Vec<f64> = b.iter().map(|v| v * 1.10).collect();
        let e = timing_verdict(&a, &slower).unwrap_err();
        assert!(e.contains("slower"), "{e}");
        let faster: Vec<f64> = b.iter().map(|v| v * 0.90).collect();
        let e = timing_verdict(&a, &faster).unwrap_err();
        assert!(e.contains("faster"), "{e}");
        // Significant but tiny (2 %): below the relative threshold, not a failure.
        let tiny: Vec<f64> = a.iter().map(|v| v * 1.02).collect();
        assert!(timing_verdict(&a, &tiny).is_ok());
        // Too few pairs to judge: said, not failed.
        let ok = timing_verdict(&a[..6], &slower[..6]).unwrap();
        assert!(ok.contains("not judged"), "{ok}");
    }

    #[test]
    fn a_ten_percent_shift_is_found_and_no_shift_is_not() {
        let (a, b) = two_samples();
        let same = mann_whitney(&a, &b).unwrap();
        assert!(same.p > 0.01, "{same:?}");
        let slower: Vec<f64> = b.iter().map(|v| v * 1.10).collect();
        let t = mann_whitney(&a, &slower).unwrap();
        assert!(t.p < 0.001 && t.z > 0.0, "{t:?}");
        let shift = hodges_lehmann(&a, &slower) / median(&mut a.clone());
        assert!((0.05..0.2).contains(&shift), "{shift}");
    }
}
