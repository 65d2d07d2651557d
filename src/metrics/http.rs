// SPDX-License-Identifier: MPL-2.0
//! `GET /metrics` over HTTP, on a thread of its own (tiny_http adds its
//! accept thread and a thread per connection): a slow or stuck scraper never
//! reaches a streaming thread.

use std::sync::Arc;
use std::thread::JoinHandle;

use super::encode::{self, Format};
use super::{CAT, registry};

pub struct Server {
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Listens on `address`; the error names it, for the one WARNING.
    pub fn start(address: &str) -> Result<Server, String> {
        let server = tiny_http::Server::http(address)
            .map_err(|err| format!("cannot listen on {address}: {err}"))?;
        let server = Arc::new(server);
        let serving = server.clone();
        let thread = std::thread::Builder::new()
            .name("edgeguard-metrics-http".into())
            .spawn(move || serve(&serving))
            .map_err(|err| format!("cannot start the server thread for {address}: {err}"))?;
        gst::info!(CAT, "serving metrics on http://{address}/metrics");
        Ok(Server {
            server,
            thread: Some(thread),
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(server: &tiny_http::Server) {
    for request in server.incoming_requests() {
        let response = respond(&request);
        if let Err(err) = request.respond(response) {
            gst::debug!(CAT, "scrape answer not delivered: {err}");
        }
    }
}

fn respond(request: &tiny_http::Request) -> tiny_http::Response<std::io::Cursor<Vec<u8>>> {
    let path = request.url().split('?').next().unwrap_or_default();
    let get = matches!(
        request.method(),
        tiny_http::Method::Get | tiny_http::Method::Head
    );
    if path != "/metrics" || !get {
        return tiny_http::Response::from_string("edgeguard serves GET /metrics\n")
            .with_status_code(404);
    }
    let accept = request
        .headers()
        .iter()
        .find(|h| h.field.equiv("Accept"))
        .map(|h| h.value.as_str());
    let format = Format::from_accept(accept);
    let body = encode::encode(&registry::collect(), format);
    let content_type =
        tiny_http::Header::from_bytes(&b"Content-Type"[..], format.content_type().as_bytes())
            .expect("a valid header");
    tiny_http::Response::from_string(body).with_header(content_type)
}
