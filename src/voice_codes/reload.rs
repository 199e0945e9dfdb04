//! A keyring that re-reads its source when a stored code names a pepper it lacks.
//!
//! Secrets are read once per cold start, so a warm function would never know a pepper added
//! after it started: a code re-enrolled under it could never match, and a duress PIN said to
//! that container would count as a wrong code. The holder re-reads the pepper secret when the
//! household's stored hashes name an unknown pepper id, at most once per `min_interval` and
//! within `timeout`, then swaps the new keyring in.
//!
//! The trigger is the stored hashes' pepper ids only, never the spoken code, so a normal and a
//! duress attempt against the same household do the same work.

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

pub struct KeyringSource {
    current: RwLock<Arc<Keyring>>,
    load: LoadKeyring,
    min_interval: Duration,
    timeout: Duration,
    /// When the last reload started; held across the load so concurrent callers wait for one
    /// read instead of each making their own.
    last: tokio::sync::Mutex<Option<Instant>>,
}

impl std::fmt::Debug for KeyringSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyringSource")
            .field("current", &self.current())
            .field("min_interval", &self.min_interval)
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
            current: RwLock::new(initial),
            load,
            min_interval,
            timeout,
            last: tokio::sync::Mutex::new(None),
        }
    }

    pub fn current(&self) -> Arc<Keyring> {
        match self.current.read() {
            Ok(k) => k.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
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

    pub async fn for_ids<S: AsRef<str> + Sync>(&self, ids: &[S]) -> Arc<Keyring> {
        let current = self.current();
        if ids.iter().all(|id| current.contains(id.as_ref())) {
            return current;
        }
        let mut last = self.last.lock().await;
        // Another caller may have reloaded while this one waited.
        let current = self.current();
        if ids.iter().all(|id| current.contains(id.as_ref())) {
            return current;
        }
        if last.is_some_and(|at| at.elapsed() < self.min_interval) {
            return current;
        }
        *last = Some(Instant::now());
        match tokio::time::timeout(self.timeout, (self.load)()).await {
            Ok(Ok(fresh)) => {
                let fresh = Arc::new(fresh);
                tracing::info!(
                    current_pepper = fresh.current_id(),
                    "pepper keyring reloaded: a stored code named an unknown pepper"
                );
                match self.current.write() {
                    Ok(mut k) => *k = fresh.clone(),
                    Err(poisoned) => *poisoned.into_inner() = fresh.clone(),
                }
                fresh
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, "pepper keyring reload failed; keeping the loaded one");
                current
            }
            Err(_) => {
                tracing::warn!("pepper keyring reload timed out; keeping the loaded one");
                current
            }
        }
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
}
