//! A minimal S3 client: path-style requests over plain HTTP, signed with AWS Signature V4 by hand
//! ([`sign_v4`], HMAC-SHA256), enough to put, check and multipart-upload objects.
//!
//! Every request's payload is signed by its SHA-256 (`x-amz-content-sha256`), so the server
//! rejects a body damaged in transit. Objects carry their whole-file SHA-256 as user metadata
//! (`x-amz-meta-sha256`), which [`S3Client::head`] reads back for verification.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How long one S3 request may take (a 64 MiB part over a slow school uplink needs minutes).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// The SHA-256 of an empty payload.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// A multipart upload in progress, persisted so that a restart continues it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MultipartProgress {
    /// The server's upload id.
    pub upload_id: String,
    /// The part size the upload was started with.
    pub part_size: u64,
    /// Parts uploaded: (part number from 1, ETag).
    pub parts: Vec<(u32, String)>,
}

/// Why an S3 request failed.
#[derive(Debug)]
pub struct S3Error {
    /// What happened, with the server's error code if it sent one.
    pub reason: String,
    /// HTTP status, if the server answered.
    pub status: Option<u16>,
}

impl S3Error {
    /// Network errors, timeouts, 408, 429 and 5xx may succeed later.
    pub fn is_transient(&self) -> bool {
        matches!(self.status, None | Some(408 | 429 | 500..=599))
    }
}

/// Credentials and location of one bucket.
#[derive(Clone)]
pub struct S3Client {
    endpoint: String,
    host: String,
    bucket: String,
    region: String,
    access_key: String,
    secret_key: String,
    agent: ureq::Agent,
}

impl std::fmt::Debug for S3Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Client")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl S3Client {
    /// A client for `bucket` at `endpoint` (`http://host[:port]`).
    pub fn new(
        endpoint: &str,
        bucket: &str,
        region: &str,
        access_key: &str,
        secret_key: &str,
    ) -> Self {
        let endpoint = endpoint.trim_end_matches('/').to_owned();
        let host = endpoint
            .split_once("://")
            .map_or(endpoint.as_str(), |(_, rest)| rest)
            .split('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        Self {
            endpoint,
            host,
            bucket: bucket.to_owned(),
            region: region.to_owned(),
            access_key: access_key.to_owned(),
            secret_key: secret_key.to_owned(),
            agent: ureq::AgentBuilder::new()
                .timeout_connect(Duration::from_secs(10))
                .timeout(REQUEST_TIMEOUT)
                .build(),
        }
    }

    /// One signed request. `key` empty addresses the bucket itself.
    fn call(
        &self,
        method: &str,
        key: &str,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        body: &[u8],
        payload_sha256: &str,
    ) -> Result<ureq::Response, S3Error> {
        let mut path = format!("/{}", uri_encode(&self.bucket, false));
        if !key.is_empty() {
            path.push('/');
            path.push_str(&uri_encode(key, true));
        }
        let mut sorted: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| (uri_encode(k, false), uri_encode(v, false)))
            .collect();
        sorted.sort();
        let query_string = sorted
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        let now = Utc::now();
        let mut signed: BTreeMap<String, String> = headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        signed.insert("host".into(), self.host.clone());
        signed.insert("x-amz-content-sha256".into(), payload_sha256.to_owned());
        signed.insert(
            "x-amz-date".into(),
            now.format("%Y%m%dT%H%M%SZ").to_string(),
        );
        let authorization = sign_v4(&SigningRequest {
            method,
            path: &path,
            query: &query_string,
            headers: &signed,
            payload_sha256,
            access_key: &self.access_key,
            secret_key: &self.secret_key,
            region: &self.region,
            now,
        });
        let mut url = format!("{}{path}", self.endpoint);
        if !query_string.is_empty() {
            url.push('?');
            url.push_str(&query_string);
        }
        let mut request = self.agent.request(method, &url);
        for (k, v) in &signed {
            if k != "host" {
                request = request.set(k, v);
            }
        }
        request = request.set("Authorization", &authorization);
        match request.send_bytes(body) {
            Ok(response) => Ok(response),
            Err(ureq::Error::Status(status, response)) => {
                let text = response.into_string().unwrap_or_default();
                let code = xml_tag(&text, "Code").unwrap_or("no error code");
                let message = xml_tag(&text, "Message").unwrap_or("");
                Err(S3Error {
                    reason: format!("{method} {url}: HTTP {status} {code} {message}"),
                    status: Some(status),
                })
            }
            Err(ureq::Error::Transport(e)) => Err(S3Error {
                reason: format!("{method} {url}: {e}"),
                status: None,
            }),
        }
    }

    /// Creates the bucket (for setup and tests); an existing bucket of ours is fine.
    pub fn create_bucket(&self) -> Result<(), S3Error> {
        match self.call("PUT", "", &[], &[], b"", EMPTY_SHA256) {
            Ok(_) => Ok(()),
            Err(e) if e.status == Some(409) && e.reason.contains("BucketAlreadyOwnedByYou") => {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Stores `body` (whose SHA-256 is `sha256`) as `key`, with `sha256` as its metadata.
    pub fn put(&self, key: &str, body: &[u8], sha256: &str) -> Result<(), S3Error> {
        self.call(
            "PUT",
            key,
            &[],
            &[("x-amz-meta-sha256", sha256)],
            body,
            sha256,
        )
        .map(drop)
    }

    /// The object's size and `sha256` metadata; `None` if there is no such object.
    pub fn head(&self, key: &str) -> Result<Option<(u64, Option<String>)>, S3Error> {
        match self.call("HEAD", key, &[], &[], b"", EMPTY_SHA256) {
            Ok(response) => {
                let bytes = response
                    .header("Content-Length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let sha = response.header("x-amz-meta-sha256").map(str::to_owned);
                Ok(Some((bytes, sha)))
            }
            Err(e) if e.status == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The object's content (for tests and tools).
    pub fn get(&self, key: &str) -> Result<Vec<u8>, S3Error> {
        let response = self.call("GET", key, &[], &[], b"", EMPTY_SHA256)?;
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut response.into_reader(), &mut body).map_err(|e| {
            S3Error {
                reason: format!("GET {key}: {e}"),
                status: None,
            }
        })?;
        Ok(body)
    }

    /// Starts a multipart upload of `key` whose whole content hashes to `sha256`.
    pub fn create_multipart(&self, key: &str, sha256: &str) -> Result<String, S3Error> {
        let response = self.call(
            "POST",
            key,
            &[("uploads", "")],
            &[("x-amz-meta-sha256", sha256)],
            b"",
            EMPTY_SHA256,
        )?;
        let text = response.into_string().unwrap_or_default();
        xml_tag(&text, "UploadId")
            .map(str::to_owned)
            .ok_or_else(|| S3Error {
                reason: format!("POST {key}?uploads: no UploadId in the answer"),
                status: None,
            })
    }

    /// Uploads part `number` (from 1); returns its ETag.
    pub fn upload_part(
        &self,
        key: &str,
        upload_id: &str,
        number: u32,
        body: &[u8],
    ) -> Result<String, S3Error> {
        let sha = hex::encode(Sha256::digest(body));
        let number = number.to_string();
        let response = self.call(
            "PUT",
            key,
            &[("partNumber", &number), ("uploadId", upload_id)],
            &[],
            body,
            &sha,
        )?;
        response
            .header("ETag")
            .map(str::to_owned)
            .ok_or_else(|| S3Error {
                reason: format!("PUT {key} part {number}: no ETag in the answer"),
                status: None,
            })
    }

    /// Completes a multipart upload from its parts.
    pub fn complete_multipart(
        &self,
        key: &str,
        upload_id: &str,
        parts: &[(u32, String)],
    ) -> Result<(), S3Error> {
        let mut body = String::from("<CompleteMultipartUpload>");
        for (number, etag) in parts {
            body.push_str(&format!(
                "<Part><PartNumber>{number}</PartNumber><ETag>{}</ETag></Part>",
                xml_escape(etag)
            ));
        }
        body.push_str("</CompleteMultipartUpload>");
        let sha = hex::encode(Sha256::digest(body.as_bytes()));
        let response = self.call(
            "POST",
            key,
            &[("uploadId", upload_id)],
            &[("content-type", "application/xml")],
            body.as_bytes(),
            &sha,
        )?;
        // S3 may answer 200 and still report an error in the body.
        let text = response.into_string().unwrap_or_default();
        if text.contains("<Error>") {
            return Err(S3Error {
                reason: format!(
                    "completing {key}: {} {}",
                    xml_tag(&text, "Code").unwrap_or(""),
                    xml_tag(&text, "Message").unwrap_or("")
                ),
                status: Some(500),
            });
        }
        Ok(())
    }
}

/// The text of the first `<tag>…</tag>` in `xml` (S3 answers are flat enough for this).
fn xml_tag<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{tag}>"))? + start;
    Some(&xml[start..end])
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// S3's URI encoding: unreserved characters stay, everything else is `%XX` (upper case); `/`
/// stays when encoding a key path.
pub fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) || (keep_slash && b == b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What [`sign_v4`] signs.
#[derive(Debug)]
pub struct SigningRequest<'a> {
    /// `GET`, `PUT` …
    pub method: &'a str,
    /// The URI-encoded path, e.g. `/bucket/key`.
    pub path: &'a str,
    /// The canonical query string (sorted, encoded), or empty.
    pub query: &'a str,
    /// Headers to sign, names lower-case, values trimmed; must include `host` and `x-amz-date`.
    pub headers: &'a BTreeMap<String, String>,
    /// Hex SHA-256 of the payload.
    pub payload_sha256: &'a str,
    /// Access key id.
    pub access_key: &'a str,
    /// Secret key.
    pub secret_key: &'a str,
    /// Region.
    pub region: &'a str,
    /// The request time (must match `x-amz-date`).
    pub now: DateTime<Utc>,
}

/// The `Authorization` header value of an AWS Signature V4 for service `s3`.
pub fn sign_v4(req: &SigningRequest<'_>) -> String {
    let signed_headers = req
        .headers
        .keys()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(";");
    let canonical_headers: String = req
        .headers
        .iter()
        .map(|(k, v)| format!("{k}:{v}\n"))
        .collect();
    let canonical = format!(
        "{}\n{}\n{}\n{canonical_headers}\n{signed_headers}\n{}",
        req.method, req.path, req.query, req.payload_sha256
    );
    let date = req.now.format("%Y%m%d").to_string();
    let amz_date = req.now.format("%Y%m%dT%H%M%SZ").to_string();
    let scope = format!("{date}/{}/s3/aws4_request", req.region);
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let k_date = hmac(
        format!("AWS4{}", req.secret_key).as_bytes(),
        date.as_bytes(),
    );
    let k_region = hmac(&k_date, req.region.as_bytes());
    let k_service = hmac(&k_region, b"s3");
    let k_signing = hmac(&k_service, b"aws4_request");
    let signature = hex::encode(hmac(&k_signing, to_sign.as_bytes()));
    format!(
        "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
        req.access_key
    )
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The "GET Object" example of the AWS documentation ("Signature Calculations for the
    /// Authorization Header: Transferring Payload in a Single Chunk").
    #[test]
    fn signature_matches_the_aws_example() {
        let headers: BTreeMap<String, String> = [
            ("host", "examplebucket.s3.amazonaws.com"),
            ("range", "bytes=0-9"),
            ("x-amz-content-sha256", EMPTY_SHA256),
            ("x-amz-date", "20130524T000000Z"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let auth = sign_v4(&SigningRequest {
            method: "GET",
            path: "/test.txt",
            query: "",
            headers: &headers,
            payload_sha256: EMPTY_SHA256,
            access_key: "AKIAIOSFODNN7EXAMPLE",
            secret_key: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            region: "us-east-1",
            now: "2013-05-24T00:00:00Z".parse().unwrap(),
        });
        assert_eq!(
            auth,
            "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, \
             SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, \
             Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
    }

    #[test]
    fn keys_are_encoded_as_s3_wants() {
        assert_eq!(
            uri_encode("cls/2026-12-01/a b+c.mp4", true),
            "cls/2026-12-01/a%20b%2Bc.mp4"
        );
        assert_eq!(uri_encode("教", true), "%E6%95%99");
        assert_eq!(uri_encode("a/b", false), "a%2Fb");
    }
}
