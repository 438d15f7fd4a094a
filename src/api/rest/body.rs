//! Request bodies: JSON, also when sent as `application/x-www-form-urlencoded`
//! (what `curl -d` says, and what the page's curl lines send), with unknown
//! fields refused; and the page's `expiry` (days, or an RFC 3339 time).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use chrono::{DateTime, Utc};
use http::HeaderMap;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use tonic::Code;

use super::RestError;

/// The body as `T`, or `None` when there is none. Anything but JSON (or
/// JSON sent as a form, as `curl -d` does) is refused.
pub fn parse<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Option<T>, RestError> {
    let body = body.map_err(|rejection| {
        RestError::new(rejection.status(), Code::InvalidArgument, rejection.body_text(), Some("body"))
    })?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let content_type = headers.get(http::header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or("");
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    if !matches!(media_type, "" | "application/json" | "application/x-www-form-urlencoded") {
        return Err(RestError::new(
            http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Code::InvalidArgument,
            format!("the body must be JSON, not {media_type}"),
            Some("body"),
        ));
    }
    serde_json::from_slice(&body).map(Some).map_err(|error| RestError::bad_body(format!("body: {error}")))
}

/// When a snapshot expires: `7` (days from now, as on the page) or an RFC
/// 3339 time (`"2026-05-11T02:55:00Z"`).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, utoipa::ToSchema)]
#[serde(untagged, expecting = "a number of days or an RFC 3339 time")]
pub enum Expiry {
    Days(u32),
    At(DateTime<Utc>),
}

impl Expiry {
    /// Whole days from `now` (the service layer counts in days): a time is
    /// rounded up to the next whole day, so a snapshot never expires before
    /// the time asked.
    pub fn days(self, now: DateTime<Utc>) -> Result<u32, RestError> {
        match self {
            Expiry::Days(days) => Ok(days),
            Expiry::At(time) if time <= now => Err(RestError::new(
                http::StatusCode::BAD_REQUEST,
                Code::InvalidArgument,
                format!("expiry: {time} is not in the future"),
                Some("expiry"),
            )),
            Expiry::At(time) => {
                let seconds = (time - now).num_seconds();
                Ok(u32::try_from((seconds + 86_399) / 86_400).unwrap_or(u32::MAX).max(1))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        alias: Option<String>,
        expiry: Option<Expiry>,
    }

    fn headers(content_type: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::CONTENT_TYPE, content_type.parse().unwrap());
        headers
    }

    #[test]
    fn json_under_the_form_content_type_is_read() {
        let body = Bytes::from_static(br#"{"alias": "rollback-point", "expiry": 7}"#);
        let parsed: Body = parse(&headers("application/x-www-form-urlencoded"), Ok(body)).unwrap().unwrap();
        assert_eq!(parsed.alias.as_deref(), Some("rollback-point"));
        assert_eq!(parsed.expiry, Some(Expiry::Days(7)));
    }

    #[test]
    fn unknown_fields_wrong_types_and_other_media_are_refused() {
        for (content_type, body) in [
            ("application/json", r#"{"alias": "a", "colour": 1}"#),
            ("application/json", r#"{"expiry": "soon"}"#),
            ("application/json", r#"{"alias": 3"#),
            ("text/plain", r#"{"alias": "a"}"#),
        ] {
            assert!(parse::<Body>(&headers(content_type), Ok(Bytes::from(body))).is_err(), "{body}");
        }
    }

    #[test]
    fn an_expiry_time_rounds_up_to_whole_days() {
        let now = DateTime::parse_from_rfc3339("2026-05-04T02:55:00Z").unwrap().with_timezone(&Utc);
        let at = |s: &str| Expiry::At(DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc));
        assert_eq!(at("2026-05-11T02:55:00Z").days(now).unwrap(), 7);
        assert_eq!(at("2026-05-04T03:00:00Z").days(now).unwrap(), 1);
        assert!(at("2026-05-01T00:00:00Z").days(now).is_err());
    }
}
