//! The household management API: members, voice codes, lockout, audit log, settings.
//! HTTP + JSON, authenticated with the account-linking bearer JWT (the same issuer as the
//! skill). Served by the local stack and, in production, by the `http-api` Lambda.
//!
//! | route | who | what |
//! |---|---|---|
//! | `GET /v1/household/members` | admin | members, with whether each has a voice PIN (never a code, and nothing about duress codes) |
//! | `POST /v1/household/members` | admin | add a member `{"id","name","user_number"}` |
//! | `POST /v1/household/members/sync` | admin | take the members from the panel cloud's users again; removing any is a deletion (below) |
//! | `DELETE /v1/household/members/{id}` | admin | remove a member and their codes |
//! | `PUT /v1/household/members/{id}/voice-pin` | admin | set or replace `{"pin":"4729"}` |
//! | `DELETE /v1/household/members/{id}/voice-pin` | admin | delete |
//! | `PUT /v1/household/members/{id}/duress-pin` | admin | set or replace `{"pin":"8361"}` |
//! | `DELETE /v1/household/members/{id}/duress-pin` | admin | delete |
//! | `GET /v1/household/lockout` | admin | throttle state |
//! | `POST /v1/household/lockout/reset` | admin | clear failures and any lockout (recent sign-in) |
//! | `GET /v1/household/audit?limit=N` | admin | audit log, newest first |
//! | `GET /v1/household/settings` / `PUT` | admin | `{"pinless_disarm": ..., "google_enabled": bool}` (recent sign-in to weaken `pinless_disarm`) |
//!
//! Members come from the panel cloud (crate::domain::provisioning): a household never synced is synced
//! before any route answers.
//!
//! Code changes are rate-limited per household (every attempt counts, accepted or not) and
//! audited without saying which kind of code changed: the household log is visible to anyone
//! holding the admin's phone, and must not advertise that a duress PIN exists. For the same
//! reason nothing here says whether a member has a duress PIN: setting, replacing and deleting
//! one answer, audit and write exactly as they would with or without one there, and the
//! enrolment checks do the same work either way (crate::domain::voice_codes::enrol).
//!
//! One rule for every change that weakens disarming or removes codes: setting, replacing or
//! deleting a code, removing a member (by hand, or by a sync that drops panel users), resetting
//! the lockout, and moving `pinless_disarm` to a weaker policy all need a recent sign-in (the
//! same 401 `reauthentication_required` for each), send the household a notice and write an
//! audit line. Every removal, of a code or of a member with whatever codes they hold, counts
//! against the deletion limit over a rolling window, in the same write as the removal.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, delete, get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::common::clock::Clock;
use crate::common::http_errors::{Body, JsonPath, JsonQuery};
use crate::common::secret::{BearerToken, Pin};
use crate::domain::ports::account_link::{Identity, TokenError, TokenUse, TokenVerifier};
use crate::domain::ports::store::ThrottleWrite;
use crate::domain::ports::store::{AuditEntry, Store, StoreError};
use crate::domain::voice_codes::{
    CodeKind, EnrolError, Gate, Keyring, Member, PinlessPolicy, Profile, Throttle, ThrottlePolicy,
    check_new_code, hash_code, member_name,
};

pub use crate::domain::voice_codes::enrol::{EnrolLimit, StepUp};

/// The notice the household's app shows after any code change: one text whatever kind of code
/// changed, so it tells that codes changed, never that a duress code did.
const CODES_CHANGED_NOTICE: &str = "voice_codes_changed";
/// The notice after the voice disarm lockout was reset: guessing is open again.
const LOCKOUT_RESET_NOTICE: &str = "voice_pin_lockout_reset";
/// The notice after `pinless_disarm` was weakened: more disarms go through without a code.
const PINLESS_WEAKENED_NOTICE: &str = "voice_disarm_settings_changed";
/// Refused requests of one kind take one audit line per this window, with their count.
const REFUSAL_AUDIT_WINDOW: chrono::Duration = chrono::Duration::hours(1);
/// What the household is told after a lockout reset or a weakened setting.
const NOT_YOU: &str = "If that wasn't you or someone you trust, check the settings in the app.";

pub struct ManagementService {
    pub store: Arc<dyn Store>,
    pub tokens: Arc<dyn TokenVerifier>,
    pub keyring: Arc<Keyring>,
    /// Where a newer keyring comes from (the deployed http-api function): re-read when a
    /// household's stored codes name a pepper `keyring` lacks, or when the loaded one is older
    /// than its max age, so a warm function checks the slip rule under every stored code's own
    /// pepper and hashes new codes under the current one. `None` keeps `keyring`.
    pub keyring_source: Option<Arc<crate::domain::voice_codes::KeyringSource>>,
    pub clock: Arc<dyn Clock>,
    pub throttle: ThrottlePolicy,
    pub enrol_limit: EnrolLimit,
    pub step_up: StepUp,
    /// Takes the members from the panel cloud (first use, `POST .../members/sync`); `None`
    /// leaves members to `POST /v1/household/members` alone.
    pub provisioning: Option<crate::domain::provisioning::Provisioner>,
}

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// For a step-up: the sign-in age the client must ask the issuer for, in seconds.
    max_age: Option<i64>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            max_age: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (
            self.status,
            Json(json!({"error": self.code, "message": self.message})),
        )
            .into_response();
        let step_up = format!(
            "Bearer error=\"insufficient_user_authentication\", \
             error_description=\"a more recent sign-in is required\", max_age={}",
            self.max_age.unwrap_or_default()
        );
        let challenge = match (self.status, self.code) {
            // RFC 9470: the client signs the user in again (max_age) and retries.
            (StatusCode::UNAUTHORIZED, "reauthentication_required") => Some(step_up.as_str()),
            (StatusCode::UNAUTHORIZED, _) => Some("Bearer"),
            (StatusCode::FORBIDDEN, "wrong_token") => Some("Bearer error=\"insufficient_scope\""),
            _ => None,
        };
        if let Some(Ok(v)) = challenge.map(str::parse) {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        resp
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "store failed in management API");
        match e {
            StoreError::Conflict => ApiError::new(
                StatusCode::CONFLICT,
                "conflict",
                "the household changed concurrently; retry",
            ),
            _ => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "storage is temporarily unavailable",
            ),
        }
    }
}

type Svc = Arc<ManagementService>;

/// An authenticated household admin.
struct Admin(Identity);

impl FromRequestParts<Svc> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, svc: &Svc) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "a bearer token is required",
                )
            })?;
        let identity = svc
            .tokens
            .verify(&BearerToken::new(token), TokenUse::Management)
            .await
            .map_err(|e| match e {
                TokenError::Expired => ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "token_expired",
                    "the token has expired",
                ),
                TokenError::Invalid(_) => ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "the token is not valid",
                ),
                // RFC 6750's insufficient_scope: a good token, from the wrong client.
                TokenError::WrongUse(_) => ApiError::new(
                    StatusCode::FORBIDDEN,
                    "wrong_token",
                    "this token is not for the management API; sign in with the household \
                     management client",
                ),
                TokenError::Unavailable(why) => {
                    tracing::error!(error = %why, "token verification unavailable");
                    ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "unavailable",
                        "token verification is temporarily unavailable",
                    )
                }
            })?;
        if !identity.admin {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "only the household admin can manage voice codes",
            ));
        }
        if let Some(p) = &svc.provisioning {
            p.ensure(&identity.account, sync_deadline())
                .await
                .map_err(sync_failure)?;
        }
        Ok(Admin(identity))
    }
}

fn sync_deadline() -> crate::common::deadline::Deadline {
    crate::common::deadline::Deadline::after(std::time::Duration::from_secs(3))
}

fn sync_failure(e: crate::domain::provisioning::SyncError) -> ApiError {
    match e {
        crate::domain::provisioning::SyncError::Store(e) => e.into(),
        e @ crate::domain::provisioning::SyncError::MemberName { .. } => ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("{e}; rename them at the panel, then sync again"),
        ),
        crate::domain::provisioning::SyncError::Panel(e) => {
            tracing::error!(error = %e, "could not load the household's members from the panel cloud");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "panel_unavailable",
                "the household's members could not be loaded from the panel cloud; retry",
            )
        }
    }
}

/// `POST /v1/household/members/sync`: takes the members from the panel cloud again now.
async fn sync_members(State(svc): State<Svc>, Admin(who): Admin) -> Result<Json<Value>, ApiError> {
    let Some(p) = &svc.provisioning else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "members are not provisioned from the panel cloud here",
        ));
    };
    // Removing a member is a deletion like any other: a recent sign-in, the rolling limit (one
    // per member, in the sync's own write), a notice, and the sync's audit lines. Asked of every
    // removal whatever the member holds: asking only where codes go would tell that a member the
    // app shows without a voice PIN has a duress PIN. A sync that removes no one needs nothing.
    enum Refused {
        SignIn,
        Limit,
    }
    let recent = svc.require_recent_sign_in(&who).is_ok();
    let now = svc.clock.now();
    let mut removed_names = vec![];
    let outcome = p
        .sync_checked(&who.account, sync_deadline(), |profile, removed| {
            if !recent {
                return Err(Refused::SignIn);
            }
            if !svc.step_up.take_deletions(profile, now, removed.len()) {
                return Err(Refused::Limit);
            }
            removed_names = removed.iter().map(|m| m.name.clone()).collect();
            Ok(())
        })
        .await
        .map_err(sync_failure)?;
    match outcome {
        Ok(outcome) => {
            if !outcome.removed.is_empty() {
                for name in &removed_names {
                    svc.notify_codes_changed(&who.account, name).await;
                }
            }
            Ok(Json(json!(outcome)))
        }
        Err(Refused::SignIn) => Err(svc.reauthentication_required()),
        Err(Refused::Limit) => Err(svc.deletions_refused(&who.account).await),
    }
}

/// Parses a JSON object body. Messages name fields only: a value (a PIN) is never echoed.
/// The body as a JSON object with none but the route's `fields`: a field it doesn't take (a
/// misspelt setting, say) is refused, never silently ignored, as the OpenAPI file's
/// `additionalProperties: false` says.
fn object(body: &Bytes, fields: &[&str]) -> Result<serde_json::Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) if m.keys().all(|k| fields.contains(&k.as_str())) => Ok(m),
        Ok(Value::Object(_)) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("the body takes only {}", fields.join(", ")),
        )),
        _ => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the body must be a JSON object",
        )),
    }
}

fn string_field(m: &serde_json::Map<String, Value>, key: &str) -> Result<String, ApiError> {
    match m.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        _ => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("field {key} must be a string"),
        )),
    }
}

/// What the members route shows. Deliberately without any sign of a duress PIN: a coercer
/// holding the admin's phone must not learn that one exists.
#[derive(Serialize)]
struct MemberView {
    id: String,
    name: String,
    user_number: u16,
    has_voice_pin: bool,
}

impl From<&Member> for MemberView {
    fn from(m: &Member) -> Self {
        MemberView {
            id: m.id.clone(),
            name: m.name.clone(),
            user_number: m.user_number,
            has_voice_pin: m.voice_pin.is_some(),
        }
    }
}

const SAVE_ATTEMPTS: usize = 3;

impl ManagementService {
    /// A code change needs a sign-in at most [`StepUp::max_age`] old. The token's times are
    /// checked against the wall clock, as its `exp` is. A token without `auth_time` never
    /// passes: a change that can't be shown to follow a recent sign-in is refused.
    fn require_recent_sign_in(&self, who: &Identity) -> Result<(), ApiError> {
        let max_age = self.step_up.max_age.num_seconds();
        let now = chrono::Utc::now().timestamp();
        // A little skew between the issuer's clock and ours is tolerated, no more.
        let recent = who
            .auth_time
            .is_some_and(|t| t <= now + 60 && now - t <= max_age);
        if recent {
            return Ok(());
        }
        Err(self.reauthentication_required())
    }

    /// The one refusal of every change that needs a recent sign-in: the same status, body and
    /// challenge whatever the change, so the question tells nothing about the codes there.
    fn reauthentication_required(&self) -> ApiError {
        let max_age = self.step_up.max_age.num_seconds();
        ApiError {
            max_age: Some(max_age),
            ..ApiError::new(
                StatusCode::UNAUTHORIZED,
                "reauthentication_required",
                format!(
                    "changing voice codes needs a sign-in within the last {} minutes; sign in \
                     again and retry",
                    max_age / 60
                ),
            )
        }
    }

    /// The deletion limit is reached: audited (without what was to be deleted) and 429.
    async fn deletions_refused(&self, household: &str) -> ApiError {
        let hours = self.step_up.deletions.window.num_hours();
        let entry = self.entry(
            "admin",
            format!("Voice code deletion refused: too many deletions in the last {hours} hours"),
        );
        if let Err(e) = self.audit_refusal(household, &entry).await {
            return e;
        }
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "too many deletions; try again later",
        )
    }

    /// The audit line of a refused (429) request: repeats within [`REFUSAL_AUDIT_WINDOW`] count
    /// on one line, so nobody holding the admin's phone can grow the log by asking again. The
    /// same line whatever codes the household has.
    async fn audit_refusal(&self, household: &str, entry: &AuditEntry) -> Result<(), ApiError> {
        self.store
            .append_refusal(household, entry, REFUSAL_AUDIT_WINDOW)
            .await
            .map_err(ApiError::from)
    }

    /// A deletion (of a code, or of a member with their codes): counted against the rolling
    /// deletion limit in the same write as `change`, whether or not there was a code to delete;
    /// 429 and audited when the limit is reached.
    async fn delete_counted(
        &self,
        household: &str,
        mut change: impl FnMut(&mut Profile) -> Result<String, ApiError>,
    ) -> Result<(), ApiError> {
        let now = self.clock.now();
        let mut limited = false;
        let result = self
            .update_profile(household, |p| {
                limited = !self.step_up.take_deletions(p, now, 1);
                if limited {
                    // Replaced by the audited refusal below.
                    return Err(ApiError::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        "rate_limited",
                        "",
                    ));
                }
                change(p)
            })
            .await;
        if limited {
            return Err(self.deletions_refused(household).await);
        }
        result
    }

    /// Tells the household, through the panel cloud's app notifications, that voice codes
    /// changed: the same words for any kind of code, set, replaced or deleted. The change
    /// stands whether or not the notice gets through.
    async fn notify_codes_changed(&self, household: &str, name: &str) {
        let message = format!(
            "The household admin changed {name}'s voice codes. If that wasn't you or someone \
             you trust, check the members' codes in the app."
        );
        self.notify(household, CODES_CHANGED_NOTICE, message).await;
    }

    async fn notify(&self, household: &str, kind: &str, message: String) {
        let Some(p) = &self.provisioning else {
            return;
        };
        let notice = crate::domain::ports::panel::Notice {
            kind: kind.to_string(),
            message,
        };
        if let Err(e) = p
            .panels
            .notify(
                household,
                &notice,
                crate::common::deadline::Deadline::after(std::time::Duration::from_secs(2)),
            )
            .await
        {
            tracing::warn!(error = %e, kind, "could not notify the household of a change");
        }
    }

    fn entry(&self, actor: &str, message: String) -> AuditEntry {
        AuditEntry {
            at: self.clock.now(),
            actor: actor.to_string(),
            message,
        }
    }

    /// Read-modify-write of the profile with optimistic concurrency. `change` returns the audit
    /// message on success.
    async fn update_profile(
        &self,
        household: &str,
        mut change: impl FnMut(&mut Profile) -> Result<String, ApiError>,
    ) -> Result<(), ApiError> {
        self.update_profile_keyed(household, false, |profile, _| change(profile))
            .await
    }

    /// [`Self::update_profile`] for a change that computes HMACs (`hashes`): it gets, for each
    /// read of the profile, the keyring for that profile's stored codes
    /// ([`crate::domain::voice_codes::KeyringSource::for_profile`]), before any code is looked at. The
    /// re-read depends on the stored codes and the keyring's age only, never on the code being
    /// enrolled or its kind.
    async fn update_profile_keyed(
        &self,
        household: &str,
        hashes: bool,
        mut change: impl FnMut(&mut Profile, &Keyring) -> Result<String, ApiError>,
    ) -> Result<(), ApiError> {
        for _ in 0..SAVE_ATTEMPTS {
            let mut profile = self.store.household(household).await?.profile;
            let keyring = match &self.keyring_source {
                Some(source) if hashes => source.for_profile(&profile).await,
                _ => self.keyring.clone(),
            };
            let message = change(&mut profile, &keyring)?;
            match self.store.save_profile(household, &profile).await {
                Ok(_) => {
                    self.store
                        .append_audit(household, &self.entry("admin", message))
                        .await?;
                    return Ok(());
                }
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Conflict.into())
    }

    async fn set_code(
        &self,
        household: &str,
        member_id: &str,
        kind: CodeKind,
        pin: Pin,
    ) -> Result<String, ApiError> {
        let now = self.clock.now();
        let key = format!("enrol#{household}");
        let allowed = self
            .store
            .take_rate_token(&key, now, self.enrol_limit.window, self.enrol_limit.max)
            .await?;
        if !allowed {
            let entry = self.entry(
                "admin",
                "Voice code change refused: too many changes this hour".into(),
            );
            self.audit_refusal(household, &entry).await?;
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                "too many voice code changes; try again later",
            ));
        }
        let mut rejected: Option<(EnrolError, String)> = None;
        let mut changed = String::new();
        let result = self
            .update_profile_keyed(household, true, |profile, keyring| {
                let name = profile
                    .member(member_id)
                    .map(|m| m.name.clone())
                    .ok_or_else(|| {
                        ApiError::new(StatusCode::NOT_FOUND, "no_such_member", "no such member")
                    })?;
                if let Err(e) = check_new_code(keyring, household, profile, member_id, kind, &pin) {
                    rejected = Some((e, name));
                    return Err(ApiError::new(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        "rejected",
                        e.to_string(),
                    ));
                }
                let hash = hash_code(keyring, household, member_id, &pin);
                if let Some(m) = profile.member_mut(member_id) {
                    *m.code_mut(kind) = Some(hash);
                }
                let message = format!("Admin changed {name}'s voice codes");
                changed = name;
                Ok(message)
            })
            .await;
        if let Some((e, name)) = rejected {
            // Audited without the code, the rule, or the member it collided with.
            self.store
                .append_audit(
                    household,
                    &self.entry(
                        "admin",
                        format!("Admin's voice code change for {name} was rejected"),
                    ),
                )
                .await?;
            let code = match e {
                EnrolError::Format | EnrolError::FormatLong => "invalid_format",
                EnrolError::TooCommon => "too_common",
                EnrolError::TooSimilar => "too_similar",
            };
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                code,
                e.to_string(),
            ));
        }
        result.map(|()| changed)
    }
}

async fn list_members(State(svc): State<Svc>, Admin(who): Admin) -> Result<Json<Value>, ApiError> {
    let profile = svc.store.household(&who.account).await?.profile;
    let members: Vec<MemberView> = profile.members.iter().map(MemberView::from).collect();
    Ok(Json(json!({ "members": members })))
}

fn valid_member_id(id: &str) -> bool {
    (1..=40).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

async fn add_member(
    State(svc): State<Svc>,
    Admin(who): Admin,
    Body(body): Body,
) -> Result<Response, ApiError> {
    let m = object(&body, &["id", "name", "user_number"])?;
    let id = string_field(&m, "id")?;
    let name = member_name(&string_field(&m, "name")?)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.to_string()))?;
    let number = m
        .get("user_number")
        .and_then(Value::as_u64)
        .filter(|n| (1..=999).contains(n))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "user_number must be 1-999",
            )
        })? as u16;
    if !valid_member_id(&id) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "id must be 1-40 of [a-z0-9-]",
        ));
    }
    svc.update_profile(&who.account, |p| {
        if p.members
            .iter()
            .any(|x| x.id == id || x.user_number == number)
        {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "member_exists",
                "a member with this id or user number exists",
            ));
        }
        p.members.push(Member {
            id: id.clone(),
            name: name.clone(),
            user_number: number,
            panel_user_id: None,
            voice_pin: None,
            duress_pin: None,
        });
        Ok(format!("Admin added member {name}"))
    })
    .await?;
    Ok((StatusCode::CREATED, Json(json!({"id": id}))).into_response())
}

async fn remove_member(
    State(svc): State<Svc>,
    Admin(who): Admin,
    JsonPath(id): JsonPath<String>,
) -> Result<StatusCode, ApiError> {
    // A member goes with their codes: a deletion like any other.
    svc.require_recent_sign_in(&who)?;
    let mut name = String::new();
    svc.delete_counted(&who.account, |p| {
        let idx = p.members.iter().position(|m| m.id == id).ok_or_else(|| {
            ApiError::new(StatusCode::NOT_FOUND, "no_such_member", "no such member")
        })?;
        let gone = p.members.remove(idx);
        name = gone.name.clone();
        Ok(format!("Admin removed member {}", gone.name))
    })
    .await?;
    svc.notify_codes_changed(&who.account, &name).await;
    Ok(StatusCode::NO_CONTENT)
}

fn kind_of(slot: &str) -> Result<CodeKind, ApiError> {
    match slot {
        "voice-pin" => Ok(CodeKind::Normal),
        "duress-pin" => Ok(CodeKind::Duress),
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such route",
        )),
    }
}

async fn put_code(
    State(svc): State<Svc>,
    Admin(who): Admin,
    JsonPath((id, slot)): JsonPath<(String, String)>,
    Body(body): Body,
) -> Result<StatusCode, ApiError> {
    let kind = kind_of(&slot)?;
    svc.require_recent_sign_in(&who)?;
    let pin = Pin::new(string_field(&object(&body, &["pin"])?, "pin")?);
    let name = svc.set_code(&who.account, &id, kind, pin).await?;
    svc.notify_codes_changed(&who.account, &name).await;
    Ok(StatusCode::NO_CONTENT)
}

async fn delete_code(
    State(svc): State<Svc>,
    Admin(who): Admin,
    JsonPath((id, slot)): JsonPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let kind = kind_of(&slot)?;
    svc.require_recent_sign_in(&who)?;
    let mut name = String::new();
    svc.delete_counted(&who.account, |p| {
        let m = p.member_mut(&id).ok_or_else(|| {
            ApiError::new(StatusCode::NOT_FOUND, "no_such_member", "no such member")
        })?;
        *m.code_mut(kind) = None;
        name = m.name.clone();
        Ok(format!("Admin changed {}'s voice codes", m.name))
    })
    .await?;
    svc.notify_codes_changed(&who.account, &name).await;
    Ok(StatusCode::NO_CONTENT)
}

fn lockout_view(
    policy: &ThrottlePolicy,
    t: &Throttle,
    now: chrono::DateTime<chrono::Utc>,
) -> Value {
    let locked = matches!(policy.gate(t, now), Gate::Locked { .. });
    json!({
        "consecutive_failures": t.consecutive_failures,
        "locked": locked,
        "locked_until": if locked { t.locked_until } else { None },
        "hard_locked": t.hard_locked,
    })
}

async fn get_lockout(State(svc): State<Svc>, Admin(who): Admin) -> Result<Json<Value>, ApiError> {
    let t = svc.store.household(&who.account).await?.throttle;
    Ok(Json(lockout_view(&svc.throttle, &t, svc.clock.now())))
}

async fn reset_lockout(State(svc): State<Svc>, Admin(who): Admin) -> Result<Json<Value>, ApiError> {
    // It opens guessing again: the phone alone must not be enough.
    svc.require_recent_sign_in(&who)?;
    for _ in 0..SAVE_ATTEMPTS {
        let current = svc.store.household(&who.account).await?.throttle;
        let cleared = Throttle {
            version: current.version,
            ..Throttle::default()
        };
        let entry = svc.entry("admin", "Admin reset the voice disarm lockout".into());
        match svc
            .store
            .record_attempt(
                &who.account,
                ThrottleWrite::Set(&cleared),
                None,
                std::slice::from_ref(&entry),
            )
            .await
        {
            Ok(()) => {
                let message =
                    format!("The household admin reset the voice disarm lockout. {NOT_YOU}");
                svc.notify(&who.account, LOCKOUT_RESET_NOTICE, message)
                    .await;
                return Ok(Json(lockout_view(&svc.throttle, &cleared, svc.clock.now())));
            }
            Err(StoreError::Conflict) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(StoreError::Conflict.into())
}

#[derive(Deserialize)]
struct AuditQuery {
    limit: Option<usize>,
}

async fn get_audit(
    State(svc): State<Svc>,
    Admin(who): Admin,
    JsonQuery(q): JsonQuery<AuditQuery>,
) -> Result<Json<Value>, ApiError> {
    // The documented range; a value outside it is the client's mistake, not a request for the
    // nearest one.
    let limit = match q.limit {
        None => 50,
        Some(n @ 1..=500) => n,
        Some(_) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "limit is a whole number from 1 to 500",
            ));
        }
    };
    let entries = svc.store.audit(&who.account, limit).await?;
    Ok(Json(json!({ "entries": entries })))
}

fn settings_json(settings: &crate::domain::voice_codes::HouseholdSettings) -> Value {
    json!({
        "pinless_disarm": settings.pinless_disarm,
        "google_enabled": settings.google_enabled,
    })
}

async fn get_settings(State(svc): State<Svc>, Admin(who): Admin) -> Result<Json<Value>, ApiError> {
    let p = svc.store.household(&who.account).await?.profile;
    Ok(Json(settings_json(&p.settings)))
}

/// Either setting, or both; one left out stays as it is.
async fn put_settings(
    State(svc): State<Svc>,
    Admin(who): Admin,
    Body(body): Body,
) -> Result<Json<Value>, ApiError> {
    let m = object(&body, &["pinless_disarm", "google_enabled"])?;
    let bad =
        |message: &'static str| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message);
    let policy: Option<PinlessPolicy> = match m.get("pinless_disarm") {
        None => None,
        Some(v) => Some(serde_json::from_value(v.clone()).map_err(|_| {
            bad("pinless_disarm must be refuse_when_codes_enrolled, refuse or allow")
        })?),
    };
    let google = match m.get("google_enabled") {
        None => None,
        Some(Value::Bool(b)) => Some(*b),
        Some(_) => return Err(bad("google_enabled must be true or false")),
    };
    if policy.is_none() && google.is_none() {
        return Err(bad("give pinless_disarm, google_enabled or both"));
    }
    let mut after = None;
    let mut weakened = false;
    svc.update_profile(&who.account, |p| {
        let mut changed = vec![];
        if let Some(policy) = policy {
            // More disarms without a code: a weakening, under the rule of code changes. A
            // change the other way, or none, needs nothing more than the admin.
            weakened = policy.weaker_than(p.settings.pinless_disarm);
            if weakened {
                svc.require_recent_sign_in(&who)?;
            }
            p.settings.pinless_disarm = policy;
            changed.push("the policy for disarming without a voice code");
        }
        if let Some(g) = google {
            p.settings.google_enabled = g;
            changed.push(if g {
                "Google Assistant on (voice codes of 4 to 8 digits)"
            } else {
                "Google Assistant off (new voice codes are 4 digits)"
            });
        }
        after = Some(p.settings.clone());
        Ok(format!("Admin changed {}", changed.join(" and ")))
    })
    .await?;
    if weakened {
        let message = format!(
            "The household admin let more voice disarms through without a voice code. {NOT_YOU}"
        );
        svc.notify(&who.account, PINLESS_WEAKENED_NOTICE, message)
            .await;
    }
    Ok(Json(after.as_ref().map(settings_json).unwrap_or_default()))
}

pub fn routes(svc: Arc<ManagementService>) -> Router {
    Router::new()
        .route("/v1/household/members", get(list_members).post(add_member))
        .route("/v1/household/members/sync", post(sync_members))
        .route("/v1/household/members/{id}", delete(remove_member))
        .route(
            "/v1/household/members/{id}/{slot}",
            put(put_code).delete(delete_code),
        )
        .route("/v1/household/lockout", get(get_lockout))
        .route("/v1/household/lockout/reset", post(reset_lockout))
        .route("/v1/household/audit", get(get_audit))
        .route(
            "/v1/household/settings",
            get(get_settings).put(put_settings),
        )
        // Everything below answers in the API's JSON error shape, never the framework's text.
        .route(
            "/v1/household/{*rest}",
            any(crate::common::http_errors::not_found),
        )
        .method_not_allowed_fallback(crate::common::http_errors::method_not_allowed)
        .layer(DefaultBodyLimit::max(
            crate::common::http_errors::MANAGEMENT_BODY_LIMIT,
        ))
        .with_state(svc)
}
