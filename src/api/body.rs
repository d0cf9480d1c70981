//! `JsonBody<T>`: a JSON request body like poem-openapi's `Json<T>`, with a size limit and
//! errors that name the offending field by its path (`options.max_age_days`,
//! `mailboxes[3].user1`) and never repeat the value that was sent.

use poem::{Request, RequestBody};
use poem_openapi::{
    ApiExtractor, ApiExtractorType, ExtractParamOptions,
    payload::{ParsePayload, Payload},
    registry::{MetaMediaType, MetaRequest, MetaSchema, MetaSchemaRef, Registry},
    types::{ParseFromJSON, Type},
};
use serde_json::Value;

use super::error::{ApiError, ErrorDetail, redact_values};

/// Largest JSON body accepted.
pub const MAX_JSON: usize = 8 * 1024 * 1024;

pub struct JsonBody<T>(pub T);

impl<T: Type> Payload for JsonBody<T> {
    const CONTENT_TYPE: &'static str = "application/json; charset=utf-8";

    fn check_content_type(content_type: &str) -> bool {
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        essence == "application/json"
            || (essence.starts_with("application/") && essence.ends_with("+json"))
    }

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: ParseFromJSON> ParsePayload for JsonBody<T> {
    const IS_REQUIRED: bool = T::IS_REQUIRED;

    async fn from_request(_request: &Request, body: &mut RequestBody) -> poem::Result<Self> {
        let bytes = body
            .take()?
            .into_bytes_limit(MAX_JSON)
            .await
            .map_err(|_| ApiError::payload_too_large(MAX_JSON))?;
        let value: Value = if bytes.is_empty() {
            Value::Null
        } else {
            // serde_json's syntax errors name a position, not a value.
            serde_json::from_slice(&bytes).map_err(|e| {
                ApiError::bad_request(format!("the request body is not valid JSON: {e}"))
            })?
        };
        match T::parse_from_json(Some(value.clone())) {
            Ok(parsed) => Ok(Self(parsed)),
            Err(e) => {
                let mut registry = Registry::new();
                T::register(&mut registry);
                let mut details = Vec::new();
                walk(&registry, &T::schema_ref(), &value, "", &mut details);
                if details.is_empty() {
                    details.push(ErrorDetail {
                        field: "body".into(),
                        line: None,
                        message: redact_values(e.message()),
                    });
                }
                Err(ApiError::validation(details).into())
            }
        }
    }
}

/// Like poem-openapi's payload extractor, except that an optional body may be left out
/// altogether (no `Content-Type`, no bytes).
impl<'a, T: ParseFromJSON> ApiExtractor<'a> for JsonBody<T> {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];

    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        <Self as Payload>::register(registry);
    }

    fn request_meta() -> Option<MetaRequest> {
        Some(MetaRequest {
            description: None,
            content: vec![MetaMediaType {
                content_type: <Self as Payload>::CONTENT_TYPE,
                schema: <Self as Payload>::schema_ref(),
            }],
            required: <Self as ParsePayload>::IS_REQUIRED,
        })
    }

    async fn from_request(
        request: &'a Request,
        body: &mut RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        match request.content_type() {
            Some(ct) if <Self as Payload>::check_content_type(ct) => {
                <Self as ParsePayload>::from_request(request, body).await
            }
            None if !T::IS_REQUIRED => <Self as ParsePayload>::from_request(request, body).await,
            _ => Err(ApiError::new(
                poem::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the body as application/json",
            )
            .into()),
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn resolve<'a>(registry: &'a Registry, schema: &'a MetaSchemaRef) -> Option<&'a MetaSchema> {
    match schema {
        MetaSchemaRef::Inline(s) => Some(s),
        MetaSchemaRef::Reference(name) => registry
            .schemas
            .get(name.trim_start_matches("#/components/schemas/")),
    }
}

/// The ways `value` does not fit `schema`, each at its path. Request objects here deny
/// unknown fields, so a property not in an object's schema is reported too.
fn walk(
    registry: &Registry,
    schema: &MetaSchemaRef,
    value: &Value,
    path: &str,
    out: &mut Vec<ErrorDetail>,
) {
    const MAX_DETAILS: usize = 100;
    if out.len() >= MAX_DETAILS || value.is_null() {
        return;
    }
    let Some(schema) = resolve(registry, schema) else {
        return;
    };
    // A described reference is `allOf: [$ref]` plus the description.
    for part in &schema.all_of {
        walk(registry, part, value, path, out);
    }
    let field = if path.is_empty() { "body" } else { path };
    let mut fail = |message: String| {
        out.push(ErrorDetail {
            field: field.to_string(),
            line: None,
            message,
        })
    };
    match schema.ty {
        "object" if !schema.properties.is_empty() || !schema.required.is_empty() => {
            let Some(obj) = value.as_object() else {
                return fail("must be an object".into());
            };
            for name in &schema.required {
                if obj.get(*name).is_none_or(Value::is_null) {
                    out.push(ErrorDetail {
                        field: join(path, name),
                        line: None,
                        message: "is required".into(),
                    });
                }
            }
            for (key, v) in obj {
                match schema.properties.iter().find(|(n, _)| n == key) {
                    Some((_, prop)) => walk(registry, prop, v, &join(path, key), out),
                    None => out.push(ErrorDetail {
                        field: join(path, &key.chars().take(64).collect::<String>()),
                        line: None,
                        message: "is not a known field".into(),
                    }),
                }
            }
        }
        "object" if !value.is_object() => fail("must be an object".into()),
        "array" => {
            let Some(items) = value.as_array() else {
                return fail("must be an array".into());
            };
            if let Some(item) = &schema.items {
                for (i, v) in items.iter().enumerate() {
                    walk(registry, item, v, &format!("{path}[{i}]"), out);
                }
            }
        }
        "string" => match value.as_str() {
            None => fail("must be a string".into()),
            Some(s) if !schema.enum_items.is_empty() => {
                if !schema.enum_items.iter().any(|e| e.as_str() == Some(s)) {
                    let allowed: Vec<String> =
                        schema.enum_items.iter().map(|e| e.to_string()).collect();
                    fail(format!("must be one of {}", allowed.join(", ")));
                }
            }
            Some(s) if schema.format == Some("date-time") => {
                if chrono::DateTime::parse_from_rfc3339(s).is_err() {
                    fail("must be an RFC 3339 date-time such as 2030-01-31T12:00:00Z".into());
                }
            }
            Some(_) => {}
        },
        "integer" => {
            let ok = match schema.format {
                Some("uint32") => value.as_u64().is_some_and(|n| n <= u32::MAX as u64),
                Some("uint64") => value.as_u64().is_some(),
                Some("int32") => value.as_i64().is_some_and(|n| i32::try_from(n).is_ok()),
                _ => value.as_i64().is_some() || value.as_u64().is_some(),
            };
            if !ok {
                let range = match schema.format {
                    Some("uint32") => format!(" from 0 to {}", u32::MAX),
                    Some("uint64") => " of 0 or more".into(),
                    Some("int32") => format!(" from {} to {}", i32::MIN, i32::MAX),
                    _ => String::new(),
                };
                fail(format!("must be an integer{range}"));
            }
        }
        "number" if !value.is_number() => fail("must be a number".into()),
        "boolean" if !value.is_boolean() => fail("must be true or false".into()),
        _ => {}
    }
}
