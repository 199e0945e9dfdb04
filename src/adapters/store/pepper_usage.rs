//! Which pepper ids the stored data still names: the operator's check before a pepper leaves the
//! keyring (docs/deploy.md section 15, "Pepper rotation"; `alarm-skill pepper-usage`).
//!
//! A pepper removed too early turns every code hashed under it into a wrong code (a duress PIN
//! among them: a lost duress signal), every pending outbox record sealed under it into one the
//! worker can't open, and every Alexa grant sealed under it into one that must be re-linked. So
//! this counts, per pepper id, the stored codes, the pending outbox records and the grants that
//! name it, from one consistent paged Scan of the table.
//!
//! It needs no pepper: stored codes carry their pepper id in clear, and seals start with it
//! (`{id}.{base64}`). The report holds pepper ids and counts only, never a hash, a seal body, a
//! token or an account id: it is meant to be pasted into a ticket.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::AttributeValue;
use serde::Serialize;

use crate::adapters::store::dynamodb::{
    GRANT_PREFIX, HH_PREFIX, OUTBOX_PREFIX, OUTBOX_SK, PK, PROFILE_SK, SK,
};
use crate::domain::voice_codes::{Keyring, Profile};

type Item = HashMap<String, AttributeValue>;

/// A Scan page reads at most 1 MB, so the default cap stops a scan after about 1 GB read: far
/// beyond this table's size (profiles, in-flight outbox records, grants), and short of a scan
/// that runs for an hour against a table that is not what the operator thinks it is.
pub const DEFAULT_MAX_PAGES: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanLimits {
    /// Items read per page (DynamoDB's `Limit`); `None` lets DynamoDB fill 1 MB pages.
    pub page_size: Option<i32>,
    /// Pages read at most; the report says `complete: false` when there was more.
    pub max_pages: usize,
}

impl Default for ScanLimits {
    fn default() -> Self {
        ScanLimits {
            page_size: None,
            max_pages: DEFAULT_MAX_PAGES,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PepperUsageError {
    #[error("scan of table {table} failed: {detail}")]
    Scan { table: String, detail: String },
    #[error("the page cap must be at least 1")]
    NoPages,
    #[error("the page size must be 1 or more")]
    BadPageSize,
}

/// What names one pepper id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PepperCounts {
    /// Stored voice and duress codes hashed under it.
    pub codes: u64,
    /// Households holding at least one of those codes: the ones to ask to re-enrol.
    pub households: u64,
    /// Outbox records still pending (not delivered) whose seal names it.
    pub pending_outbox: u64,
    /// Alexa (Login-with-Amazon) grants with a token sealed under it.
    pub grants: u64,
}

impl PepperCounts {
    /// Nothing stored needs this pepper.
    pub fn is_unused(&self) -> bool {
        self.codes == 0 && self.pending_outbox == 0 && self.grants == 0
    }
}

/// Items that matter to a rotation but name no pepper id this check can read: a profile whose
/// data does not parse, a pending record or grant whose seal has no valid id, an outbox record
/// with an unknown status. Any of them might hide the pepper being retired.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Unreadable {
    pub profiles: u64,
    pub pending_outbox: u64,
    pub grants: u64,
}

impl Unreadable {
    pub fn total(&self) -> u64 {
        self.profiles + self.pending_outbox + self.grants
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PepperUsage {
    /// The scan read the whole table; `false` when it stopped at the page cap.
    pub complete: bool,
    pub pages: usize,
    /// Items the scan returned (profiles, outbox records not delivered, grants).
    pub items: u64,
    pub peppers: BTreeMap<String, PepperCounts>,
    pub unreadable: Unreadable,
}

/// Whether a pepper id may leave the keyring.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum Retirement {
    /// The whole table was read and nothing names it, and nothing is unreadable.
    Clear,
    /// Something stored names it, or might (unreadable items): keep it in the ring.
    Blocked {
        #[serde(flatten)]
        counts: PepperCounts,
        unreadable: u64,
    },
    /// Nothing named it in the part read, but the scan stopped at its page cap.
    Incomplete,
}

impl PepperUsage {
    pub fn counts(&self, pepper_id: &str) -> PepperCounts {
        self.peppers.get(pepper_id).cloned().unwrap_or_default()
    }

    pub fn retirement(&self, pepper_id: &str) -> Retirement {
        let counts = self.counts(pepper_id);
        let unreadable = self.unreadable.total();
        if !counts.is_unused() || unreadable > 0 {
            // Even a partial scan proves a blocker.
            Retirement::Blocked { counts, unreadable }
        } else if !self.complete {
            Retirement::Incomplete
        } else {
            Retirement::Clear
        }
    }

    /// The report as text: one row per pepper id, then the unreadable items and the scan.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let width = self
            .peppers
            .keys()
            .map(String::len)
            .chain(["pepper id".len()])
            .max()
            .unwrap_or(0);
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "{:<width$}  {:>8}  {:>10}  {:>14}  {:>8}",
            "pepper id", "codes", "households", "pending outbox", "grants"
        );
        for (id, c) in &self.peppers {
            let _ = writeln!(
                out,
                "{id:<width$}  {:>8}  {:>10}  {:>14}  {:>8}",
                c.codes, c.households, c.pending_outbox, c.grants
            );
        }
        if self.peppers.is_empty() {
            let _ = writeln!(out, "(nothing stored names a pepper)");
        }
        let u = &self.unreadable;
        let _ = writeln!(
            out,
            "unreadable: {} profiles, {} pending outbox records, {} grants",
            u.profiles, u.pending_outbox, u.grants
        );
        let _ = writeln!(
            out,
            "scan: {}, {} pages, {} items",
            if self.complete {
                "complete"
            } else {
                "INCOMPLETE (page cap reached)"
            },
            self.pages,
            self.items
        );
        out
    }

    /// The verdict on `pepper_id` as a line of text.
    pub fn retirement_line(&self, pepper_id: &str) -> String {
        match self.retirement(pepper_id) {
            Retirement::Clear => {
                format!("retire {pepper_id}: clear: nothing in the table names {pepper_id}")
            }
            Retirement::Incomplete => format!(
                "retire {pepper_id}: unknown: the scan is incomplete (page cap reached); keep \
                 {pepper_id}"
            ),
            Retirement::Blocked { counts, unreadable } => format!(
                "retire {pepper_id}: BLOCKED: {} codes in {} households, {} pending outbox \
                 records, {} grants still name {pepper_id}; {unreadable} unreadable items",
                counts.codes, counts.households, counts.pending_outbox, counts.grants
            ),
        }
    }

    /// The report as JSON, with the verdict on `retire` when given.
    pub fn json(&self, retire: Option<&str>) -> serde_json::Value {
        let mut v = serde_json::json!({ "usage": self });
        if let Some(id) = retire {
            v["retire"] = serde_json::json!({ "pepper": id, "result": self.retirement(id) });
        }
        v
    }

    fn pepper(&mut self, id: &str) -> &mut PepperCounts {
        self.peppers.entry(id.to_string()).or_default()
    }

    fn count(&mut self, item: &Item) {
        self.items += 1;
        let (Some(pk), Some(sk)) = (get_s(item, PK), get_s(item, SK)) else {
            return;
        };
        if pk.starts_with(HH_PREFIX) && sk == PROFILE_SK {
            self.count_profile(item);
        } else if pk.starts_with(OUTBOX_PREFIX) && sk == OUTBOX_SK {
            self.count_outbox(item);
        } else if pk.starts_with(GRANT_PREFIX) {
            self.count_grant(item);
        }
    }

    fn count_profile(&mut self, item: &Item) {
        // Parsed as the skill parses it: a profile the skill can't read is unreadable here too.
        let Some(profile) =
            get_s(item, "data").and_then(|d| serde_json::from_str::<Profile>(d).ok())
        else {
            self.unreadable.profiles += 1;
            return;
        };
        let mut in_household = BTreeSet::new();
        let mut bad = false;
        let codes = profile
            .members
            .iter()
            .flat_map(|m| [m.voice_pin.as_ref(), m.duress_pin.as_ref()])
            .flatten();
        for code in codes {
            if Keyring::is_valid_id(&code.pepper_id) {
                self.pepper(&code.pepper_id).codes += 1;
                in_household.insert(code.pepper_id.as_str());
            } else {
                bad = true;
            }
        }
        for id in in_household {
            self.pepper(id).households += 1;
        }
        if bad {
            self.unreadable.profiles += 1;
        }
    }

    fn count_outbox(&mut self, item: &Item) {
        match get_s(item, "status") {
            Some("delivered") => {}
            Some("pending") => match get_s(item, "seal").and_then(seal_pepper) {
                Some(id) => self.pepper(id).pending_outbox += 1,
                None => self.unreadable.pending_outbox += 1,
            },
            // The skill refuses to read such a record; it may still be waiting to be delivered.
            _ => self.unreadable.pending_outbox += 1,
        }
    }

    fn count_grant(&mut self, item: &Item) {
        // Both tokens are sealed together, so they name the same pepper; a grant that somehow
        // names two counts under both, since losing either pepper breaks it.
        let ids: Vec<Option<&str>> = ["access_token", "refresh_token"]
            .iter()
            .map(|name| get_s(item, name).and_then(seal_pepper))
            .collect();
        let named: BTreeSet<&str> = ids.iter().flatten().copied().collect();
        for id in named {
            self.pepper(id).grants += 1;
        }
        if ids.iter().any(Option::is_none) {
            self.unreadable.grants += 1;
        }
    }
}

fn get_s<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Some(v),
        _ => None,
    }
}

/// The pepper id a seal names, if it is a well-formed id: anything else is never printed, so a
/// malformed seal (or a token stored unsealed) can't leak into the report.
fn seal_pepper(seal: &str) -> Option<&str> {
    Keyring::sealed_pepper_id(seal).filter(|id| Keyring::is_valid_id(id))
}

/// Scans `table` for everything that names a pepper id. Consistent reads, so a re-enrolment or
/// a settled record just before the check is seen.
pub async fn scan(
    client: &Client,
    table: &str,
    limits: ScanLimits,
) -> Result<PepperUsage, PepperUsageError> {
    if limits.max_pages == 0 {
        return Err(PepperUsageError::NoPages);
    }
    if limits.page_size.is_some_and(|n| n < 1) {
        return Err(PepperUsageError::BadPageSize);
    }
    // Only the attributes that name a pepper or a status: no hash or token travels for nothing,
    // and delivered records (kept 30 days) stay on the server side of the filter.
    let request = client
        .scan()
        .table_name(table)
        .consistent_read(true)
        .set_limit(limits.page_size)
        .projection_expression("#pk, #sk, #data, #status, #seal, #access, #refresh")
        .filter_expression(
            "(begins_with(#pk, :hh) AND #sk = :profile) \
             OR (begins_with(#pk, :outbox) AND #sk = :outbox_sk \
                 AND (attribute_not_exists(#status) OR #status <> :delivered)) \
             OR begins_with(#pk, :grant)",
        )
        .expression_attribute_names("#pk", PK)
        .expression_attribute_names("#sk", SK)
        .expression_attribute_names("#data", "data")
        .expression_attribute_names("#status", "status")
        .expression_attribute_names("#seal", "seal")
        .expression_attribute_names("#access", "access_token")
        .expression_attribute_names("#refresh", "refresh_token")
        .expression_attribute_values(":hh", AttributeValue::S(HH_PREFIX.into()))
        .expression_attribute_values(":profile", AttributeValue::S(PROFILE_SK.into()))
        .expression_attribute_values(":outbox", AttributeValue::S(OUTBOX_PREFIX.into()))
        .expression_attribute_values(":outbox_sk", AttributeValue::S(OUTBOX_SK.into()))
        .expression_attribute_values(":delivered", AttributeValue::S("delivered".into()))
        .expression_attribute_values(":grant", AttributeValue::S(GRANT_PREFIX.into()));
    let mut usage = PepperUsage::default();
    let mut start: Option<Item> = None;
    while usage.pages < limits.max_pages {
        let resp = request
            .clone()
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(|e| PepperUsageError::Scan {
                table: table.to_string(),
                detail: DisplayErrorContext(&e).to_string(),
            })?;
        usage.pages += 1;
        for item in resp.items() {
            usage.count(item);
        }
        match resp.last_evaluated_key {
            Some(key) if !key.is_empty() => start = Some(key),
            _ => {
                usage.complete = true;
                break;
            }
        }
    }
    Ok(usage)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(pairs: &[(&str, &str)]) -> Item {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), AttributeValue::S(v.to_string())))
            .collect()
    }

    #[test]
    fn malformed_seals_and_ids_count_as_unreadable_and_are_never_named() {
        let mut u = PepperUsage {
            complete: true,
            ..PepperUsage::default()
        };
        for seal in ["no-dot-at-all", ".body", "bad id!.body", "p1.body"] {
            u.count(&item(&[
                (PK, "OUTBOX#r"),
                (SK, OUTBOX_SK),
                ("status", "pending"),
                ("seal", seal),
            ]));
        }
        u.count(&item(&[
            (PK, "OUTBOX#r"),
            (SK, OUTBOX_SK),
            ("status", "???"),
            ("seal", "p1.x"),
        ]));
        u.count(&item(&[
            (PK, "HH#h"),
            (SK, PROFILE_SK),
            ("data", "{not json"),
        ]));
        u.count(&item(&[
            (PK, "GRANT#a"),
            (SK, "NA"),
            ("access_token", "p2.x"),
            ("refresh_token", "plain-token"),
        ]));
        assert_eq!(u.peppers.keys().collect::<Vec<_>>(), ["p1", "p2"]);
        assert_eq!(u.counts("p1").pending_outbox, 1);
        assert_eq!(u.counts("p2").grants, 1);
        assert_eq!(
            u.unreadable,
            Unreadable {
                profiles: 1,
                pending_outbox: 4,
                grants: 1
            }
        );
        // Unreadable items might name p3: they block it too.
        assert!(matches!(u.retirement("p3"), Retirement::Blocked { .. }));
        let text = u.table();
        assert!(!text.contains("no-dot") && !text.contains("bad id") && !text.contains("plain"));
    }

    #[test]
    fn an_incomplete_scan_clears_nothing_but_still_proves_a_blocker() {
        let mut u = PepperUsage::default();
        u.pepper("p1").codes = 1;
        assert_eq!(u.retirement("p2"), Retirement::Incomplete);
        assert!(matches!(u.retirement("p1"), Retirement::Blocked { .. }));
        u.complete = true;
        assert_eq!(u.retirement("p2"), Retirement::Clear);
    }
}
