//! The JSON error shape `{"error": code, "message": text}` for what the web framework itself
//! would reject as plain text or an empty body: a query string, a path or a body it can't take,
//! a method the route doesn't serve, a path no route serves. The management API and the Google
//! fulfillment route use these instead of axum's own extractors and fallbacks, so every error
//! a client sees has the documented shape. Messages are fixed: they never echo the input.
//!
//! [`json_errors`] wraps each server's whole router (the http-api function's, the local
//! stack's, the reference panel cloud's): a JSON 404 and 405 for what no route serves, and the
//! JSON shape for any plain-text rejection left (an extractor this module doesn't wrap, such as
//! a form over the body limit), so no route of any binary answers an error as text.

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
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

/// The status, code and message for a body that could not be read: 413 `payload_too_large`
/// over the route's limit, otherwise 400 `bad_request`. A route whose documented error shape
/// is not [`error`]'s (the panel webhook's) answers these in its own.
pub fn body_rejection(e: &BytesRejection) -> (StatusCode, &'static str, &'static str) {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the body is too large",
        )
    } else {
        (
            StatusCode::BAD_REQUEST,
            "bad_request",
            "the body could not be read",
        )
    }
}

/// The raw body, or the JSON error: 413 `payload_too_large` over the route's limit.
pub struct Body(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for Body {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        Bytes::from_request(req, state)
            .await
            .map(Body)
            .map_err(|e| {
                let (status, code, message) = body_rejection(&e);
                error(status, code, message)
            })
    }
}

/// A JSON body of type `T`, or the JSON error: 413 `payload_too_large` over the limit, and one
/// 400 `bad_request` for every other body it can't take (not labelled `application/json`, not
/// JSON, or not of `T`'s shape), where axum's `Json` would answer 415, 422 or 400 in text.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Response> {
        let labelled = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
        let Body(bytes) = Body::from_request(req, state).await?;
        if !labelled {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "the body must be JSON, sent as Content-Type: application/json",
            ));
        }
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|_| {
            error(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "the body is not JSON of the documented shape",
            )
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
    "the query string is not valid (limit is a whole number from 1 to 500)"
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

/// `router` with a JSON 404 for every path it doesn't serve, a JSON 405 for every route asked
/// with a method it doesn't serve (axum keeps the `Allow` header), and any plain-text error
/// left in the JSON shape. Applied last, to the whole router a server serves: a route merged
/// after it would keep axum's empty 405.
pub fn json_errors(router: Router) -> Router {
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::map_response(plain_text_as_json))
}

/// A plain-text error (what axum's own extractors answer) as the JSON shape, status and other
/// headers kept; the text itself is dropped, since it may quote the input.
async fn plain_text_as_json(response: Response) -> Response {
    let status = response.status();
    let plain = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain"));
    if !plain || !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let (code, message) = match status {
        StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "the body is too large"),
        StatusCode::NOT_FOUND => ("not_found", "no such route"),
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            "this route does not serve that method",
        ),
        s if s.is_server_error() => ("internal", "the request could not be served"),
        _ => ("bad_request", "the request could not be read"),
    };
    let (mut parts, _) = response.into_parts();
    let json = error(status, code, message);
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, json.into_body())
}
