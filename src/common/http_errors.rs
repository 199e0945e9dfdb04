//! The JSON error shape `{"error": code, "message": text}` for what the web framework itself
//! would reject as plain text or an empty body: a query string, a path or a body it can't take,
//! a method the route doesn't serve, a path no route serves. The management API and the Google
//! fulfillment route use these instead of axum's own extractors and fallbacks, so every error
//! a client sees has the documented shape. Messages are fixed: they never echo the input.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::json;

/// The management API's largest body: a PIN or a settings object is a few dozen bytes.
pub const MANAGEMENT_BODY_LIMIT: usize = 16 * 1024;

pub fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({ "error": code, "message": message })),
    )
        .into_response()
}

/// The raw body, or the JSON error: 413 `payload_too_large` over the route's limit.
pub struct Body(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        Bytes::from_request(req, state)
            .await
            .map(Body)
            .map_err(|e: BytesRejection| {
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "payload_too_large",
                        "the body is too large",
                    )
                } else {
                    error(
                        StatusCode::BAD_REQUEST,
                        "bad_request",
                        "the body could not be read",
                    )
                }
            })
    }
}

/// An axum extractor `$name<T>` wrapping `$inner<T>`, whose rejection is a 400 `bad_request`
/// with a fixed `$message` instead of axum's plain text.
macro_rules! bad_request_on_rejection {
    ($(#[$doc:meta])* $name:ident($inner:ident), $message:literal) => {
        $(#[$doc])*
        pub struct $name<T>(pub T);

        impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for $name<T> {
            type Rejection = Response;

            async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
                $inner::<T>::from_request_parts(parts, state)
                    .await
                    .map(|$inner(v)| $name(v))
                    .map_err(|_| error(StatusCode::BAD_REQUEST, "bad_request", $message))
            }
        }
    };
}

bad_request_on_rejection!(
    /// A typed query string, or 400 `bad_request`.
    JsonQuery(Query),
    "the query string is not valid (limit is a whole number)"
);

bad_request_on_rejection!(
    /// Typed path parameters, or 400 `bad_request` (e.g. a parameter that is not UTF-8).
    JsonPath(Path),
    "the path is not valid"
);

/// For a route that exists, asked with a method it doesn't serve.
pub async fn method_not_allowed() -> Response {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not serve that method",
    )
}

/// For a path under a prefix that no route serves.
pub async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "not_found", "no such route")
}
