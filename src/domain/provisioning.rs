//! Household provisioning: the skill's members come from the panel cloud.
//!
//! A household's members are the panel users of its account (`GET /v1/accounts/{account}/users`,
//! docs/panel-api.md). The skill keeps its own copy only to hang voice codes on them:
//! - **first use**: the management API syncs a household that was never synced before it
//!   answers (crate::edges::management), so a fresh deploy lists the right members at once;
//! - **webhook**: the cloud sends `users_changed` with the whole list whenever a user is added,
//!   renamed or removed (crate::edges::webhook);
//! - **bulk import**: `alarm-skill import` syncs many existing households in one go.
//!
//! A member is the person on a user number: the panel cloud's stable user id when it gives one
//! (a rename keeps the member's id and codes), otherwise the name. When a number is given to
//! someone else (another id, or another name where the cloud gives no ids), the member who had
//! it is removed with their codes and the new person added without any: a reused slot must not
//! inherit the former member's voice PIN, nor have their duress PIN raise a 121 in the new
//! person's name. A member whose user number is no longer a panel user is removed together
//! with their codes too: someone who left the household must not keep a voice code that
//! disarms it.
//!
//! Lists are ordered by the cloud's own revision of the user list, never by a clock: a list
//! older than the last one applied is ignored, whatever its `occurred_at` and whatever our
//! clock says, and one that is newer is applied however late it arrives.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::common::clock::Clock;
use crate::common::deadline::Deadline;
use crate::domain::ports::panel::{PanelCloud, PanelError, PanelUser, UserList};
use crate::domain::ports::store::{AuditEntry, ConfirmedPanel, Store, StoreError};
use crate::domain::voice_codes::{Member, NameError, Profile, member_name};

const SAVE_ATTEMPTS: usize = 3;
const MAX_SLUG: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    #[error("panel cloud: {0}")]
    Panel(#[from] PanelError),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// A panel user's name holds characters no member name may
    /// ([`crate::domain::voice_codes::member_name`]): the whole list is refused, and the
    /// household keeps its members as they were. Skipping that user instead would remove their
    /// member, and the codes with them, for a rename.
    #[error("the name of panel user {number} has control or bidirectional formatting characters")]
    MemberName { number: u16 },
}

/// [`SyncError::MemberName`] for the first user of `users` whose name has characters no member
/// name may have.
fn refused_name(users: &[PanelUser]) -> Result<(), SyncError> {
    match users
        .iter()
        .find(|u| member_name(&u.name) == Err(NameError::Characters))
    {
        Some(u) => Err(SyncError::MemberName { number: u.number }),
        None => Ok(()),
    }
}

/// What a sync changed. Ids are member ids; names are not repeated here (they are in the audit).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SyncOutcome {
    pub added: Vec<String>,
    pub renamed: Vec<String>,
    pub removed: Vec<String>,
    /// Members after the sync.
    pub members: usize,
    /// Whether the list was applied; `false` for a webhook list older than the last sync.
    pub applied: bool,
}

/// A panel user the skill can take: a number 1–999 and a member name
/// ([`crate::domain::voice_codes::member_name`]; a list with a name of forbidden characters
/// never gets here, [`refused_name`]). Anything else is skipped, with a warning that names
/// neither.
fn usable(users: &[PanelUser]) -> Vec<PanelUser> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for u in users {
        let name = member_name(&u.name)
            .ok()
            .filter(|_| (1..=999).contains(&u.number) && seen.insert(u.number));
        if let Some(name) = name {
            out.push(PanelUser {
                id: u.id.clone().filter(|id| !id.is_empty()),
                number: u.number,
                name,
            });
        } else {
            tracing::warn!(
                number = u.number,
                "panel user skipped: number must be 1-999 and unique, name 1-64 characters"
            );
        }
    }
    out
}

/// A member id for a new member: the name as `[a-z0-9-]`, unique in the household.
fn member_id(name: &str, number: u16, taken: &BTreeSet<String>) -> String {
    let mut slug = String::new();
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let slug: String = slug.trim_matches('-').chars().take(MAX_SLUG).collect();
    let slug = slug.trim_end_matches('-').to_string();
    let candidates = [
        slug.clone(),
        format!("{slug}-{number}"),
        format!("user-{number}"),
    ];
    for c in candidates {
        if !c.is_empty() && !c.starts_with('-') && !taken.contains(&c) {
            return c;
        }
    }
    // Only reachable when hand-made ids already use every candidate.
    (2..)
        .map(|n| format!("user-{number}-{n}"))
        .find(|c| !taken.contains(c))
        .unwrap_or_else(|| format!("user-{number}-x"))
}

/// Whether panel user `u` is the person member `m` stands for: the same stable id where both
/// have one, else the same name. Only ever asked for the user on `m`'s number.
fn same_person(m: &Member, u: &PanelUser) -> bool {
    match (&m.panel_user_id, &u.id) {
        (Some(a), Some(b)) => a == b,
        _ => m.name == u.name,
    }
}

/// Applies the cloud's user list to the profile; returns what changed and the audit messages.
pub fn merge(profile: &mut Profile, users: &[PanelUser]) -> (SyncOutcome, Vec<String>) {
    let users = usable(users);
    let mut outcome = SyncOutcome {
        applied: true,
        ..SyncOutcome::default()
    };
    let mut messages = Vec::new();
    profile.members.retain(|m| {
        let on_number = users.iter().find(|u| u.number == m.user_number);
        let keep = on_number.is_some_and(|u| same_person(m, u));
        if !keep {
            outcome.removed.push(m.id.clone());
            messages.push(match on_number {
                Some(_) => format!(
                    "{} was removed: user {} of the panel is now someone else",
                    m.name, m.user_number
                ),
                None => format!("{} was removed: no longer a user of the panel", m.name),
            });
        }
        keep
    });
    for u in &users {
        match profile
            .members
            .iter_mut()
            .find(|m| m.user_number == u.number)
        {
            Some(m) => {
                // A member from before the cloud gave ids takes the id of the same-named user.
                if m.panel_user_id.is_none() {
                    m.panel_user_id = u.id.clone();
                }
                if m.name != u.name {
                    messages.push(format!("{} is now called {}", m.name, u.name));
                    m.name = u.name.clone();
                    outcome.renamed.push(m.id.clone());
                }
            }
            None => {
                let taken: BTreeSet<String> =
                    profile.members.iter().map(|m| m.id.clone()).collect();
                let id = member_id(&u.name, u.number, &taken);
                messages.push(format!("{} was added from the panel's users", u.name));
                outcome.added.push(id.clone());
                profile.members.push(Member {
                    id,
                    name: u.name.clone(),
                    user_number: u.number,
                    panel_user_id: u.id.clone(),
                    voice_pin: None,
                    duress_pin: None,
                });
            }
        }
    }
    profile.members.sort_by_key(|m| m.user_number);
    outcome.members = profile.members.len();
    (outcome, messages)
}

/// Whether `list` is older than the last list applied to `profile`. By the cloud's revision
/// when the list has one; a cloud without revisions gets the older rule (its `as_of` against
/// the last sync, with `only_if_newer`), which can't order a webhook against a pull sync.
fn is_stale(profile: &Profile, list: &UserList, as_of: DateTime<Utc>, only_if_newer: bool) -> bool {
    match (list.revision, profile.members_revision) {
        (Some(r), Some(last)) => r < last,
        (Some(_), None) => false,
        (None, _) => only_if_newer && profile.members_synced_at.is_some_and(|last| as_of < last),
    }
}

/// Writes `list` (the cloud's user list, as of `as_of`) into the household, with optimistic
/// concurrency. A list older than the last applied one is ignored ([`is_stale`]), so a delayed
/// or replayed webhook, or a pull sync that raced a newer webhook, can't bring back a user
/// removed since; a newer one is applied however late it arrives.
pub async fn apply_users(
    store: &dyn Store,
    clock: &dyn Clock,
    account: &str,
    list: &UserList,
    as_of: DateTime<Utc>,
    only_if_newer: bool,
) -> Result<SyncOutcome, SyncError> {
    let unchecked = |_: &mut Profile, _: &[Member]| Ok::<(), std::convert::Infallible>(());
    let applied = apply_users_checked(store, clock, account, list, as_of, only_if_newer, unchecked);
    Ok(applied.await?.unwrap_or_else(|never| match never {}))
}

/// [`apply_users`], with `check` asked before a list that removes members is written: it gets
/// the profile as it would be saved and the members the list removes (never called when it
/// removes none), and may change the profile (the deletion limit's count) or refuse, which
/// leaves the household as it was (`Ok(Err(refusal))`). It runs on every read of a conflicted
/// write, so what it approves is exactly what is written.
pub async fn apply_users_checked<E>(
    store: &dyn Store,
    clock: &dyn Clock,
    account: &str,
    list: &UserList,
    as_of: DateTime<Utc>,
    only_if_newer: bool,
    mut check: impl FnMut(&mut Profile, &[Member]) -> Result<(), E>,
) -> Result<Result<SyncOutcome, E>, SyncError> {
    refused_name(&list.users)?;
    for _ in 0..SAVE_ATTEMPTS {
        let mut profile = store.household(account).await?.profile;
        if is_stale(&profile, list, as_of, only_if_newer) {
            return Ok(Ok(SyncOutcome {
                members: profile.members.len(),
                ..SyncOutcome::default()
            }));
        }
        let before = profile.members.clone();
        let (outcome, messages) = merge(&mut profile, &list.users);
        if !outcome.removed.is_empty() {
            let removed: Vec<Member> = before
                .iter()
                .filter(|m| outcome.removed.contains(&m.id))
                .cloned()
                .collect();
            if let Err(refused) = check(&mut profile, &removed) {
                return Ok(Err(refused));
            }
        }
        let newer = list.revision.is_some() && list.revision != profile.members_revision;
        profile.members_revision = list.revision.or(profile.members_revision);
        if profile.members == before && profile.members_synced_at.is_some() && !newer {
            // Nothing changed: no write, no audit line.
            return Ok(Ok(outcome));
        }
        profile.members_synced_at = Some(as_of);
        match store.save_profile(account, &profile).await {
            Ok(_) => {
                for message in messages {
                    let entry = AuditEntry {
                        at: clock.now(),
                        actor: "panel cloud".to_string(),
                        message,
                    };
                    store.append_audit(account, &entry).await?;
                }
                return Ok(Ok(outcome));
            }
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(StoreError::Conflict.into())
}

/// Fetches the account's panel users and applies them.
pub async fn sync_from_cloud(
    store: &dyn Store,
    panels: &dyn PanelCloud,
    clock: &dyn Clock,
    account: &str,
    deadline: Deadline,
) -> Result<SyncOutcome, SyncError> {
    let as_of = clock.now();
    let users = panels.users(account, deadline).await?;
    let outcome = apply_users(store, clock, account, &users, as_of, false).await?;
    confirm_listed(store, panels, clock, account, deadline).await;
    Ok(outcome)
}

/// The account's panels as the cloud lists them now, confirmed in the store: a household set
/// up (or imported) and then used only by schedule or keypad must not have its first spoken
/// duress held for want of a discovery (crate::domain::skill::OWNERSHIP_TTL). Best effort: the sync
/// stands without it.
async fn confirm_listed(
    store: &dyn Store,
    panels: &dyn PanelCloud,
    clock: &dyn Clock,
    account: &str,
    deadline: Deadline,
) {
    let listed = match panels.panels(account, deadline).await {
        Ok(listed) => listed,
        Err(e) => {
            tracing::warn!(error = %e, "could not list the account's panels to confirm them");
            return;
        }
    };
    let confirmed: Vec<ConfirmedPanel> = listed.iter().map(ConfirmedPanel::from).collect();
    if confirmed.is_empty() {
        return;
    }
    if let Err(e) = store.confirm_panels(account, &confirmed, clock.now()).await {
        tracing::warn!(error = %e, "could not record the confirmed panels");
    }
}

/// The ports a sync needs, bundled for the management API and the import command.
#[derive(Clone)]
pub struct Provisioner {
    pub store: Arc<dyn Store>,
    pub panels: Arc<dyn PanelCloud>,
    pub clock: Arc<dyn Clock>,
}

impl Provisioner {
    /// Syncs now, asking `check` before members are removed ([`apply_users_checked`]): the
    /// management API's `POST .../members/sync`, where removing a member is a deletion like any
    /// other.
    pub async fn sync_checked<E>(
        &self,
        account: &str,
        deadline: Deadline,
        check: impl FnMut(&mut Profile, &[Member]) -> Result<(), E>,
    ) -> Result<Result<SyncOutcome, E>, SyncError> {
        let (store, clock) = (self.store.as_ref(), self.clock.as_ref());
        let as_of = clock.now();
        let users = self.panels.users(account, deadline).await?;
        let applied = apply_users_checked(store, clock, account, &users, as_of, false, check);
        let outcome = applied.await?;
        if outcome.is_ok() {
            confirm_listed(store, self.panels.as_ref(), clock, account, deadline).await;
        }
        Ok(outcome)
    }

    pub async fn sync(&self, account: &str, deadline: Deadline) -> Result<SyncOutcome, SyncError> {
        sync_from_cloud(
            self.store.as_ref(),
            self.panels.as_ref(),
            self.clock.as_ref(),
            account,
            deadline,
        )
        .await
    }

    /// Syncs a household that was never synced (first use). If the panel cloud can't be asked
    /// right now, a household that already has members (imported or seeded) keeps working with
    /// them; only one with none at all gets the error, since it could do nothing anyway.
    pub async fn ensure(&self, account: &str, deadline: Deadline) -> Result<(), SyncError> {
        let profile = self.store.household(account).await?.profile;
        if profile.members_synced_at.is_some() {
            return Ok(());
        }
        match self.sync(account, deadline).await {
            Err(SyncError::Panel(e)) if !profile.members.is_empty() => {
                tracing::warn!(error = %e, "first member sync failed; using the members on file");
                Ok(())
            }
            // Not a failure of the route asked for: the household stays unsynced (tried again
            // next time) and `POST .../members/sync` says which panel user to rename.
            Err(e @ SyncError::MemberName { .. }) => {
                tracing::warn!(error = %e, "first member sync refused; using the members on file");
                Ok(())
            }
            other => other.map(|_| ()),
        }
    }
}

/// One line of a bulk import report.
#[derive(Debug, Clone, Serialize)]
pub struct ImportLine {
    pub account: String,
    #[serde(flatten)]
    pub outcome: Option<SyncOutcome>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Syncs every account in `accounts` (bulk import of existing households), one after the other
/// so the panel cloud sees no burst. A failed account does not stop the others.
pub async fn import(p: &Provisioner, accounts: &[String]) -> Vec<ImportLine> {
    let mut lines = Vec::new();
    for account in accounts {
        let result = p
            .sync(account, Deadline::after(std::time::Duration::from_secs(10)))
            .await;
        lines.push(match result {
            Ok(o) => ImportLine {
                account: account.clone(),
                outcome: Some(o),
                error: None,
            },
            Err(e) => ImportLine {
                account: account.clone(),
                outcome: None,
                error: Some(e.to_string()),
            },
        });
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(number: u16, name: &str) -> PanelUser {
        PanelUser {
            id: None,
            number,
            name: name.into(),
        }
    }

    #[test]
    fn merge_matches_by_user_number_and_keeps_ids() {
        let mut p = Profile::default();
        let (o, _) = merge(
            &mut p,
            &[
                with_id("u1", 1, "Alex"),
                with_id("u2", 2, "Sam O'Neil"),
                user(3, ""),
            ],
        );
        assert_eq!(o.added, vec!["alex", "sam-o-neil"]);
        let (o, msgs) = merge(&mut p, &[with_id("u2", 2, "Sam"), with_id("u4", 4, "Alex")]);
        assert_eq!(o.removed, vec!["alex"]);
        assert_eq!(o.renamed, vec!["sam-o-neil"]);
        // A new Alex may reuse the freed id; the renamed member keeps its old one.
        assert_eq!(o.added, vec!["alex"]);
        assert_eq!(p.members[0].id, "sam-o-neil");
        assert_eq!(p.members[0].name, "Sam");
        assert_eq!(msgs.len(), 3);
    }

    fn with_id(id: &str, number: u16, name: &str) -> PanelUser {
        PanelUser {
            id: Some(id.into()),
            ..user(number, name)
        }
    }

    fn code() -> Option<crate::domain::voice_codes::CodeHash> {
        Some(crate::domain::voice_codes::CodeHash {
            pepper_id: "p1".into(),
            mac: [7; 32],
            prefixes: vec![],
        })
    }

    #[test]
    fn a_reused_number_is_a_new_member_without_the_former_ones_codes() {
        // By stable id: a rename keeps the codes, another id on the number does not.
        let mut p = Profile::default();
        merge(&mut p, &[with_id("u1", 1, "Alex"), with_id("u2", 2, "Sam")]);
        for m in &mut p.members {
            m.voice_pin = code();
            m.duress_pin = code();
        }
        let (o, msgs) = merge(
            &mut p,
            &[with_id("u1", 1, "Alex Q"), with_id("u9", 2, "Sam")],
        );
        assert_eq!(o.renamed, vec!["alex"]);
        assert_eq!(
            (o.removed, o.added),
            (vec!["sam".into()], vec!["sam".into()])
        );
        assert!(p.members[0].voice_pin.is_some() && p.members[0].duress_pin.is_some());
        assert_eq!(p.members[1].panel_user_id.as_deref(), Some("u9"));
        assert!(p.members[1].voice_pin.is_none() && p.members[1].duress_pin.is_none());
        assert!(
            msgs.contains(&"Sam was removed: user 2 of the panel is now someone else".into()),
            "{msgs:?}"
        );
        // Without ids (an older cloud): a new name on the number is a new person.
        let mut p = Profile::default();
        merge(&mut p, &[user(1, "Alex"), user(2, "Sam")]);
        p.members[1].voice_pin = code();
        let (o, _) = merge(&mut p, &[user(1, "Alex"), user(2, "Jordan")]);
        assert_eq!(
            (o.removed, o.added),
            (vec!["sam".into()], vec!["jordan".into()])
        );
        assert!(o.renamed.is_empty());
        assert!(p.members[1].voice_pin.is_none());
        // A member from before ids takes the id of the same-named user and keeps the codes;
        // from then on the id decides.
        let (o, _) = merge(
            &mut p,
            &[with_id("u1", 1, "Alex"), with_id("u3", 2, "Jordan")],
        );
        assert!(o.removed.is_empty() && o.added.is_empty());
        p.members[0].voice_pin = code();
        let (o, _) = merge(
            &mut p,
            &[with_id("u1", 1, "Alexandra"), with_id("u3", 2, "Jordan")],
        );
        assert_eq!(o.renamed, vec!["alex"]);
        assert!(p.members[0].voice_pin.is_some());
    }

    #[test]
    fn lists_are_ordered_by_the_clouds_revision_not_a_clock() {
        let now = Utc::now();
        let mut p = Profile {
            members_revision: Some(5),
            members_synced_at: Some(now),
            ..Profile::default()
        };
        let list = |revision| UserList {
            revision,
            users: vec![],
        };
        let long_ago = now - chrono::Duration::hours(1);
        // A newer revision is applied however old its time, an older one never.
        assert!(!is_stale(&p, &list(Some(6)), long_ago, true));
        assert!(!is_stale(&p, &list(Some(5)), long_ago, true));
        assert!(is_stale(
            &p,
            &list(Some(4)),
            now + chrono::Duration::hours(1),
            true
        ));
        assert!(is_stale(&p, &list(Some(4)), now, false));
        // Without revisions, the older rule.
        assert!(is_stale(&p, &list(None), long_ago, true));
        assert!(!is_stale(&p, &list(None), long_ago, false));
        p.members_revision = None;
        assert!(!is_stale(&p, &list(Some(1)), long_ago, true));
    }

    #[test]
    fn ids_stay_unique_and_valid() {
        let taken: BTreeSet<String> = ["alex".to_string()].into();
        assert_eq!(member_id("Alex", 7, &taken), "alex-7");
        assert_eq!(member_id("José Ñ", 2, &BTreeSet::new()), "jos");
        assert_eq!(member_id("!!!", 9, &BTreeSet::new()), "user-9");
        let long = "a".repeat(80);
        assert_eq!(member_id(&long, 1, &BTreeSet::new()).len(), MAX_SLUG);
    }
}
