//! `web::Error`: every way an HTML request can fail, mapped to a status in one place and
//! rendered as an error page carrying the request id.

use std::time::Duration;

use poem::{IntoResponse, Response, http::StatusCode};

use crate::service::ServiceError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("page not found")]
    NotFound,
    #[error("you are not allowed to do this")]
    Forbidden,
    #[error("your form expired or did not come from this site; reload the page and try again")]
    Csrf,
    #[error("{0}")]
    BadRequest(String),
    #[error("too many attempts; try again in {} minutes", .0.as_secs().div_ceil(60).max(1))]
    Throttled(Duration),
    #[error("service temporarily unavailable")]
    Unavailable,
    /// Logged with its context; the client only sees a generic message and the request id.
    #[error("internal error")]
    Internal(String),
}

impl Error {
    pub fn status(&self) -> StatusCode {
        match self {
            Error::NotFound => StatusCode::NOT_FOUND,
            Error::Forbidden | Error::Csrf => StatusCode::FORBIDDEN,
            Error::BadRequest(_) => StatusCode::BAD_REQUEST,
            Error::Throttled(_) => StatusCode::TOO_MANY_REQUESTS,
            Error::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<ServiceError> for Error {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::NotFound => Error::NotFound,
            ServiceError::Forbidden => Error::Forbidden,
            ServiceError::Invalid { .. }
            | ServiceError::InvalidMany(_)
            | ServiceError::Conflict(_) => Error::BadRequest(e.to_string()),
            ServiceError::InvalidCredentials => Error::BadRequest(e.to_string()),
            ServiceError::Throttled { retry_after } => Error::Throttled(retry_after),
            ServiceError::Db(db) => Error::Internal(format!("database: {db}")),
            ServiceError::Internal(msg) => Error::Internal(msg),
        }
    }
}

/// Handlers return `poem::Error`; this keeps our variant inside it so the outer layer can
/// render the page.
impl poem::error::ResponseError for Error {
    fn status(&self) -> StatusCode {
        Error::status(self)
    }

    fn as_response(&self) -> Response {
        // Only reached when nothing rendered it (the context middleware normally does).
        self.to_string().with_status(self.status()).into_response()
    }
}
