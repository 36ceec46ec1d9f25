//! HTTP side of XEP-0363 file upload: `PUT /upload/ID/NAME` with a slot's signed
//! `Authorization` header streams the body to disk, `GET` (and `HEAD`) serves the file with its
//! stored type, ranges, `nosniff` and `Content-Disposition`, and `OPTIONS` answers CORS
//! preflights for both. The slot logic (tokens, quotas, records, expiry) is in
//! `salon_server::upload`.
//!
//! A PUT is written to `ID.part` in the upload directory, never more than the slot's size, and
//! moved to `ID` only when exactly that many bytes arrived; on a wrong size, a read error, a
//! client that stops sending, or the request being dropped, the partial file is deleted and
//! nothing is recorded.

use crate::WebState;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::put;
use axum::Router;
use futures_util::StreamExt as _;
use salon_server::upload::{is_valid_id, media_type, PutRefusal, SlotClaims, UploadService};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt as _;
use tower::ServiceExt as _;

/// Longest wait for the next piece of a PUT body before the upload is abandoned.
const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The upload routes with their own CORS layer: PUT and the `Authorization` header are allowed
/// here, and the headers a range download needs are exposed.
pub fn routes(cors_origins: &[String]) -> Router<WebState> {
    let cors = crate::cors(cors_origins)
        .allow_methods([Method::GET, Method::HEAD, Method::PUT, Method::OPTIONS])
        .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION, header::RANGE])
        .expose_headers([
            header::CONTENT_RANGE,
            header::ACCEPT_RANGES,
            header::CONTENT_LENGTH,
            header::CONTENT_DISPOSITION,
        ]);
    Router::new()
        .route(
            "/upload/{id}/{name}",
            put(put_file).get(get_file).options(options),
        )
        .layer(cors)
}

fn text(status: StatusCode, message: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{message}\n"),
    )
        .into_response()
}

fn service(state: &WebState) -> Option<Arc<UploadService>> {
    state
        .server
        .extensions
        .get::<salon_server::upload::UploadService>()
}

/// Deletes the partial file unless the upload was completed.
struct PartialFile {
    path: PathBuf,
    keep: bool,
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if !self.keep {
            // Synchronous: this also runs when the request future is dropped mid-upload.
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

async fn put_file(
    State(state): State<WebState>,
    Path((id, _name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(service) = service(&state) else {
        return text(StatusCode::NOT_FOUND, "uploads are not enabled");
    };
    if !is_valid_id(&id) {
        return text(StatusCode::NOT_FOUND, "no such upload slot");
    }
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let claims = match service.check_put(&id, authorization).await {
        Ok(claims) => claims,
        Err(PutRefusal::BadToken) => {
            return text(
                StatusCode::FORBIDDEN,
                "missing or invalid slot authorization",
            )
        }
        Err(PutRefusal::Expired) => {
            return text(StatusCode::FORBIDDEN, "the upload slot has expired")
        }
        Err(PutRefusal::Unavailable) => {
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                "uploads are unavailable; try again later",
            )
        }
        Err(PutRefusal::Used) => {
            return text(
                StatusCode::CONFLICT,
                "the upload slot has been used already",
            )
        }
    };
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match length {
        None => {
            return text(
                StatusCode::LENGTH_REQUIRED,
                "Content-Length is required and must match the slot's size",
            )
        }
        Some(length) if length > claims.size => {
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("the slot is for {} bytes, not {length}", claims.size),
            )
        }
        Some(length) if length != claims.size => {
            return text(
                StatusCode::BAD_REQUEST,
                &format!("the slot is for {} bytes, not {length}", claims.size),
            )
        }
        Some(_) => {}
    }
    let declared = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map_or(Some("application/octet-stream".to_string()), media_type);
    if declared != media_type(&claims.content_type) {
        return text(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            &format!("the slot is for content of type {}", claims.content_type),
        );
    }
    let Some(_running) = service.begin_put(&id) else {
        return text(StatusCode::CONFLICT, "the upload slot is in use");
    };
    match receive(&service, &claims, body).await {
        Ok(()) => StatusCode::CREATED.into_response(),
        Err(response) => response,
    }
}

/// Stream the body into the partial file, then move it into place and record it.
async fn receive(service: &UploadService, claims: &SlotClaims, body: Body) -> Result<(), Response> {
    let internal = |what: &str, e: &dyn std::fmt::Display| {
        tracing::error!(id = %claims.id, error = %e, "upload: {what}");
        text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the file could not be stored",
        )
    };
    let temp = service.temp_path(&claims.id);
    let mut partial = PartialFile {
        path: temp.clone(),
        keep: false,
    };
    // create_new: never write into a file that exists (another run's leftover is not ours).
    let mut file = tokio::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temp)
        .await
        .map_err(|e| {
            // Not created, so not ours to delete.
            partial.keep = true;
            internal("creating the partial file", &e)
        })?;
    let mut received: u64 = 0;
    let mut stream = body.into_data_stream();
    loop {
        let chunk = match tokio::time::timeout(BODY_IDLE_TIMEOUT, stream.next()).await {
            Err(_) => {
                return Err(text(
                    StatusCode::REQUEST_TIMEOUT,
                    "the upload stalled; nothing was stored",
                ))
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                tracing::debug!(id = %claims.id, error = %e, "upload interrupted");
                return Err(text(
                    StatusCode::BAD_REQUEST,
                    "the upload was interrupted; nothing was stored",
                ));
            }
            Ok(Some(Ok(chunk))) => chunk,
        };
        received = received.saturating_add(chunk.len() as u64);
        if received > claims.size {
            return Err(text(
                StatusCode::PAYLOAD_TOO_LARGE,
                &format!("the body is longer than the slot's {} bytes", claims.size),
            ));
        }
        file.write_all(&chunk)
            .await
            .map_err(|e| internal("writing", &e))?;
    }
    if received != claims.size {
        return Err(text(
            StatusCode::BAD_REQUEST,
            &format!(
                "the body had {received} bytes, the slot is for {}",
                claims.size
            ),
        ));
    }
    file.sync_all().await.map_err(|e| internal("syncing", &e))?;
    drop(file);
    let target = service.file_path(&claims.id);
    // A hard link fails if the target exists: an upload is never overwritten.
    match tokio::fs::hard_link(&temp, &target).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(text(
                StatusCode::CONFLICT,
                "the upload slot has been used already",
            ))
        }
        Err(e) => return Err(internal("moving into place", &e)),
    }
    if let Err(e) = service.complete(claims).await {
        let _ = tokio::fs::remove_file(&target).await;
        return Err(match e {
            salon_server::storage::StorageError::AlreadyExists => text(
                StatusCode::CONFLICT,
                "the upload slot has been used already",
            ),
            e => internal("recording", &e),
        });
    }
    // The partial file's name goes; the data stays under the final name.
    drop(partial);
    Ok(())
}

/// Types a browser may show in place: they run no script in our origin. Everything else
/// (HTML, SVG, XML, PDF, JavaScript, unknown types) is served as an attachment.
fn inline_safe(media_type: &str) -> bool {
    matches!(
        media_type,
        "image/png"
            | "image/jpeg"
            | "image/gif"
            | "image/webp"
            | "image/avif"
            | "image/bmp"
            | "text/plain"
    ) || (media_type.starts_with("audio/") || media_type.starts_with("video/"))
}

/// `Content-Disposition` with the file name, ASCII fallback plus RFC 5987 UTF-8 form.
fn disposition(inline: bool, filename: &str) -> HeaderValue {
    let ascii: String = filename
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    let encoded = percent_encoding::utf8_percent_encode(filename, SET);
    let kind = if inline { "inline" } else { "attachment" };
    HeaderValue::from_str(&format!(
        "{kind}; filename=\"{ascii}\"; filename*=UTF-8''{encoded}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

async fn get_file(
    State(state): State<WebState>,
    Path((id, _name)): Path<(String, String)>,
    request: Request,
) -> Response {
    let Some(service) = service(&state) else {
        return text(StatusCode::NOT_FOUND, "uploads are not enabled");
    };
    let record = match service.servable(&id).await {
        Ok(Some(record)) => record,
        Ok(None) => return text(StatusCode::NOT_FOUND, "no such file (or it has expired)"),
        Err(e) => {
            tracing::error!(error = %e, "looking up an upload");
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the file cannot be served",
            );
        }
    };
    let mime: mime::Mime = record
        .content_type
        .parse()
        .unwrap_or(mime::APPLICATION_OCTET_STREAM);
    let inline = inline_safe(mime.essence_str());
    let served = tower_http::services::ServeFile::new_with_mime(service.file_path(&id), &mime)
        .oneshot(request)
        .await;
    let mut response = match served {
        Ok(response) => response.map(Body::new),
        Err(e) => {
            tracing::error!(error = %e, "serving an upload");
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the file cannot be served",
            );
        }
    };
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
    );
    if response.status().is_success() {
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_DISPOSITION,
            disposition(inline, &record.filename),
        );
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("private, max-age=3600"),
        );
    }
    response
}

/// A plain `OPTIONS` (CORS preflights are answered by the layer before they get here).
async fn options() -> Response {
    (
        StatusCode::NO_CONTENT,
        [(header::ALLOW, "GET, HEAD, PUT, OPTIONS")],
    )
        .into_response()
}
