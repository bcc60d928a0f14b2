//! `/ui`, the run history page (SPEC §7): a static page embedded in the
//! binary that speaks to the JSON admin API from the browser.
//!
//! The page loads without a token (it asks for one and keeps it in the
//! tab's `sessionStorage`); every answer here is 404 when no admin token is
//! set, like the admin API. Assets carry an ETag of their content and are
//! revalidated on each load, so a new binary's page is never stale; the
//! Content-Security-Policy allows scripts, styles and requests from this
//! origin only (no inline script, no `eval`).

use crate::error::ApiError;
use crate::AppState;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse};
use hookflow_service::Refusal;
use std::hash::{Hash, Hasher};
use std::sync::OnceLock;

/// The page's path; assets live under it.
pub const PREFIX: &str = "/ui";

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
                   form-action 'self'; frame-ancestors 'none'";

/// One embedded file.
struct Asset {
    body: &'static [u8],
    content_type: &'static str,
}

static INDEX: Asset = Asset {
    body: include_bytes!("index.html"),
    content_type: "text/html; charset=utf-8",
};
static SCRIPT: Asset = Asset {
    body: include_bytes!("app.js"),
    content_type: "text/javascript; charset=utf-8",
};
static STYLE: Asset = Asset {
    body: include_bytes!("app.css"),
    content_type: "text/css; charset=utf-8",
};

/// The asset a path names, if any.
fn asset(path: &str) -> Option<&'static Asset> {
    match path.strip_prefix(PREFIX)? {
        "" | "/" => Some(&INDEX),
        "/app.js" => Some(&SCRIPT),
        "/app.css" => Some(&STYLE),
        _ => None,
    }
}

/// An ETag of the three files together (any change reloads them all), with
/// the version of the binary.
fn etag() -> &'static str {
    static TAG: OnceLock<String> = OnceLock::new();
    TAG.get_or_init(|| {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        env!("CARGO_PKG_VERSION").hash(&mut hasher);
        for a in [&INDEX, &SCRIPT, &STYLE] {
            a.body.hash(&mut hasher);
        }
        format!("\"ui-{:016x}\"", hasher.finish())
    })
}

/// Answers `/ui…` paths; `None` for every other path.
pub fn dispatch(req: &HttpRequest, state: &AppState) -> Option<Result<HttpResponse, ApiError>> {
    let path = req.path();
    if path != PREFIX && !path.starts_with("/ui/") {
        return None;
    }
    if state.http.admin_token.is_none() {
        return Some(Err(Refusal::NotFound("not found".into()).into()));
    }
    let method = req.method();
    let Some(asset) = asset(path).filter(|_| method == "GET" || method == "HEAD") else {
        return Some(Err(Refusal::NotFound("no such page".into()).into()));
    };
    let tag = etag();
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    let mut builder = if fresh {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    builder
        .insert_header((header::ETAG, HeaderValue::from_static(tag)))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"));
    Some(Ok(if fresh {
        builder.finish()
    } else {
        builder
            .insert_header((header::CONTENT_TYPE, asset.content_type))
            .body(asset.body)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_the_embedded_files() {
        assert!(std::ptr::eq(asset("/ui").expect("page"), &INDEX));
        assert!(std::ptr::eq(asset("/ui/").expect("page"), &INDEX));
        assert!(std::ptr::eq(asset("/ui/app.js").expect("js"), &SCRIPT));
        assert!(asset("/ui/other").is_none());
        assert!(asset("/uix").is_none());
        assert!(etag().starts_with("\"ui-") && etag().ends_with('"'));
    }

    #[test]
    fn the_page_has_no_inline_script_or_style() {
        let page = std::str::from_utf8(INDEX.body).expect("utf-8");
        assert!(page.contains(r#"<script src="/ui/app.js" defer></script>"#));
        assert!(!page.contains("<script>") && !page.contains("style="));
        assert!(!page.contains("onclick"));
    }
}
