//! Calling the other systems of an integration: a connection, by its name.
//!
//! A plugin names a connection of its grant as the host of the URL; the
//! host sends the request to the connection's real address, with the
//! credential only it holds, if the grant has a route for the method and
//! path. The plugin never sees the credential or a secret URL.
//!
//! ```ignore
//! use levelhost_sdk::http;
//! let ticket = http::post("https://ticketing/api/Tickets")
//!     .json(&serde_json::json!({ "summary": "Disk full on ws-1" }))
//!     .send()?;
//! let created: serde_json::Value = ticket.json()?;
//! ```
//!
//! A request the grant does not allow fails with an [`HttpError`] whose
//! text starts with `denied:` and names the route or rule.

use serde::Serialize;
use serde::de::DeserializeOwned;
use wasip2::http::outgoing_handler;
use wasip2::http::types::{ErrorCode, Fields, Method, OutgoingBody, OutgoingRequest, Scheme};
use wasip2::io::streams::StreamError;

/// Why a request to a connection failed: refused by the host (the text
/// starts with `denied:` or `limit`), or the other system or network failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError(pub String);

impl std::fmt::Display for HttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for HttpError {}

impl From<HttpError> for crate::bindings::exports::level::api::handler::RunError {
    fn from(e: HttpError) -> Self {
        Self::Failed(e.0)
    }
}

impl From<ErrorCode> for HttpError {
    fn from(code: ErrorCode) -> Self {
        match code {
            ErrorCode::InternalError(Some(text)) => HttpError(text),
            other => HttpError(format!("{other:?}")),
        }
    }
}

/// A request being built.
#[derive(Debug, Clone)]
pub struct Request {
    method: Method,
    url: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

/// An answer.
#[derive(Debug, Clone)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The headers, as sent (names in lower case).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// The body as JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, HttpError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| HttpError(format!("the answer is not the JSON expected: {e}")))
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// A request with `method` (`"GET"`, `"POST"`, ...) to `url` (`https://CONNECTION/path`).
pub fn request(method: &str, url: &str) -> Request {
    let method = match method.to_ascii_uppercase().as_str() {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        "PATCH" => Method::Patch,
        "DELETE" => Method::Delete,
        "OPTIONS" => Method::Options,
        _ => Method::Other(method.to_owned()),
    };
    Request {
        method,
        url: url.to_owned(),
        headers: Vec::new(),
        body: Vec::new(),
    }
}

/// A `GET` of `url`.
pub fn get(url: &str) -> Request {
    request("GET", url)
}

/// A `POST` to `url`.
pub fn post(url: &str) -> Request {
    request("POST", url)
}

/// A `PUT` to `url`.
pub fn put(url: &str) -> Request {
    request("PUT", url)
}

/// A `PATCH` to `url`.
pub fn patch(url: &str) -> Request {
    request("PATCH", url)
}

/// A `DELETE` of `url`.
pub fn delete(url: &str) -> Request {
    request("DELETE", url)
}

impl Request {
    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers
            .push((name.to_owned(), value.as_bytes().to_vec()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Sets a JSON body and its content type.
    pub fn json<T: Serialize + ?Sized>(self, value: &T) -> Self {
        let body = serde_json::to_vec(value).unwrap_or_default();
        self.header("content-type", "application/json").body(body)
    }

    /// Sends the request and reads the whole answer.
    pub fn send(self) -> Result<Response, HttpError> {
        let (scheme, rest) = match self.url.split_once("://") {
            Some(("https", rest)) => (Scheme::Https, rest),
            Some(("http", rest)) => (Scheme::Http, rest),
            _ => {
                return Err(HttpError(format!(
                    "{:?} is not an http:// or https:// URL naming a connection",
                    self.url
                )));
            }
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest[i..].starts_with('?') => (&rest[..i], format!("/{}", &rest[i..])),
            Some(i) => (&rest[..i], rest[i..].to_owned()),
            None => (rest, "/".to_owned()),
        };
        let fields = Fields::from_list(&self.headers)
            .map_err(|e| HttpError(format!("a header was refused: {e:?}")))?;
        let request = OutgoingRequest::new(fields);
        let bad = |what: &str| HttpError(format!("the request's {what} was refused"));
        request
            .set_method(&self.method)
            .map_err(|()| bad("method"))?;
        request
            .set_scheme(Some(&scheme))
            .map_err(|()| bad("scheme"))?;
        request
            .set_authority(Some(authority))
            .map_err(|()| bad("host"))?;
        request
            .set_path_with_query(Some(&path))
            .map_err(|()| bad("path"))?;
        let body = request.body().map_err(|()| bad("body"))?;
        // Sent first, so the host reads the body as it is written.
        let future = outgoing_handler::handle(request, None)?;
        write_body(body, &self.body);
        future.subscribe().block();
        let response = match future.get() {
            Some(Ok(Ok(response))) => response,
            Some(Ok(Err(code))) => return Err(code.into()),
            _ => return Err(HttpError("the answer was lost".to_owned())),
        };
        let status = response.status();
        let headers = response
            .headers()
            .entries()
            .into_iter()
            .map(|(n, v)| (n, String::from_utf8_lossy(&v).into_owned()))
            .collect();
        let incoming = response
            .consume()
            .map_err(|()| HttpError("the answer's body could not be read".to_owned()))?;
        let stream = incoming
            .stream()
            .map_err(|()| HttpError("the answer's body could not be read".to_owned()))?;
        let mut body = Vec::new();
        loop {
            match stream.blocking_read(64 * 1024) {
                Ok(chunk) => body.extend_from_slice(&chunk),
                Err(StreamError::Closed) => break,
                Err(StreamError::LastOperationFailed(e)) => {
                    return Err(HttpError(format!(
                        "the answer's body broke off: {}",
                        e.to_debug_string()
                    )));
                }
            }
        }
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

/// Writes `bytes` as the body and finishes it. A host that refused the
/// request stops reading; the refusal is what the answer then says.
fn write_body(body: OutgoingBody, bytes: &[u8]) {
    if let Ok(stream) = body.write() {
        for chunk in bytes.chunks(4096) {
            if stream.blocking_write_and_flush(chunk).is_err() {
                break;
            }
        }
        drop(stream);
    }
    let _ = OutgoingBody::finish(body, None);
}
