//! `ApiError`: every way an API request can fail, mapped to a status and a stable `code`
//! in one place, and rendered as the one error body `{code, message, request_id,
//! details[]}`. Internal errors are logged with their context; the client sees a generic
//! message and the request id to quote.

use poem::{IntoResponse, Response, http::StatusCode};
use poem_openapi::{
    ApiResponse, Object,
    error::{
        AuthorizationError, ContentTypeError, ParseMultipartError, ParseParamError, ParsePathError,
        ParseRequestPayloadError,
    },
    registry::{MetaMediaType, MetaResponse, MetaResponses, Registry},
    types::Type,
};

use crate::service::{FieldError, ServiceError};

/// One problem with one input: `field` is a path into the request (`batch`,
/// `mailboxes[2].user1`, `options.max_age_days`, a query parameter), `line` the 1-based
/// batch line when the problem is in a batch.
#[derive(Clone, Debug, PartialEq, Eq, Object)]
pub struct ErrorDetail {
    pub field: String,
    pub line: Option<u64>,
    pub message: String,
}

/// The body of every error response.
#[derive(Clone, Debug, Object)]
pub struct ErrorBody {
    /// Stable machine-readable code: `bad_request`, `validation_failed`, `unauthorized`,
    /// `forbidden`, `csrf_failed`, `not_found`, `method_not_allowed`, `conflict`,
    /// `payload_too_large`, `unsupported_media_type`, `throttled`, `internal`,
    /// `not_implemented`, `unavailable`.
    pub code: String,
    /// Human-readable explanation; never contains a password.
    pub message: String,
    /// Quote this when reporting a problem; it is in the server log too.
    pub request_id: String,
    pub details: Vec<ErrorDetail>,
}

#[derive(Clone, Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Vec<ErrorDetail>,
    /// Logged with the request id, never sent.
    pub internal: Option<String>,
    pub retry_after: Option<u64>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl std::error::Error for ApiError {}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: Vec::new(),
            internal: None,
            retry_after: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "authentication required: send `Authorization: Bearer <token>` or a session cookie",
        )
    }

    pub fn invalid_token() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the token is unknown, revoked or expired, or its user is disabled",
        )
    }

    pub fn forbidden() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "you are not allowed to do this",
        )
    }

    pub fn csrf() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "csrf_failed",
            "requests authenticated by the session cookie must send the X-CSRF-Token header \
             (its value is `csrf_token` in GET /api/v1/me)",
        )
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "not found")
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    pub fn payload_too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!(
                "the request body is larger than {} MiB",
                limit / 1024 / 1024
            ),
        )
    }

    pub fn not_implemented(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_IMPLEMENTED, "not_implemented", message)
    }

    pub fn internal(context: impl Into<String>) -> Self {
        Self {
            internal: Some(context.into()),
            ..Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error; quote the request id when reporting it",
            )
        }
    }

    /// Validation problems, each with its field (and batch line).
    pub fn validation(details: Vec<ErrorDetail>) -> Self {
        let message = match details.as_slice() {
            [one] => match one.line {
                Some(line) => format!("{} (line {line}): {}", one.field, one.message),
                None => format!("{}: {}", one.field, one.message),
            },
            many => format!("{} problems; see details", many.len()),
        };
        Self {
            details,
            ..Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                message,
            )
        }
    }

    /// One invalid field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::validation(vec![ErrorDetail {
            field: field.into(),
            line: None,
            message: message.into(),
        }])
    }

    fn body(&self, request_id: &str) -> ErrorBody {
        ErrorBody {
            code: self.code.to_string(),
            message: self.message.clone(),
            request_id: request_id.to_string(),
            details: self.details.clone(),
        }
    }

    /// The response for this error. Internal errors are logged here, once.
    pub fn into_response_with(self, request_id: &str) -> Response {
        if let Some(context) = &self.internal {
            tracing::error!(error = %context, "API request failed");
        }
        let mut resp = poem_openapi::payload::Json(self.body(request_id)).into_response();
        resp.set_status(self.status);
        let headers = resp.headers_mut();
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                "www-authenticate",
                "Bearer realm=\"pymap\"".parse().expect("static header"),
            );
        }
        if let Some(secs) = self.retry_after {
            headers.insert("retry-after", secs.into());
        }
        resp
    }
}

impl From<FieldError> for ErrorDetail {
    fn from(e: FieldError) -> Self {
        Self {
            field: e.field,
            line: e.line.map(|l| l as u64),
            message: e.message,
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::Invalid { field, message } => ApiError::invalid(field, message),
            ServiceError::InvalidMany(errors) => {
                ApiError::validation(errors.into_iter().map(ErrorDetail::from).collect())
            }
            ServiceError::Conflict(message) => ApiError::conflict(message),
            ServiceError::NotFound => ApiError::not_found(),
            ServiceError::Forbidden => ApiError::forbidden(),
            ServiceError::InvalidCredentials => ApiError::invalid_token(),
            ServiceError::Throttled { retry_after } => ApiError {
                retry_after: Some(retry_after.as_secs().max(1)),
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "throttled",
                    ServiceError::Throttled { retry_after }.to_string(),
                )
            },
            ServiceError::Db(db) => ApiError::internal(format!("database: {db}")),
            ServiceError::Internal(context) => ApiError::internal(context),
        }
    }
}

/// Handlers return `poem::Error`s carrying an `ApiError`; the API's outer layer renders
/// them with the request id (see [`render`]).
impl poem::error::ResponseError for ApiError {
    fn status(&self) -> StatusCode {
        self.status
    }

    fn as_response(&self) -> Response {
        self.clone().into_response_with("")
    }
}

/// Documented error responses of every operation.
impl ApiResponse for ApiError {
    fn meta() -> MetaResponses {
        let statuses: [(u16, &'static str); 8] = [
            (400, "Malformed request (bad JSON, bad parameter)"),
            (401, "Missing or invalid credentials"),
            (
                403,
                "Not allowed, or missing CSRF header with a session cookie",
            ),
            (404, "No such object, or not yours to see"),
            (409, "The object is not in a state that allows this"),
            (
                422,
                "Validation failed; `details` names each field and batch line",
            ),
            (429, "Too many attempts"),
            (500, "Internal error; quote `request_id`"),
        ];
        MetaResponses {
            responses: statuses
                .into_iter()
                .map(|(status, description)| MetaResponse {
                    description,
                    status: Some(status),
                    status_range: None,
                    content: vec![MetaMediaType {
                        content_type: "application/json; charset=utf-8",
                        schema: ErrorBody::schema_ref(),
                    }],
                    headers: vec![],
                })
                .collect(),
        }
    }

    fn register(registry: &mut Registry) {
        ErrorBody::register(registry);
    }
}

/// Take out anything after `, found` in poem-openapi's type errors: it is the value the
/// client sent, and a value may be a password.
pub fn redact_values(reason: &str) -> String {
    let mut out = String::new();
    let mut rest = reason;
    while let Some(i) = rest.find(", found ") {
        out.push_str(&rest[..i]);
        let after = &rest[i + ", found ".len()..];
        match after.find(". (occurred") {
            Some(j) => rest = &after[j..],
            None => {
                out.push('.');
                rest = "";
            }
        }
    }
    out.push_str(rest);
    if out.chars().count() > 300 {
        out = out.chars().take(300).collect::<String>() + "…";
    }
    out
}

/// Any error of the API's own stack as an `ApiError`.
pub fn classify(err: &poem::Error) -> ApiError {
    if let Some(e) = err.downcast_ref::<ApiError>() {
        return e.clone();
    }
    if let Some(e) = err.downcast_ref::<ParseParamError>() {
        let mut e2 = ApiError::bad_request(format!("invalid parameter `{}`", e.name));
        e2.details.push(ErrorDetail {
            field: e.name.to_string(),
            line: None,
            message: redact_values(&e.reason),
        });
        return e2;
    }
    if let Some(e) = err.downcast_ref::<ParsePathError>() {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("not found (`{}` is not valid here)", e.name),
        );
    }
    if let Some(e) = err.downcast_ref::<ParseRequestPayloadError>() {
        return ApiError::bad_request(format!(
            "the request body is not valid: {}",
            redact_values(&e.reason)
        ));
    }
    if let Some(e) = err.downcast_ref::<ParseMultipartError>() {
        return ApiError::bad_request(format!(
            "the form is not valid: {}",
            redact_values(&e.reason)
        ));
    }
    if err.downcast_ref::<ContentTypeError>().is_some() {
        return ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "unsupported or missing Content-Type for this operation",
        );
    }
    if err.downcast_ref::<AuthorizationError>().is_some() {
        return ApiError::unauthorized();
    }
    match err.status() {
        StatusCode::NOT_FOUND => ApiError::not_found(),
        StatusCode::METHOD_NOT_ALLOWED => ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this method is not allowed on this path",
        ),
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::payload_too_large(super::MAX_BODY),
        s if s.is_server_error() => ApiError::internal(err.to_string()),
        s => ApiError::new(s, "bad_request", redact_values(&err.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sent_values_are_redacted() {
        assert_eq!(
            redact_values(
                r#"Expected input type "string", found 12345. (occurred while parsing "RetryJob")"#
            ),
            r#"Expected input type "string". (occurred while parsing "RetryJob")"#
        );
        assert_eq!(
            redact_values(r#"Expected input type "integer", found "hunter2"."#),
            r#"Expected input type "integer"."#
        );
        assert_eq!(redact_values("plain"), "plain");
    }

    #[test]
    fn service_errors_map_to_statuses() {
        let e: ApiError = ServiceError::NotFound.into();
        assert_eq!((e.status.as_u16(), e.code), (404, "not_found"));
        let e: ApiError = ServiceError::InvalidMany(vec![FieldError {
            field: "batch".into(),
            line: Some(3),
            message: "bad".into(),
        }])
        .into();
        assert_eq!(e.status.as_u16(), 422);
        assert_eq!(e.details[0].line, Some(3));
        let e: ApiError = ServiceError::Internal("secret context".into()).into();
        assert!(!e.message.contains("secret"));
    }
}
