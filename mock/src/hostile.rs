//! Routes only the adversarial tests use (cargo feature `hostile`, which nothing that ships
//! enables): a redirect to anywhere the caller names, and an oversized answer.

use axum::Router;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use serde::Deserialize;

pub(crate) fn router() -> Router {
    Router::new().route("/__mock/redirect", get(redirect)).route("/__mock/big", get(big))
}

#[derive(Deserialize)]
struct RedirectTo {
    to: String,
}

/// `?to=URL`: a 302 to it.
async fn redirect(Query(q): Query<RedirectTo>) -> impl IntoResponse {
    (StatusCode::FOUND, [("location", q.to)])
}

/// 8 MiB of bytes, for response-size caps.
async fn big() -> impl IntoResponse {
    vec![b'x'; 8 * 1024 * 1024]
}
