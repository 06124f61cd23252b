//! The S3 backend of a repo: the client, its settings and timeouts, and the reporting of
//! refused requests as typed errors.
//!
//! `object_store` reports some refused requests (a LIST with a wrong key, a missing
//! bucket) as generic errors whose HTTP status it does not expose. So the client's HTTP
//! layer turns an S3 error document that refuses a request (400, 401, 403, or 404
//! `NoSuchBucket`) into an [`HttpRefusal`] carrying the status and the service's error
//! code, which [`crate::error`] classifies by its fields. Other answers pass unchanged.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey, S3ConditionalPut};
use object_store::client::{
    ClientOptions, HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpResponse,
    HttpService, ReqwestConnector,
};
use object_store::path::Path;
use object_store::{ClientConfigKey, ObjectStore, RetryConfig};

use super::S3Options;
use crate::error::{Error, HttpRefusal, Result};

/// The store of the repo at `url` (`s3://BUCKET[/PREFIX]`, `bucket_path` being what
/// follows `s3://`) and the directory inside the bucket the repo is rooted at.
pub fn open(
    url: &str,
    bucket_path: &str,
    o: &S3Options,
    timeouts: crate::net::Timeouts,
) -> Result<(Arc<dyn ObjectStore>, Path)> {
    let (bucket, prefix) = bucket_path.split_once('/').unwrap_or((bucket_path, ""));
    if bucket.is_empty() {
        return Err(Error::invalid_input(format!(
            "repo {url} names no bucket; use s3://BUCKET[/PREFIX]"
        )));
    }
    let mut b = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_conditional_put(S3ConditionalPut::ETagMatch)
        .with_http_connector(RefusalsConnector);
    if let Some(e) = &o.endpoint {
        b = b.with_endpoint(e);
    }
    if let Some(r) = &o.region {
        b = b.with_region(r);
    }
    if let Some(k) = &o.access_key_id {
        b = b.with_access_key_id(k);
    }
    if let Some(k) = &o.secret_access_key {
        b = b.with_secret_access_key(k);
    }
    if let Some(h) = o.allow_http {
        b = b.with_allow_http(h);
    }
    let s3 = with_timeouts(b, timeouts)
        .build()
        .map_err(|e| Error::invalid_input(format!("repo {url}: {e}")))?;
    Ok((Arc::new(s3), Path::from(prefix.trim_matches('/'))))
}

/// Bounds every S3 call by the timeouts. The client's own retries (of a request that
/// failed fast: refused, 5xx, throttled) stop once a request's time has passed, so a server
/// that never answers costs one request timeout per
/// [`RetryPolicy`](crate::retrying_object_store::RetryPolicy) attempt, not minutes.
fn with_timeouts(b: AmazonS3Builder, t: crate::net::Timeouts) -> AmazonS3Builder {
    use AmazonS3ConfigKey::Client;
    let ms = |d: Duration| format!("{}ms", d.as_millis().max(1));
    b.with_config(Client(ClientConfigKey::ConnectTimeout), ms(t.connect))
        .with_config(Client(ClientConfigKey::Timeout), ms(t.request))
        .with_retry(RetryConfig {
            retry_timeout: t.request,
            ..Default::default()
        })
}

/// The default (reqwest) HTTP client, with refusals reported as [`HttpRefusal`].
#[derive(Debug)]
struct RefusalsConnector;

impl HttpConnector for RefusalsConnector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let inner = ReqwestConnector::default().connect(options)?;
        Ok(HttpClient::new(Refusals { inner }))
    }
}

#[derive(Debug)]
struct Refusals {
    inner: HttpClient,
}

#[async_trait]
impl HttpService for Refusals {
    async fn call(&self, req: HttpRequest) -> std::result::Result<HttpResponse, HttpError> {
        let resp = self.inner.execute(req).await?;
        let status = resp.status().as_u16();
        if !matches!(status, 400 | 401 | 403 | 404) {
            return Ok(resp);
        }
        let (parts, body) = resp.into_parts();
        let body = body.bytes().await?;
        match refusal(status, &body) {
            // Not retried by the client (an unknown failure), and kept whole as the
            // source of the error it reports.
            Some(r) => Err(HttpError::new(HttpErrorKind::Unknown, r)),
            None => Ok(HttpResponse::from_parts(parts, body.into())),
        }
    }
}

/// The refusal an S3 error document (`<Error><Code>..</Code><Message>..</Message>`) with
/// status `status` states, if it is one this module reports: credentials or a request
/// refused (400, 401, 403), or a missing bucket (404 `NoSuchBucket`; a missing object is
/// left to the client, which reports it as not found).
fn refusal(status: u16, body: &[u8]) -> Option<HttpRefusal> {
    let text = std::str::from_utf8(body).ok()?;
    let element = |name: &str| -> Option<String> {
        let open = format!("<{name}>");
        let start = text.find(&open)? + open.len();
        let end = start + text[start..].find(&format!("</{name}>"))?;
        Some(text[start..end].trim().to_string())
    };
    text.find("<Error>")?;
    let code = element("Code")?;
    if status == 404 && code != "NoSuchBucket" {
        return None;
    }
    Some(HttpRefusal {
        status,
        code,
        message: element("Message"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DENIED: &str =
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SignatureDoesNotMatch</Code>\
        <Message>The request signature we calculated does not match</Message></Error>";

    #[test]
    fn s3_error_documents_become_refusals() {
        let r = refusal(403, DENIED.as_bytes()).unwrap();
        assert_eq!((r.status, r.code.as_str()), (403, "SignatureDoesNotMatch"));
        assert!(r.is_auth() && !r.is_missing_bucket());
        assert!(r.message.unwrap().starts_with("The request signature"));
        let missing = "<Error><Code>NoSuchBucket</Code></Error>";
        assert!(refusal(404, missing.as_bytes())
            .unwrap()
            .is_missing_bucket());
        // A missing object, and bodies that are not S3 error documents, pass unchanged.
        assert!(refusal(404, b"<Error><Code>NoSuchKey</Code></Error>").is_none());
        assert!(refusal(403, b"").is_none());
        assert!(refusal(403, b"<html>forbidden</html>").is_none());
    }
}
