//! The browser client and its demo, served on the public port so a page needs nothing else
//! (docs/http-api.md#client-files): `/client/gopush.js`, its types at `/client/gopush.d.ts`, and
//! `/demo`, a live page that subscribes a key with that client. The files are compiled in from
//! `clients/js/`, so an installed binary serves the client it was built with.

use crate::reply::{HttpResponse, respond};
use bytes::Bytes;
use hyper::StatusCode;
use hyper::header::{CACHE_CONTROL, HeaderValue};

const GOPUSH_JS: &str = include_str!("../../clients/js/gopush.js");
const GOPUSH_D_TS: &str = include_str!("../../clients/js/gopush.d.ts");
const DEMO: &str = include_str!("../../clients/js/demo.html");
/// Where the demo's copy-paste curl command gets the admin address.
const ADMIN_PLACEHOLDER: &str = "__GOPUSH_ADMIN__";

/// The response for a client-file path, or `None` when `path` is not one.
pub(crate) fn serve(path: &str, admin_bind: &str) -> Option<HttpResponse> {
    let mut resp = match path {
        "/client/gopush.js" => {
            respond(StatusCode::OK, "text/javascript; charset=utf-8", Bytes::from_static(GOPUSH_JS.as_bytes()))
        }
        "/client/gopush.d.ts" => {
            respond(StatusCode::OK, "application/typescript; charset=utf-8", Bytes::from_static(GOPUSH_D_TS.as_bytes()))
        }
        "/demo" => respond(StatusCode::OK, "text/html; charset=utf-8", Bytes::from(demo(admin_bind))),
        _ => return None,
    };
    // Short, so a new build's client reaches browsers within minutes.
    resp.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    Some(resp)
}

/// The demo page, its curl command pointing at `admin_bind` (escaped for a JavaScript string in
/// HTML: it comes from the config, but a stray quote must not break the page).
fn demo(admin_bind: &str) -> String {
    let safe: String = admin_bind.chars().filter(|c| c.is_ascii_alphanumeric() || ".:[]-_".contains(*c)).collect();
    DEMO.replace(ADMIN_PLACEHOLDER, &safe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_served_and_the_demo_names_the_admin_port() {
        assert!(serve("/client/gopush.js", "x").is_some());
        assert!(serve("/client/gopush.d.ts", "x").is_some());
        assert!(serve("/client/", "x").is_none());
        let page = demo("127.0.0.1:8091\"<script>");
        assert!(page.contains("const ADMIN = \"127.0.0.1:8091script\";"), "quotes and brackets are dropped");
        assert!(!page.contains(ADMIN_PLACEHOLDER));
    }
}
