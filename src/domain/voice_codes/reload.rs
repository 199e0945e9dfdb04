//! A keyring that re-reads its source when it meets a pepper it lacks, or has grown old.
//!
//! Secrets are read once per cold start, so a warm function would never know a pepper added
//! after it started: a code re-enrolled under it could never match, and a duress PIN said to
//! that container would count as a wrong code; an outbox record sealed under it could never be
//! opened; an enrolment would be hashed under a pepper the operator has retired. The holder
//! re-reads the pepper secret
//! - when the ids it is asked about (a household's stored hashes, an outbox seal) name a pepper
//!   it lacks: the codes and records written by a container that knows more;
//! - when the loaded keyring is older than `max_age`, if set: so a warm function adopts a new
//!   *current* pepper (phase 2 of a rotation) without being recycled, even when nothing it meets
//!   names the new id yet;
//!
//! at most once per `min_interval` and within `timeout`, then swaps the new keyring in. A failed
//! or slow read keeps the loaded keyring (and its age: the next caller past `min_interval` tries
//! again).
//!
//! The triggers are stored data and time only, never the spoken or entered code, so a normal and
//! a duress attempt against the same household do the same work.

use std::future::Future;
use std::pin::Pin as FuturePin;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use super::household::{CodeKind, Profile};
use super::keyring::Keyring;

/// Loads the keyring from its source (Secrets Manager in production). The error is a message
/// that never quotes a pepper.
pub type LoadKeyring = Arc<
    dyn Fn() -> FuturePin<Box<dyn Future<Output = Result<Keyring, String>> + Send>> + Send + Sync,
>;

/// The keyring in use and when it was read.
struct Loaded {
    keyring: Arc<Keyring>,
    at: Instant,
}

pub struct KeyringSource {
    current: RwLock<Loaded>,
    load: LoadKeyring,
    min_interval: Duration,
    timeout: Duration,
    /// A keyring older than this is re-read on the next call, whatever ids it is asked about.
    max_age: Option<Duration>,
    /// When the last reload started; held across the load so concurrent callers wait for one
    /// read instead of each making their own.
    last: tokio::sync::Mutex<Option<Instant>>,
}

impl std::fmt::Debug for KeyringSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyringSource")
            .field("current", &self.current())
            .field("min_interval", &self.min_interval)
            .field("max_age", &self.max_age)
            .finish()
    }
}

impl KeyringSource {
    pub fn new(
        initial: Arc<Keyring>,
        load: LoadKeyring,
        min_interval: Duration,
        timeout: Duration,
    ) -> Self {
        KeyringSource {
            current: RwLock::new(Loaded {
                keyring: initial,
                at: Instant::now(),
            }),
            load,
            min_interval,
            timeout,
            max_age: None,
            last: tokio::sync::Mutex::new(None),
        }
    }

    /// Also re-reads the keyring once it is older than `max_age` (still at most once per
    /// `min_interval`): how a warm function adopts a new current pepper.
    pub fn with_max_age(mut self, max_age: Duration) -> Self {
        self.max_age = Some(max_age);
        self
    }

    pub fn current(&self) -> Arc<Keyring> {
        self.loaded().0
    }

    fn loaded(&self) -> (Arc<Keyring>, Instant) {
        let l = match self.current.read() {
            Ok(l) => l,
            Err(poisoned) => poisoned.into_inner(),
        };
        (l.keyring.clone(), l.at)
    }

    /// Why `keyring`, read at `at`, should be re-read for `ids`, if it should.
    fn reason<S: AsRef<str>>(
        &self,
        keyring: &Keyring,
        at: Instant,
        ids: &[S],
    ) -> Option<&'static str> {
        if !ids.iter().all(|id| keyring.contains(id.as_ref())) {
            Some("unknown pepper id")
        } else if self.max_age.is_some_and(|m| at.elapsed() >= m) {
            Some("max age")
        } else {
            None
        }
    }

    /// The keyring to verify `profile`'s codes with: the current one, reloaded first when a
    /// stored code names a pepper id it lacks (and the last reload is old enough).
    pub async fn for_profile(&self, profile: &Profile) -> Arc<Keyring> {
        // Collected before any await: the future stays Send.
        let mut ids: Vec<String> = Vec::new();
        for m in &profile.members {
            for kind in [CodeKind::Normal, CodeKind::Duress] {
                if let Some(c) = m.code(kind) {
                    ids.push(c.pepper_id.clone());
                }
            }
        }
        self.for_ids(&ids).await
    }

    /// The keyring to use for data naming pepper ids `ids` (an outbox seal's, say): the current
    /// one, re-read first when it lacks one of them or is older than the max age (and the last
    /// read is old enough). With no ids, only the age counts: the keyring to hash new codes with.
    pub async fn for_ids<S: AsRef<str> + Sync>(&self, ids: &[S]) -> Arc<Keyring> {
        let (current, at) = self.loaded();
        if self.reason(&current, at, ids).is_none() {
            return current;
        }
        let mut last = self.last.lock().await;
        // Another caller may have reloaded while this one waited.
        let (current, at) = self.loaded();
        let Some(reason) = self.reason(&current, at, ids) else {
            return current;
        };
        if last.is_some_and(|at| at.elapsed() < self.min_interval) {
            return current;
        }
        *last = Some(Instant::now());
        match tokio::time::timeout(self.timeout, (self.load)()).await {
            Ok(Ok(fresh)) => {
                let fresh = Arc::new(fresh);
                tracing::info!(
                    current_pepper = fresh.current_id(),
                    reason,
                    "pepper keyring reloaded"
                );
                let loaded = Loaded {
                    keyring: fresh.clone(),
                    at: Instant::now(),
                };
                match self.current.write() {
                    Ok(mut l) => *l = loaded,
                    Err(poisoned) => *poisoned.into_inner() = loaded,
                }
                fresh
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, reason, "pepper keyring reload failed; keeping the loaded one");
                current
            }
            Err(_) => {
                tracing::warn!(
                    reason,
                    "pepper keyring reload timed out; keeping the loaded one"
                );
                current
            }
        }
    }

    /// The keyring to hash a new code under: the current one, re-read first when older than
    /// the max age.
    pub async fn fresh(&self) -> Arc<Keyring> {
        self.for_ids::<&str>(&[]).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn ring(current: &str, ids: &[&str]) -> Keyring {
        let peppers: BTreeMap<String, Vec<u8>> = ids
            .iter()
            .map(|id| (id.to_string(), vec![9u8; 32]))
            .collect();
        Keyring::new(current, peppers).unwrap()
    }

    fn source(
        ids: Arc<Mutex<Vec<&'static str>>>,
        loads: Arc<AtomicUsize>,
        min_interval: Duration,
    ) -> KeyringSource {
        let load: LoadKeyring = Arc::new(move || {
            let ids = ids.lock().unwrap().clone();
            let loads = loads.clone();
            Box::pin(async move {
                loads.fetch_add(1, Ordering::SeqCst);
                Ok(ring(ids[ids.len() - 1], &ids))
            })
        });
        KeyringSource::new(
            Arc::new(ring("p1", &["p1"])),
            load,
            min_interval,
            Duration::from_secs(1),
        )
    }

    #[tokio::test]
    async fn reloads_only_for_an_unknown_id_and_at_most_once_per_interval() {
        let ids = Arc::new(Mutex::new(vec!["p1"]));
        let loads = Arc::new(AtomicUsize::new(0));
        let s = source(ids.clone(), loads.clone(), Duration::from_secs(3600));
        // Known ids: no read.
        assert_eq!(s.for_ids(&["p1"]).await.current_id(), "p1");
        assert_eq!(loads.load(Ordering::SeqCst), 0);
        // Unknown, not yet in the source: one read, nothing new.
        assert!(!s.for_ids(&["p2"]).await.contains("p2"));
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        // The source gains p2, but the interval has not passed: no second read.
        ids.lock().unwrap().push("p2");
        assert!(!s.for_ids(&["p2"]).await.contains("p2"));
        assert_eq!(loads.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn swaps_in_the_new_keyring_for_every_later_caller() {
        let ids = Arc::new(Mutex::new(vec!["p1", "p2"]));
        let loads = Arc::new(AtomicUsize::new(0));
        let s = source(ids, loads.clone(), Duration::ZERO);
        let k = s.for_ids(&["p1", "p2"]).await;
        assert_eq!(k.current_id(), "p2");
        assert!(k.contains("p1"));
        assert_eq!(s.current().current_id(), "p2");
        assert_eq!(s.for_ids(&["p2"]).await.current_id(), "p2");
        assert_eq!(loads.load(Ordering::SeqCst), 1);
    }

    /// A source whose reads follow `outcome`: `Ok(ids)` serves those (the last one current),
    /// `Err(())` fails, and a read sleeps `delay` first.
    fn scripted(
        outcome: Arc<Mutex<Result<Vec<&'static str>, ()>>>,
        loads: Arc<AtomicUsize>,
        delay: Duration,
        min_interval: Duration,
        max_age: Duration,
    ) -> KeyringSource {
        let load: LoadKeyring = Arc::new(move || {
            let outcome = outcome.lock().unwrap().clone();
            let loads = loads.clone();
            Box::pin(async move {
                loads.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(delay).await;
                match outcome {
                    Ok(ids) => Ok(ring(ids[ids.len() - 1], &ids)),
                    Err(()) => Err("unreachable".to_string()),
                }
            })
        });
        KeyringSource::new(
            Arc::new(ring("p1", &["p1"])),
            load,
            min_interval,
            Duration::from_millis(200),
        )
        .with_max_age(max_age)
    }

    #[tokio::test]
    async fn an_old_keyring_is_reread_for_known_ids_and_adopts_the_new_current_pepper() {
        let outcome = Arc::new(Mutex::new(Ok(vec!["p1", "p2"])));
        let loads = Arc::new(AtomicUsize::new(0));
        let s = scripted(
            outcome,
            loads.clone(),
            Duration::ZERO,
            Duration::ZERO,
            Duration::from_millis(100),
        );
        // Young: known ids and no ids at all read nothing.
        assert_eq!(s.for_ids(&["p1"]).await.current_id(), "p1");
        assert_eq!(s.fresh().await.current_id(), "p1");
        assert_eq!(loads.load(Ordering::SeqCst), 0);
        tokio::time::sleep(Duration::from_millis(120)).await;
        // Old: the next caller re-reads, whatever it asks about, and gets the new current.
        assert_eq!(s.fresh().await.current_id(), "p2");
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        // The new keyring is young again.
        assert_eq!(s.for_ids(&["p1"]).await.current_id(), "p2");
        assert_eq!(loads.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn the_age_read_keeps_the_floor_and_a_failed_or_slow_read_keeps_the_loaded_keyring() {
        let outcome = Arc::new(Mutex::new(Err(())));
        let loads = Arc::new(AtomicUsize::new(0));
        let s = scripted(
            outcome.clone(),
            loads.clone(),
            Duration::ZERO,
            Duration::from_millis(300),
            Duration::ZERO,
        );
        // Failed: the loaded keyring stays, and so does its age: the next read comes once the
        // floor has passed, not on every call.
        assert_eq!(s.fresh().await.current_id(), "p1");
        assert_eq!(s.fresh().await.current_id(), "p1");
        assert_eq!(s.for_ids(&["p2"]).await.current_id(), "p1");
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        tokio::time::sleep(Duration::from_millis(320)).await;
        *outcome.lock().unwrap() = Ok(vec!["p1", "p2"]);
        assert_eq!(s.fresh().await.current_id(), "p2");
        assert_eq!(loads.load(Ordering::SeqCst), 2);

        // Slower than the timeout (200 ms): given up on, the loaded keyring kept.
        let slow = scripted(
            Arc::new(Mutex::new(Ok(vec!["p1", "p2"]))),
            loads.clone(),
            Duration::from_secs(600),
            Duration::ZERO,
            Duration::ZERO,
        );
        // A read that hangs for 10 minutes: only the 200 ms timeout can end this in time.
        let keyring = tokio::time::timeout(Duration::from_secs(120), slow.for_ids(&["p2"]))
            .await
            .expect("given up on at its timeout, not waited for");
        assert_eq!(keyring.current_id(), "p1");
        assert_eq!(slow.current().current_id(), "p1");
    }

    #[tokio::test]
    async fn callers_meeting_an_unknown_id_together_share_one_read() {
        let outcome = Arc::new(Mutex::new(Ok(vec!["p1", "p2"])));
        let loads = Arc::new(AtomicUsize::new(0));
        let s = Arc::new(scripted(
            outcome,
            loads.clone(),
            Duration::from_millis(50),
            Duration::from_secs(3600),
            Duration::from_secs(3600),
        ));
        let got = futures_util::future::join_all((0..8).map(|_| {
            let s = s.clone();
            async move { s.for_ids(&["p2"]).await.contains("p2") }
        }))
        .await;
        assert!(got.iter().all(|k| *k), "{got:?}");
        assert_eq!(loads.load(Ordering::SeqCst), 1);
    }
}
