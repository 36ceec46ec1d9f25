//! The built-in web client (`web/` in the repository), embedded in the binary, plus the
//! `/converse/` page and `/config.json` that tells both pages which hosts to use.
//!
//! The files are few and known, so they are listed here with `include_bytes!` rather than
//! pulled in by a derive macro (no extra dependency, and a file missing from the list is a
//! compile error, not a 404 found in production). Each is gzipped once, on first use, and
//! carries a strong ETag (a hash of its bytes) with `Cache-Control: no-cache`: browsers keep
//! the files and revalidate them with a cheap 304, and an upgraded binary is picked up at once.

use crate::WebState;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use sha1::{Digest, Sha1};
use std::io::Write;
use std::sync::OnceLock;

struct Asset {
    path: &'static str,
    bytes: &'static [u8],
}

macro_rules! assets {
    ($($path:literal),* $(,)?) => {
        &[$(Asset { path: $path, bytes: include_bytes!(concat!("../../../web/", $path)) }),*]
    };
}

/// Every file of the client, by its path under `web/`.
const ASSETS: &[Asset] = assets![
    "index.html",
    "assets/style.css",
    "assets/app.js",
    "assets/core.js",
    "assets/room.js",
    "assets/log.js",
    "assets/composer.js",
    "assets/pm.js",
    "assets/upload.js",
    "assets/tools.js",
    "assets/landing.js",
    "assets/xmpp.js",
    "assets/bosh.js",
    "assets/colors.js",
    "assets/favicon.svg",
    "converse/index.html",
];

/// An asset ready to serve: its bytes, gzipped bytes (when smaller) and ETag.
struct Prepared {
    bytes: &'static [u8],
    gzip: Option<Vec<u8>>,
    etag: String,
    content_type: &'static str,
}

fn prepared() -> &'static [(&'static str, Prepared)] {
    static PREPARED: OnceLock<Vec<(&'static str, Prepared)>> = OnceLock::new();
    PREPARED.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let hash = Sha1::digest(a.bytes);
                let etag = hash[..10].iter().map(|b| format!("{b:02x}")).collect();
                let content_type = content_type(a.path);
                let gzip = compressible(content_type)
                    .then(|| gzip(a.bytes))
                    .filter(|g| g.len() < a.bytes.len());
                (
                    a.path,
                    Prepared {
                        bytes: a.bytes,
                        gzip,
                        etag,
                        content_type,
                    },
                )
            })
            .collect()
    })
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(bytes).expect("writing to a Vec");
    enc.finish().expect("writing to a Vec")
}

fn compressible(content_type: &str) -> bool {
    content_type.starts_with("text/")
        || content_type.contains("javascript")
        || content_type.contains("json")
        || content_type.contains("svg")
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        "ttf" => "font/ttf",
        "wasm" => "application/wasm",
        "map" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        "mp3" => "audio/mpeg",
        "ogg" => "audio/ogg",
        _ => "application/octet-stream",
    }
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|enc| {
            let mut parts = enc.split(';');
            let name = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    == Some(0.0)
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

fn not_found(what: &str) -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{what}\n"),
    )
        .into_response()
}

/// The built-in chat page's Content-Security-Policy: only its own scripts and styles run (no
/// inline script, so text from the network that slipped into the page could not execute), no
/// plugins, no `<base>` rewriting. It talks to `/xmpp-websocket`, `/http-bind` and the upload
/// service, which may be on another origin (`upload.public_url`); no `frame-ancestors`, since
/// embedding the chat in other sites is the point of `?embed=1`. The Converse.js page loads its
/// code from wherever `http.converse_url` says and has inline script, so it does not get this.
const CHAT_PAGE_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data: blob: https:; media-src 'self' blob: https:; \
     connect-src 'self' ws: wss: http: https:; object-src 'none'; base-uri 'none'; \
     form-action 'self'";

/// For working on the client: `SALON_WEB_DIR=web` serves the files from disk as they are
/// (no cache, no gzip), so an edit shows on reload without rebuilding the binary.
fn serve_from_disk(path: &str) -> Option<Response> {
    let dir = std::env::var_os("SALON_WEB_DIR").filter(|d| !d.is_empty())?;
    ASSETS.iter().find(|a| a.path == path)?;
    let bytes = std::fs::read(std::path::Path::new(&dir).join(path)).ok()?;
    let mut response = (
        [
            (header::CONTENT_TYPE, content_type(path)),
            (header::CACHE_CONTROL, "no-store"),
        ],
        bytes,
    )
        .into_response();
    if path == "index.html" {
        response.headers_mut().insert(
            header::CONTENT_SECURITY_POLICY,
            header::HeaderValue::from_static(CHAT_PAGE_CSP),
        );
    }
    Some(response)
}

/// Serve one embedded file, honouring `If-None-Match` and `Accept-Encoding`.
fn serve(path: &str, headers: &HeaderMap) -> Response {
    if let Some(response) = serve_from_disk(path) {
        return response;
    }
    let Some((_, asset)) = prepared().iter().find(|(p, _)| *p == path) else {
        return not_found("no such file");
    };
    let gz = asset.gzip.as_ref().filter(|_| accepts_gzip(headers));
    let etag = if gz.is_some() {
        format!("\"{}-gz\"", asset.etag)
    } else {
        format!("\"{}\"", asset.etag)
    };
    let matches = headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == etag || t.trim_matches('"') == asset.etag);
    let mut builder = Response::builder()
        .header(header::ETAG, &etag)
        .header(header::CACHE_CONTROL, "no-cache")
        .header(header::VARY, "Accept-Encoding")
        .header("x-content-type-options", "nosniff");
    if matches {
        return builder
            .status(StatusCode::NOT_MODIFIED)
            .body(Body::empty())
            .expect("valid response");
    }
    builder = builder.header(header::CONTENT_TYPE, asset.content_type);
    if path.ends_with(".html") {
        // The chat may be embedded in an iframe by other sites (that is the point of
        // `?embed=1`), so no frame-ancestors restriction; but no referrer leaks to links.
        builder = builder.header("referrer-policy", "no-referrer");
    }
    if path == "index.html" {
        builder = builder.header(header::CONTENT_SECURITY_POLICY, CHAT_PAGE_CSP);
    }
    let body = match gz {
        Some(gz) => {
            builder = builder.header(header::CONTENT_ENCODING, "gzip");
            Body::from(gz.clone())
        }
        None => Body::from(asset.bytes),
    };
    builder.body(body).expect("valid response")
}

/// `/`, `/join/{room}`: the same page; the script reads the room from the URL.
pub async fn index(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

pub async fn join(Path(_room): Path<String>, headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

/// `/assets/{*path}`.
pub async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    serve(&format!("assets/{path}"), &headers)
}

/// `/converse` → `/converse/`, so that relative URLs in the page work.
pub async fn converse_redirect() -> Redirect {
    Redirect::permanent("/converse/")
}

/// `/converse/`: the page that starts Converse.js for the anonymous host.
pub async fn converse_page(State(state): State<WebState>, headers: HeaderMap) -> Response {
    let mut response = serve("converse/index.html", &headers);
    if let Ok(csp) = HeaderValue::from_str(&converse_page_csp(&state.server.config)) {
        response
            .headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, csp);
    }
    response
}

/// The Converse.js page fetches nothing from other sites: its fullscreen footer shows sponsor
/// logos from conversejs.org, and link previews would load images from anywhere. Images,
/// media and fonts come from Salon (and from where Converse.js or uploads are served, when
/// configured elsewhere). Scripts are left alone: the page starts Converse with inline script.
fn converse_page_csp(config: &salon_server::config::Config) -> String {
    let mut sources = vec!["'self'".to_string(), "data:".into(), "blob:".into()];
    let origin = |url: &str| -> Option<String> {
        let (scheme, rest) = url.split_once("://")?;
        let host = rest.split('/').next().filter(|h| !h.is_empty())?;
        Some(format!("{scheme}://{host}"))
    };
    let elsewhere = [
        config.http.converse_url.as_deref(),
        config.upload.as_ref().and_then(|u| u.public_url.as_deref()),
        config.http.public_url.as_deref(),
    ];
    sources.extend(elsewhere.into_iter().flatten().filter_map(origin));
    let list = sources.join(" ");
    format!("img-src {list}; media-src {list}; font-src {list}; object-src 'none'; base-uri 'none'")
}

/// The directory Converse.js's `dist/` is served from, if one is configured.
fn converse_dir(state: &WebState) -> Option<std::path::PathBuf> {
    state.server.config.http.converse_dir.clone()
}

/// `/converse/dist/{*path}`: files from the configured Converse.js directory.
pub async fn converse_dist(
    State(state): State<WebState>,
    Path(path): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(dir) = converse_dir(&state) else {
        return not_found(
            "Converse.js is not installed here: Salon does not ship it. Set http.converse_dir \
             to the dist/ directory of the converse.js npm package, or http.converse_url.",
        );
    };
    // Only plain path segments: no `..`, no absolute paths, no hidden files.
    let clean = path.split('/').all(|seg| {
        !seg.is_empty() && !seg.starts_with('.') && !seg.contains('\\') && !seg.contains('\0')
    });
    if !clean {
        return not_found("no such file");
    }
    let file = dir.join(&path);
    let meta = match tokio::fs::metadata(&file).await {
        Ok(m) if m.is_file() => m,
        _ => return not_found("no such file in the Converse.js directory"),
    };
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let etag = format!("\"{:x}-{:x}\"", meta.len(), modified);
    let cache = HeaderValue::from_static("public, max-age=3600");
    if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        return (
            StatusCode::NOT_MODIFIED,
            [
                (header::ETAG, etag),
                (header::CACHE_CONTROL, cache.to_str().unwrap().into()),
            ],
        )
            .into_response();
    }
    // A precompressed sibling (`file.gz`) is used when the browser takes gzip; else text
    // (converse.min.js is 1.3 MB, 0.4 MB gzipped) is compressed once and kept in memory.
    let gz_file = dir.join(format!("{path}.gz"));
    let gzip_ok = accepts_gzip(&headers);
    let (bytes, encoding) = if gzip_ok && tokio::fs::metadata(&gz_file).await.is_ok() {
        match tokio::fs::read(&gz_file).await {
            Ok(b) => (Body::from(b), Some("gzip")),
            Err(_) => return not_found("unreadable file"),
        }
    } else {
        let plain = match tokio::fs::read(&file).await {
            Ok(b) => b,
            Err(_) => return not_found("unreadable file"),
        };
        if gzip_ok && compressible(content_type(&path)) {
            match compressed_dist_file(&file, &etag, plain).await {
                Ok(gz) => (Body::from(gz), Some("gzip")),
                Err(plain) => (Body::from(plain), None),
            }
        } else {
            (Body::from(plain), None)
        }
    };
    let mut builder = Response::builder()
        .header(header::CONTENT_TYPE, content_type(&path))
        .header(header::ETAG, etag)
        .header(header::CACHE_CONTROL, cache)
        .header(header::VARY, "Accept-Encoding");
    if let Some(enc) = encoding {
        builder = builder.header(header::CONTENT_ENCODING, enc);
    }
    builder.body(bytes).expect("valid response")
}

/// Gzipped Converse.js files, by path and ETag (so a replaced file is compressed afresh).
type GzipCache = std::sync::Mutex<std::collections::HashMap<std::path::PathBuf, (String, Bytes)>>;

/// The most the gzip cache holds; the whole Converse.js dist/ text is about 3 MB gzipped.
const GZIP_CACHE_BYTES: usize = 16 << 20;
/// Files larger than this are sent as they are rather than compressed in memory.
const GZIP_MAX_FILE: usize = 16 << 20;

/// The gzipped bytes of a Converse.js file, compressed once (off the async threads) and kept
/// within [`GZIP_CACHE_BYTES`]; the plain bytes back when compressing does not pay or fails.
async fn compressed_dist_file(
    file: &std::path::Path,
    etag: &str,
    plain: Vec<u8>,
) -> Result<Bytes, Vec<u8>> {
    static CACHE: OnceLock<GzipCache> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some((tag, gz)) = cache.lock().expect("gzip cache").get(file) {
        if tag == etag {
            return Ok(gz.clone());
        }
    }
    if plain.len() > GZIP_MAX_FILE {
        return Err(plain);
    }
    let copy = plain.clone();
    let Ok(gz) = tokio::task::spawn_blocking(move || gzip(&copy)).await else {
        return Err(plain);
    };
    if gz.len() >= plain.len() {
        return Err(plain);
    }
    let gz = Bytes::from(gz);
    let mut map = cache.lock().expect("gzip cache");
    map.remove(file);
    let held: usize = map.values().map(|(_, b)| b.len()).sum();
    if held + gz.len() <= GZIP_CACHE_BYTES {
        map.insert(file.to_path_buf(), (etag.to_string(), gz.clone()));
    }
    Ok(gz)
}

/// `/config.json`: the hosts and endpoints the web pages use. Endpoints are relative to the
/// page unless `http.public_url` says where Salon is reached.
pub async fn config(State(state): State<WebState>) -> Response {
    let config = &state.server.config;
    let base = config
        .http
        .public_url
        .as_deref()
        .map(|u| u.trim_end_matches('/').to_string());
    let websocket_url = base.as_ref().map(|b| {
        let ws = b
            .strip_prefix("https://")
            .map(|rest| format!("wss://{rest}"))
            .or_else(|| b.strip_prefix("http://").map(|rest| format!("ws://{rest}")))
            .unwrap_or_else(|| b.clone());
        format!("{ws}/xmpp-websocket")
    });
    let body = serde_json::json!({
        "domain": config.domain,
        "anonymous_domain": config.anonymous_domain(),
        "muc_domain": config.muc.as_ref().map(|m| m.domain.as_str()),
        // Absent: the page uses ws(s)://its-own-host/xmpp-websocket.
        "websocket_url": websocket_url,
        "bosh_url": base.as_ref().map_or_else(|| "/http-bind".to_string(), |b| format!("{b}/http-bind")),
        "upload_domain": config.upload.as_ref().map(|u| u.domain.as_str()),
        "converse_base": config.http.converse_url.as_deref().unwrap_or("/converse/dist/"),
    });
    (
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body.to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_prepared_and_typed() {
        for (path, p) in prepared() {
            assert_ne!(p.content_type, "application/octet-stream", "{path}");
            assert!(!p.etag.is_empty());
        }
    }

    /// Every module the page loads (index.html's links, each module's static and dynamic
    /// imports) is in the list: a missing one would be a 404 found only in a browser.
    #[test]
    fn every_module_the_page_imports_is_served() {
        let listed: Vec<&str> = prepared().iter().map(|(p, _)| *p).collect();
        for (path, p) in prepared() {
            let text = std::str::from_utf8(p.bytes).unwrap_or_default();
            let wanted = text
                .split("\"/assets/")
                .skip(1)
                .map(|r| format!("assets/{}", &r[..r.find('"').unwrap()]))
                .chain(
                    text.split("'./")
                        .skip(1)
                        .filter(|_| path.ends_with(".js"))
                        .map(|r| format!("assets/{}", &r[..r.find('\'').unwrap()])),
                );
            for w in wanted {
                assert!(listed.contains(&w.as_str()), "{path} loads {w}, not served");
            }
        }
    }

    /// The chat page is served with a policy that runs only its own files, and the page itself
    /// needs nothing else: no inline script, style element or style attribute.
    #[test]
    fn chat_page_has_a_content_security_policy_it_complies_with() {
        for path in ["index.html", "assets/app.js"] {
            let response = serve(path, &HeaderMap::new());
            let csp = response.headers().get(header::CONTENT_SECURITY_POLICY);
            if path != "index.html" {
                assert!(csp.is_none(), "{path}");
                continue;
            }
            let csp = csp.expect("the chat page has a CSP").to_str().unwrap();
            assert!(csp.contains("script-src 'self';"), "{csp}");
            assert!(csp.contains("object-src 'none'"), "{csp}");
            assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"));
        }
        let (_, page) = prepared().iter().find(|(p, _)| *p == "index.html").unwrap();
        let html = std::str::from_utf8(page.bytes).unwrap();
        for tag in html.split("<script").skip(1) {
            let open = &tag[..tag.find('>').unwrap()];
            assert!(
                open.contains("src="),
                "inline <script> in index.html: {open}"
            );
        }
        assert!(!html.contains("<style"), "inline <style> in index.html");
        assert!(!html.contains(" style="), "style attribute in index.html");
        assert!(!html.contains(" onclick="), "inline handler in index.html");
    }

    #[test]
    fn gzip_negotiation() {
        let mut h = HeaderMap::new();
        h.insert(
            header::ACCEPT_ENCODING,
            "gzip, deflate, br".parse().unwrap(),
        );
        assert!(accepts_gzip(&h));
        h.insert(header::ACCEPT_ENCODING, "br, gzip;q=0".parse().unwrap());
        assert!(!accepts_gzip(&h));
        h.insert(header::ACCEPT_ENCODING, "identity".parse().unwrap());
        assert!(!accepts_gzip(&h));
    }
}
