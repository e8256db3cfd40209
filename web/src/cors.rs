//! CORS on the public port (docs/http-api.md#cors): when `cors_origins` lists a page's origin, its
//! `fetch()` may read `/1/server/get`, `/1/msg/get` and the rest. Empty by default, as upstream,
//! which offered JSONP only (still served). Only GET is ever allowed: the public port has nothing
//! else, and no credentials are needed, so none are allowed.

use crate::reply::{HttpResponse, respond};
use bytes::Bytes;
use hyper::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN, ACCESS_CONTROL_MAX_AGE,
    HeaderValue, ORIGIN, VARY,
};
use hyper::{Method, Request, StatusCode};

/// The request's `Origin` when the config allows it (`"*"` allows any), else `None`.
pub(crate) fn allowed<B>(origins: &[String], req: &Request<B>) -> Option<HeaderValue> {
    let origin = req.headers().get(ORIGIN)?;
    origins.iter().any(|o| o == "*" || o.as_bytes() == origin.as_bytes()).then(|| origin.clone())
}

/// The answer to a preflight (`OPTIONS`) from an allowed origin; other requests go on.
pub(crate) fn preflight<B>(origin: Option<&HeaderValue>, req: &Request<B>) -> Option<HttpResponse> {
    let origin = origin?;
    if req.method() != Method::OPTIONS {
        return None;
    }
    let mut resp = respond(StatusCode::NO_CONTENT, "text/plain; charset=utf-8", Bytes::new());
    let h = resp.headers_mut();
    h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
    h.insert(ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET"));
    // Browsers add no custom headers to a plain fetch; allowing none keeps the surface small.
    h.insert(ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static(""));
    h.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    h.insert(VARY, HeaderValue::from_static("Origin"));
    Some(resp)
}

/// Lets an allowed origin read `resp`. `Vary` is set either way once CORS is on, so a shared cache
/// never hands one origin's answer to another.
pub(crate) fn decorate(enabled: bool, origin: Option<HeaderValue>, resp: &mut HttpResponse) {
    if !enabled {
        return;
    }
    let h = resp.headers_mut();
    h.insert(VARY, HeaderValue::from_static("Origin"));
    if let Some(origin) = origin {
        h.insert(ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(origin: Option<&str>, method: Method) -> Request<()> {
        let mut b = Request::builder().method(method).uri("/1/server/get?k=a&p=1");
        if let Some(o) = origin {
            b = b.header(ORIGIN, o);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn only_listed_origins_are_allowed() {
        let list = vec!["https://app.example".to_string()];
        assert!(allowed(&list, &get(Some("https://app.example"), Method::GET)).is_some());
        assert!(allowed(&list, &get(Some("https://evil.example"), Method::GET)).is_none());
        assert!(allowed(&list, &get(None, Method::GET)).is_none());
        assert!(allowed(&[], &get(Some("https://app.example"), Method::GET)).is_none(), "off by default");
        assert!(allowed(&["*".to_string()], &get(Some("http://any"), Method::GET)).is_some());
    }

    #[test]
    fn a_preflight_is_answered_only_for_an_allowed_origin() {
        let o = HeaderValue::from_static("https://app.example");
        let resp = preflight(Some(&o), &get(Some("https://app.example"), Method::OPTIONS)).unwrap();
        assert_eq!(resp.status(), StatusCode::NO_CONTENT);
        assert_eq!(resp.headers()[ACCESS_CONTROL_ALLOW_METHODS], "GET");
        assert!(preflight(None, &get(None, Method::OPTIONS)).is_none());
        assert!(preflight(Some(&o), &get(None, Method::GET)).is_none());
    }
}
