//! Parsing query parameters and batches into service inputs, with errors that name the
//! parameter (values are echoed only when short and harmless).

use chrono::{DateTime, Utc};

use super::{
    error::{ApiError, ErrorDetail},
    model::{CreateTask, MailboxInput},
};
use crate::{
    service::{
        FieldError, ServiceError,
        query::{ArchivedFilter, SortDir, TaskSort},
        tasks::{BatchInput, NewTask},
    },
    worker::status::JobStatus,
};

/// A short, printable excerpt of a parameter value for an error message.
fn shown(v: &str) -> String {
    let s: String = v.chars().filter(|c| !c.is_control()).take(32).collect();
    if v.chars().count() > 32 {
        format!("{s}…")
    } else {
        s
    }
}

/// `status=failed,warning` (comma separated, repeatable in one value).
pub fn statuses(param: Option<&str>) -> Result<Vec<JobStatus>, ApiError> {
    let mut out = Vec::new();
    for part in param.unwrap_or_default().split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        match part.parse::<JobStatus>() {
            Ok(s) if !out.contains(&s) => out.push(s),
            Ok(_) => {}
            Err(_) => {
                let names: Vec<&str> = JobStatus::ALL.iter().map(|s| s.as_str()).collect();
                return Err(ApiError::invalid(
                    "status",
                    format!("unknown status `{}`; use {}", shown(part), names.join(", ")),
                ));
            }
        }
    }
    Ok(out)
}

/// `archived=false` (default), `true`, or `all`.
pub fn archived(param: Option<&str>) -> Result<ArchivedFilter, ApiError> {
    match param.map(str::trim) {
        None | Some("" | "false") => Ok(ArchivedFilter::Exclude),
        Some("true") => Ok(ArchivedFilter::Only),
        Some("all") => Ok(ArchivedFilter::Include),
        Some(_) => Err(ApiError::invalid("archived", "must be false, true or all")),
    }
}

pub fn sort(param: Option<&str>) -> Result<TaskSort, ApiError> {
    match param.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(TaskSort::default()),
        Some(s) => TaskSort::parse(s).ok_or_else(|| {
            let names: Vec<&str> = TaskSort::ALL.iter().map(|k| k.as_str()).collect();
            ApiError::invalid("sort", format!("must be one of {}", names.join(", ")))
        }),
    }
}

pub fn order(param: Option<&str>) -> Result<SortDir, ApiError> {
    match param.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(SortDir::default()),
        Some(s) => {
            SortDir::parse(s).ok_or_else(|| ApiError::invalid("order", "must be asc or desc"))
        }
    }
}

/// An RFC 3339 instant, or a date (`2026-11-23`, meaning its midnight UTC).
pub fn instant(field: &str, param: Option<&str>) -> Result<Option<DateTime<Utc>>, ApiError> {
    let Some(text) = param.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(Some(t.with_timezone(&Utc)));
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(Some(
            d.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc(),
        ));
    }
    Err(ApiError::invalid(
        field,
        "must be an RFC 3339 instant (2026-11-23T08:00:00Z) or a date (2026-11-23)",
    ))
}

/// A batch given as JSON `mailboxes`: the CSV it becomes, and where each entry starts in
/// it, to give errors back as `mailboxes[i]`.
pub struct MailboxBatch {
    /// First CSV line of every entry, in order.
    starts: Vec<usize>,
}

impl MailboxBatch {
    /// Index of the entry containing CSV line `line`.
    fn entry_of(&self, line: usize) -> Option<usize> {
        match self.starts.binary_search(&line) {
            Ok(i) => Some(i),
            Err(0) => None,
            Err(i) => Some(i - 1),
        }
    }

    /// Turn batch errors (`batch.user1` at CSV line 7) into `mailboxes[5].user1`, line 6.
    pub fn remap(&self, err: ServiceError) -> ServiceError {
        let ServiceError::InvalidMany(errors) = err else {
            return err;
        };
        let errors = errors
            .into_iter()
            .map(|e| match (e.line, e.field.strip_prefix("batch")) {
                (Some(line), Some(rest)) => match self.entry_of(line) {
                    Some(i) => FieldError {
                        field: format!("mailboxes[{i}]{rest}"),
                        line: Some(i + 1),
                        message: e.message,
                    },
                    None => e,
                },
                _ => e,
            })
            .collect();
        ServiceError::InvalidMany(errors)
    }

    /// The line of entry `i` as reported to the client (1-based index).
    pub fn client_line(&self, csv_line: usize) -> usize {
        self.entry_of(csv_line).map_or(csv_line, |i| i + 1)
    }
}

/// Encode JSON mailboxes as the CSV batch format (every cell quoted, so passwords are
/// taken verbatim).
pub fn mailboxes(items: Vec<MailboxInput>) -> (BatchInput, MailboxBatch) {
    let mut writer = csv::WriterBuilder::new()
        .quote_style(csv::QuoteStyle::Always)
        .from_writer(Vec::new());
    let mut starts = Vec::with_capacity(items.len());
    let header = [
        "user1",
        "password1",
        "user2",
        "password2",
        "host1",
        "host2",
        "options",
    ];
    writer.write_record(header).expect("writing to memory");
    let mut lines = 1;
    let mut seen = 0;
    for m in items {
        writer.flush().expect("writing to memory");
        let buf = writer.get_ref();
        lines += buf[seen..].iter().filter(|&&b| b == b'\n').count();
        seen = buf.len();
        starts.push(lines);
        writer
            .write_record([
                m.user1.as_str(),
                m.password1.as_str(),
                m.user2.as_deref().unwrap_or_default(),
                m.password2.as_deref().unwrap_or_default(),
                m.host1.as_deref().unwrap_or_default(),
                m.host2.as_deref().unwrap_or_default(),
                m.options.as_deref().unwrap_or_default(),
            ])
            .expect("writing to memory");
    }
    let bytes = writer.into_inner().expect("writing to memory");
    (BatchInput::Csv(bytes), MailboxBatch { starts })
}

/// The service's `NewTask` from a JSON body (task creation and preflight take the same
/// body), and the error mapper that names `mailboxes[i]` instead of batch lines when the
/// body listed mailboxes.
pub fn new_task(b: CreateTask) -> Result<(NewTask, Lines), ApiError> {
    let (batch, map) = batch(b.batch, b.mailboxes)?;
    let new = NewTask {
        label: b.label.unwrap_or_default(),
        source: b.source,
        destination: b.destination,
        engine: b.engine.unwrap_or_else(|| "imapsync".into()),
        options: b.options.unwrap_or_default().into_options(),
        extra_args: b.extra_args.unwrap_or_default(),
        batch,
        owner: b.owner,
    };
    Ok((new, Lines(map)))
}

/// Line numbers as the client knows them: `mailboxes[i]` entries when it sent a list,
/// batch lines otherwise.
pub struct Lines(Option<MailboxBatch>);

impl Lines {
    pub fn remap(&self, err: ServiceError) -> ServiceError {
        match &self.0 {
            Some(map) => map.remap(err),
            None => err,
        }
    }

    pub fn client_line(&self, line: usize) -> usize {
        self.0.as_ref().map_or(line, |m| m.client_line(line))
    }
}

/// The batch of a JSON request: exactly one of `batch` and `mailboxes`.
fn batch(
    text: Option<String>,
    items: Option<Vec<MailboxInput>>,
) -> Result<(BatchInput, Option<MailboxBatch>), ApiError> {
    match (text, items) {
        (Some(text), None) => Ok((BatchInput::Auto(text.into_bytes()), None)),
        (None, Some(items)) => {
            let (input, map) = mailboxes(items);
            Ok((input, Some(map)))
        }
        (Some(_), Some(_)) => Err(ApiError::validation(vec![ErrorDetail {
            field: "mailboxes".into(),
            line: None,
            message: "give either batch or mailboxes, not both".into(),
        }])),
        (None, None) => Err(ApiError::invalid(
            "batch",
            "give batch (text or CSV) or mailboxes",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mb(user1: &str, password1: &str) -> MailboxInput {
        MailboxInput {
            user1: user1.into(),
            password1: password1.into(),
            user2: None,
            password2: None,
            host1: None,
            host2: None,
            options: None,
        }
    }

    #[test]
    fn mailbox_errors_point_at_the_entry() {
        let (_, m) = mailboxes(vec![
            mb("a@x", "p"),
            mb("b@x", "multi\nline\npw"),
            mb("c@x", "p"),
        ]);
        assert_eq!(m.starts, [2, 3, 6]);
        let err = m.remap(ServiceError::InvalidMany(vec![FieldError {
            field: "batch.user1".into(),
            line: Some(6),
            message: "bad".into(),
        }]));
        let ServiceError::InvalidMany(errors) = err else {
            panic!()
        };
        assert_eq!(errors[0].field, "mailboxes[2].user1");
        assert_eq!(errors[0].line, Some(3));
        assert_eq!(m.client_line(4), 2);
    }

    #[test]
    fn query_parameters_are_checked() {
        assert_eq!(statuses(Some("failed, warning,failed")).unwrap().len(), 2);
        assert!(statuses(Some("nope")).is_err());
        assert_eq!(archived(Some("all")).unwrap(), ArchivedFilter::Include);
        assert!(archived(Some("maybe")).is_err());
        assert!(sort(Some("label")).is_ok() && sort(Some("x")).is_err());
        assert!(instant("from", Some("2026-11-23")).unwrap().is_some());
        assert!(instant("from", Some("yesterday")).is_err());
    }
}
