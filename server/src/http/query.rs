//! `GET|POST /query`: placeholder until the query endpoint lands (the lead replaces this
//! file). Answers 501 so clients get a clear error instead of a 404.

use axum::response::{IntoResponse, Response};

use super::ApiError;

pub async fn query_handler() -> Response {
    ApiError::NotImplemented("the query endpoint is not implemented yet".into()).into_response()
}
