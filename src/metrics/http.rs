// SPDX-License-Identifier: MPL-2.0
//! `GET /metrics` over HTTP (hyper), served by one thread of its own that
//! runs a single-threaded tokio runtime: however many clients connect, the
//! endpoint costs that one thread, and a slow or stuck scraper never reaches
//! a streaming thread.
//!
//! What a client can hold is bounded: at most `max-connections` open (more
//! are shed as they are accepted, and counted: see `connections`), and a
//! connection that moves no byte for `idle-timeout` (waiting for a request,
//! or for its client to read the answer) is closed and counted; a request
//! head must arrive whole within twice that.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Body, Bytes, Frame, Incoming, SizeHint};
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::connections::{Activity, Connections, Ending, Slot, Snapshot};
use super::encode::{self, Format};
use super::{CAT, registry};

const THREAD_NAME: &str = "edgeguard-metrics-http";
/// After a failed accept (out of file descriptors): a pause, so the loop
/// does not spin while the process is short of them.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: u64,
    pub idle_timeout: Duration,
}

pub struct Server {
    address: SocketAddr,
    stop: Arc<Notify>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    /// Listens on `address` (a port 0 gets one from the kernel); the error
    /// names the address, for the one WARNING.
    pub fn start(address: &str, limits: Limits) -> Result<Server, String> {
        let listener = std::net::TcpListener::bind(address)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|err| format!("cannot listen on {address}: {err}"))?;
        let bound = listener
            .local_addr()
            .map_err(|err| format!("cannot listen on {address}: {err}"))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|err| format!("cannot start the server for {address}: {err}"))?;
        let stop = Arc::new(Notify::new());
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name(THREAD_NAME.into())
            .spawn(move || runtime.block_on(serve(listener, limits, stopped)))
            .map_err(|err| format!("cannot start the server thread for {address}: {err}"))?;
        gst::info!(
            CAT,
            "serving metrics on http://{bound}/metrics (asked for {address}; at most {} \
             connections, idle timeout {:?})",
            limits.max_connections,
            limits.idle_timeout
        );
        Ok(Server {
            address: bound,
            stop,
            thread: Some(thread),
        })
    }

    /// The address really bound (the kernel's port where 0 was asked).
    #[cfg(test)]
    pub fn local_addr(&self) -> SocketAddr {
        self.address
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // notify_one keeps the wake-up even when the loop is not waiting yet.
        self.stop.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        gst::info!(
            CAT,
            "stopped serving metrics on http://{}/metrics",
            self.address
        );
    }
}

/// Accepts until stopped; each admitted connection is a task on this
/// thread. Dropping the runtime at the end closes the ones still open.
async fn serve(listener: std::net::TcpListener, limits: Limits, stop: Arc<Notify>) {
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(err) => {
            gst::warning!(CAT, "cannot serve metrics: {err}");
            return;
        }
    };
    let connections = Connections::new(limits.max_connections);
    let mut stopped = pin!(stop.notified());
    loop {
        let accepted = tokio::select! {
            _ = &mut stopped => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => match connections.admit() {
                Some(slot) => {
                    tokio::spawn(connection(stream, slot, limits, connections.clone()));
                    // The new connection reads what it was sent before more
                    // are admitted: accepting a backlog at once would shed
                    // it, still idle, for the ones queued behind it.
                    tokio::task::yield_now().await;
                }
                None => {
                    gst::debug!(
                        CAT,
                        "refused {peer}: {} connections open",
                        limits.max_connections
                    );
                    drop(stream);
                }
            },
            Err(err) => {
                gst::debug!(CAT, "accept failed: {err}");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

async fn connection(
    stream: TcpStream,
    mut slot: Slot,
    limits: Limits,
    connections: Arc<Connections>,
) {
    // hyper may write an answer's head and body apart: without this, Nagle's
    // algorithm holds the body until the client's delayed ACK (40 ms).
    if let Err(err) = stream.set_nodelay(true) {
        gst::debug!(CAT, "cannot set TCP_NODELAY: {err}");
    }
    let (stream, last_active) = Watched::new(stream, slot.activity());
    let activity = slot.activity();
    let service = hyper::service::service_fn(move |request| {
        activity.answering();
        let written = activity.clone();
        let response =
            respond(&request, &connections.snapshot()).map(|body| Answer { body, written });
        async move { Ok::<_, Infallible>(response) }
    });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        // A head sent a byte at a time is never idle: this bounds it. Twice
        // the idle timeout, so that a silent connection ends as idle.
        .header_read_timeout(limits.idle_timeout * 2)
        .serve_connection(TokioIo::new(stream), service);
    let mut served = pin!(served);
    // Dropping the connection closes its socket.
    loop {
        let deadline = last_active.since() + limits.idle_timeout;
        // The connection first: bytes waiting on a thread that was slow to
        // run are read (and count as activity) before the deadline is.
        tokio::select! {
            biased;
            served = &mut served => {
                if let Err(err) = served {
                    gst::debug!(CAT, "connection ended: {err}");
                }
                return;
            }
            () = slot.evicted() => return,
            () = tokio::time::sleep_until(deadline) => {
                if last_active.since() + limits.idle_timeout <= Instant::now() {
                    slot.ended(Ending::IdleTimeout);
                    return;
                }
            }
        }
    }
}

/// When a connection last moved a byte, either way.
struct LastActive {
    start: Instant,
    nanos: AtomicU64,
}

impl LastActive {
    fn since(&self) -> Instant {
        self.start + Duration::from_nanos(self.nanos.load(Ordering::Relaxed))
    }

    fn touch(&self) {
        let nanos = self.start.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64;
        self.nanos.store(nanos, Ordering::Relaxed);
    }
}

/// A connection's socket that notes each read or write that moved bytes:
/// the idle timeout counts from the last of them, so a connection that
/// waits for a request, or whose client does not read its answer, ends.
/// Bytes read also mark it reading a request: no longer the first to shed.
struct Watched {
    stream: TcpStream,
    last_active: Arc<LastActive>,
    activity: Activity,
}

impl Watched {
    fn new(stream: TcpStream, activity: Activity) -> (Watched, Arc<LastActive>) {
        let last_active = Arc::new(LastActive {
            start: Instant::now(),
            nanos: AtomicU64::new(0),
        });
        let watched = Watched {
            stream,
            last_active: last_active.clone(),
            activity,
        };
        (watched, last_active)
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.last_active.touch();
            self.activity.reading();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.stream).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.last_active.touch();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// A response body that marks its connection idle again once hyper has
/// written it (and dropped it), so that it may be evicted from then on.
struct Answer {
    body: Full<Bytes>,
    written: Activity,
}

impl Drop for Answer {
    fn drop(&mut self) {
        self.written.idle();
    }
}

impl Body for Answer {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

fn respond(request: &Request<Incoming>, endpoint: &Snapshot) -> Response<Full<Bytes>> {
    let get = matches!(*request.method(), Method::GET | Method::HEAD);
    if request.uri().path() != "/metrics" || !get {
        return Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Full::from("edgeguard serves GET /metrics\n"))
            .expect("a valid response");
    }
    let accept = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok());
    let format = Format::from_accept(accept);
    let body = encode::encode_with_endpoint(&registry::collect(), endpoint, format);
    Response::builder()
        .header(header::CONTENT_TYPE, format.content_type())
        .body(Full::from(body))
        .expect("a valid response")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{ErrorKind, Read, Write};
    use std::sync::atomic::AtomicBool;

    /// A bound for hangs, not a performance expectation.
    const HANG: Duration = Duration::from_secs(60);

    fn server(max_connections: u64, idle_timeout: Duration) -> Server {
        gst::init().unwrap();
        let limits = Limits {
            max_connections,
            idle_timeout,
        };
        Server::start("127.0.0.1:0", limits).unwrap()
    }

    fn connect(server: &Server) -> std::net::TcpStream {
        let stream = std::net::TcpStream::connect(server.local_addr()).unwrap();
        stream.set_read_timeout(Some(HANG)).unwrap();
        stream
    }

    fn scrape(server: &Server) -> String {
        let mut stream = connect(server);
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        assert!(response.starts_with("HTTP/1.1 200 "), "{response}");
        response
    }

    /// Whether the server closed `stream` (it reads the end, or a reset).
    fn closed_by_server(stream: &mut std::net::TcpStream) -> bool {
        let mut byte = [0u8];
        match stream.read(&mut byte) {
            Ok(0) => true,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => true,
            other => panic!("expected the end of the stream, got {other:?}"),
        }
    }

    fn still_open(stream: &std::net::TcpStream) -> bool {
        stream.set_nonblocking(true).unwrap();
        let mut byte = [0u8];
        let open = matches!(stream.peek(&mut byte), Err(e) if e.kind() == ErrorKind::WouldBlock);
        stream.set_nonblocking(false).unwrap();
        open
    }

    #[test]
    fn port_zero_reports_the_port_the_kernel_gave() {
        let server = server(4, HANG);
        assert_ne!(server.local_addr().port(), 0);
        assert!(scrape(&server).contains("edgeguard_http_connections_max 4"));
    }

    #[test]
    fn a_scrape_over_max_evicts_the_connection_idle_longest() {
        let server = server(3, HANG);
        let mut idle: Vec<_> = (0..3).map(|_| connect(&server)).collect();
        // The kernel queues connections in order: the scrape comes fourth
        // and takes the first one's place.
        let response = scrape(&server);
        assert!(
            response.contains("edgeguard_http_connections_closed_total{reason=\"evicted\"} 1"),
            "{response}"
        );
        assert!(
            response.contains("edgeguard_http_connections_open 3"),
            "{response}"
        );
        assert!(closed_by_server(&mut idle[0]));
        assert!(still_open(&idle[1]) && still_open(&idle[2]));
    }

    /// One scrape on a fresh connection: whether it was answered (an
    /// evicted or refused connection reads its end or a reset instead).
    fn scrape_answered(server: &Server) -> bool {
        let Ok(mut stream) = std::net::TcpStream::connect(server.local_addr()) else {
            return false;
        };
        stream.set_read_timeout(Some(HANG)).unwrap();
        let request = b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        let mut response = Vec::new();
        stream.write_all(request).is_ok()
            && stream.read_to_end(&mut response).is_ok()
            && response.starts_with(b"HTTP/1.1 200 ")
    }

    #[test]
    fn a_churn_of_new_connections_never_sheds_a_scrape() {
        const SCRAPES: usize = 300;
        const CHURNERS: usize = 4;
        const HELD_BY_EACH: usize = 8;
        let server = server(4, HANG);
        let address = server.local_addr();
        let stop = AtomicBool::new(false);
        let churned = AtomicU64::new(0);
        let answered = std::thread::scope(|s| {
            for _ in 0..CHURNERS {
                s.spawn(|| {
                    // Connections that come and go without a request, as a
                    // scanner's: each is admitted idle, newest of all, and
                    // the last few stay open so that every slot is taken.
                    let mut held = std::collections::VecDeque::new();
                    while !stop.load(Ordering::Relaxed) {
                        if let Ok(stream) = std::net::TcpStream::connect(address) {
                            held.push_back(stream);
                            churned.fetch_add(1, Ordering::Relaxed);
                        }
                        if held.len() > HELD_BY_EACH {
                            held.pop_front();
                        }
                    }
                });
            }
            let answered = (0..SCRAPES).filter(|_| scrape_answered(&server)).count();
            stop.store(true, Ordering::Relaxed);
            answered
        });
        let churned = churned.load(Ordering::Relaxed);
        assert_eq!(
            answered, SCRAPES,
            "{answered} of {SCRAPES} scrapes answered among {churned} churned connections"
        );
    }

    #[test]
    fn a_connection_that_sent_bytes_outlasts_newcomers_that_sent_none() {
        const MAX: u64 = 3;
        let server = server(MAX, HANG);
        // A request head cut in two, as a slow link delivers it: its
        // connection is no longer idle once the first part is read.
        let mut scraper = connect(&server);
        scraper.write_all(b"GET /metrics HTTP/1.1\r\n").unwrap();
        // A scrape on another connection is answered after that part was
        // read (one thread serves both, in order): a certain point in time.
        scrape(&server);
        // Idle newcomers, more than fill the budget: they evict each other.
        let newcomers: Vec<_> = (0..2 * MAX).map(|_| connect(&server)).collect();
        // Accepted in order: once this scrape is answered, so were they.
        scrape(&server);
        scraper
            .write_all(b"Host: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        scraper.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200 "), "{answer:?}");
        drop(newcomers);
    }

    #[test]
    fn an_idle_connection_is_closed_after_the_timeout_and_counted() {
        // Long enough for this thread to send its request in time even
        // when it is slow to run: the server reads what came before it
        // looks at the deadline.
        let server = server(4, Duration::from_secs(1));
        let mut silent = connect(&server);
        let mut between = connect(&server);
        between
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        // Both end without the client doing anything more: the first sent
        // nothing, the second nothing after its answer.
        assert!(closed_by_server(&mut silent));
        let mut answered = Vec::new();
        between.read_to_end(&mut answered).unwrap();
        assert!(answered.starts_with(b"HTTP/1.1 200 "));
        let response = scrape(&server);
        assert!(
            response.contains("edgeguard_http_connections_closed_total{reason=\"idle-timeout\"} 2"),
            "{response}"
        );
    }
}
