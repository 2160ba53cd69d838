//! A small fault-injecting HTTP/1.1 proxy between rotationd and the emulator.
//!
//! rotationd's config points at the proxy's port; the proxy forwards each request to the
//! emulator (one upstream connection per request, `Connection: close`), or answers it
//! itself with an injected fault *before* the emulator sees it:
//!
//! * `Throttling`: HTTP 400 with the protocol's throttling error
//!   (`ThrottlingException` for the JSON protocols, `Throttling` for SNS's query protocol),
//!   which the SDK retries with backoff;
//! * `ServerError`: HTTP 500 `InternalFailure`, also retryable.
//!
//! It can also be taken down (`down()`: the listener closes and every open connection is
//! cut, so clients see "connection refused") and brought back on the same port (`up()`),
//! optionally in front of another emulator (`set_upstream`): an outage without the race of
//! a restarted emulator answering before the test has re-seeded it.
//!
//! Faults are injected only before forwarding, so a failed request never reached the
//! emulator: a retried RotateSecret is a first attempt as far as the emulator knows, and the
//! emulator's own request count is the truth about duplicates.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

/// What the proxy did with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Outcome {
    Forwarded,
    Throttled,
    ServerError,
    /// Refused with `AccessDenied` (a [`Proxy::deny`] rule matched).
    Denied,
}

struct Shared {
    upstream: AtomicU16,
    /// Per mille of requests answered with a throttling error / a 500.
    throttle_permille: AtomicU64,
    error_permille: AtomicU64,
    seq: AtomicU64,
    /// Body substrings whose requests are refused with AccessDenied.
    deny: Mutex<Vec<String>>,
    /// (operation, outcome) -> count
    stats: Mutex<BTreeMap<(String, Outcome), usize>>,
    /// (operation, header substring, delay): matching requests wait before forwarding.
    holds: Mutex<Vec<(String, String, std::time::Duration)>>,
    /// operation -> (forwarded requests in flight now, the most ever at once)
    in_flight: Mutex<BTreeMap<String, (usize, usize)>>,
}

pub struct Proxy {
    port: u16,
    shared: Arc<Shared>,
    /// Its own runtime, so it serves whatever the test's runtime is doing (tests call
    /// blocking helpers); shut down in the background on drop, which is allowed anywhere.
    runtime: Option<tokio::runtime::Runtime>,
    serving: Mutex<Option<CancellationToken>>,
}

impl Proxy {
    /// A proxy on a free loopback port in front of `127.0.0.1:upstream_port`, up, no faults.
    pub fn start(upstream_port: u16) -> Proxy {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let proxy = Proxy {
            port,
            shared: Arc::new(Shared {
                upstream: AtomicU16::new(upstream_port),
                throttle_permille: AtomicU64::new(0),
                error_permille: AtomicU64::new(0),
                seq: AtomicU64::new(0),
                deny: Mutex::new(Vec::new()),
                stats: Mutex::new(BTreeMap::new()),
                holds: Mutex::new(Vec::new()),
                in_flight: Mutex::new(BTreeMap::new()),
            }),
            runtime: Some(runtime),
            serving: Mutex::new(None),
        };
        proxy.up();
        proxy
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Answer `throttle` and `server_error` per mille of requests with an injected fault.
    /// Faults are spread deterministically (a request sequence number, not a coin), so
    /// a run is reproducible and no long streak can exhaust the SDK's retries.
    pub fn set_faults(&self, throttle_permille: u64, error_permille: u64) {
        assert!(throttle_permille + error_permille <= 1000);
        self.shared
            .throttle_permille
            .store(throttle_permille, Ordering::SeqCst);
        self.shared
            .error_permille
            .store(error_permille, Ordering::SeqCst);
    }

    /// Refuse every request whose body contains `needle` with HTTP 403 `AccessDenied`, as
    /// IAM does: e.g. an `AssumeRole` of a role whose trust policy does not name the
    /// caller (the form-encoded `RoleArn=arn%3Aaws%3Aiam%3A%3A<account>...`).
    pub fn deny(&self, needle: &str) {
        self.shared.deny.lock().unwrap().push(needle.to_string());
    }

    /// Stop refusing anything [`Proxy::deny`] refused: the permission came back.
    pub fn allow_all(&self) {
        self.shared.deny.lock().unwrap().clear();
    }

    /// Hold each forwarded `operation` request whose head (request line and headers, e.g.
    /// the SigV4 scope `/us-east-2/secretsmanager/` in `Authorization`) contains `needle`
    /// for `delay` before forwarding it: a slow account-region.
    pub fn hold(&self, operation: &str, needle: &str, delay: std::time::Duration) {
        self.shared
            .holds
            .lock()
            .unwrap()
            .push((operation.to_string(), needle.to_string(), delay));
    }

    /// The most `operation` requests the proxy has had in flight (forwarded, unanswered)
    /// at once: 1 when the client sends them one after another.
    pub fn max_in_flight(&self, operation: &str) -> usize {
        self.shared
            .in_flight
            .lock()
            .unwrap()
            .get(operation)
            .map_or(0, |(_, max)| *max)
    }

    pub fn set_upstream(&self, port: u16) {
        self.shared.upstream.store(port, Ordering::SeqCst);
    }

    /// Close the listener and cut every open connection: clients get "connection refused".
    pub fn down(&self) {
        if let Some(token) = self.serving.lock().unwrap().take() {
            token.cancel();
        }
        // The accept loop and connection tasks stop at their next poll; wait until the port
        // really refuses connections so the caller's outage has begun when this returns.
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("proxy port {} still accepts after down()", self.port);
    }

    /// Listen again on the same port.
    pub fn up(&self) {
        let mut serving = self.serving.lock().unwrap();
        assert!(serving.is_none(), "proxy is already up");
        let token = CancellationToken::new();
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        // SO_REUSEADDR so the port can be bound again at once after `down()`, whatever
        // connections linger in TIME_WAIT. Registering the listener needs the proxy's runtime
        // entered; `enter` does not block, so this is fine from inside a test's runtime.
        let listener = {
            let _guard = self.runtime.as_ref().unwrap().enter();
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.set_reuseaddr(true).unwrap();
            socket
                .bind(addr)
                .unwrap_or_else(|e| panic!("cannot bind proxy port {}: {e}", addr.port()));
            socket.listen(1024).unwrap()
        };
        let shared = self.shared.clone();
        let stop = token.clone();
        self.runtime.as_ref().unwrap().spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let shared = shared.clone();
                        let stop = stop.clone();
                        tokio::spawn(async move {
                            tokio::select! {
                                _ = stop.cancelled() => {}
                                _ = serve(stream, shared) => {}
                            }
                        });
                    }
                }
            }
        });
        *serving = Some(token);
    }

    /// How many requests of `operation` ended with `outcome`.
    pub fn count(&self, operation: &str, outcome: Outcome) -> usize {
        self.shared
            .stats
            .lock()
            .unwrap()
            .get(&(operation.to_string(), outcome))
            .copied()
            .unwrap_or(0)
    }

    /// Requests that ended with `outcome`, all operations.
    pub fn total(&self, outcome: Outcome) -> usize {
        self.shared
            .stats
            .lock()
            .unwrap()
            .iter()
            .filter(|((_, o), _)| *o == outcome)
            .map(|(_, n)| n)
            .sum()
    }

    pub fn stats(&self) -> BTreeMap<(String, Outcome), usize> {
        self.shared.stats.lock().unwrap().clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(token) = self.serving.lock().unwrap().take() {
            token.cancel();
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

struct Request {
    head: Vec<String>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.head[1..].iter().find_map(|line| {
            let (k, v) = line.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// `RotateSecret` from `X-Amz-Target: secretsmanager.RotateSecret`, or the query
    /// protocol's `Action=Publish`.
    fn operation(&self) -> String {
        if let Some(target) = self.header("x-amz-target") {
            return target.rsplit('.').next().unwrap_or(target).to_string();
        }
        let body = String::from_utf8_lossy(&self.body);
        body.split('&')
            .find_map(|kv| kv.strip_prefix("Action="))
            .unwrap_or("unknown")
            .to_string()
    }
}

async fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut head = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        let line = line.trim_end_matches(['\r', '\n']).to_string();
        if line.is_empty() {
            break;
        }
        head.push(line);
    }
    let mut request = Request {
        head,
        body: Vec::new(),
    };
    if request
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        panic!("the test proxy does not handle chunked request bodies");
    }
    let len: usize = request
        .header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    request.body = vec![0; len];
    reader.read_exact(&mut request.body).await.ok()?;
    Some(request)
}

async fn serve(stream: TcpStream, shared: Arc<Shared>) {
    let mut reader = BufReader::new(stream);
    while let Some(request) = read_request(&mut reader).await {
        let operation = request.operation();
        let n = shared.seq.fetch_add(1, Ordering::SeqCst) % 1000;
        let throttle = shared.throttle_permille.load(Ordering::SeqCst);
        let error = shared.error_permille.load(Ordering::SeqCst);
        // Spread the faulty sequence numbers evenly over each block of 1000 requests.
        let slot = (n * 617) % 1000;
        let body = String::from_utf8_lossy(&request.body);
        let denied = shared
            .deny
            .lock()
            .unwrap()
            .iter()
            .any(|needle| body.contains(needle.as_str()));
        let outcome = if denied {
            Outcome::Denied
        } else if slot < throttle {
            Outcome::Throttled
        } else if slot < throttle + error {
            Outcome::ServerError
        } else {
            Outcome::Forwarded
        };
        let response = match outcome {
            Outcome::Forwarded => {
                {
                    let mut f = shared.in_flight.lock().unwrap();
                    let (now, max) = f.entry(operation.clone()).or_default();
                    *now += 1;
                    *max = (*max).max(*now);
                }
                let head = request.head.join("\n");
                let hold = shared
                    .holds
                    .lock()
                    .unwrap()
                    .iter()
                    .find(|(op, needle, _)| *op == operation && head.contains(needle.as_str()))
                    .map(|(_, _, delay)| *delay);
                if let Some(delay) = hold {
                    tokio::time::sleep(delay).await;
                }
                let forwarded = forward(&request, shared.upstream.load(Ordering::SeqCst)).await;
                if let Some((now, _)) = shared.in_flight.lock().unwrap().get_mut(&operation) {
                    *now -= 1;
                }
                match forwarded {
                    Some(r) => r,
                    // The emulator is gone: behave like it, cut the connection.
                    None => return,
                }
            }
            Outcome::Throttled | Outcome::ServerError | Outcome::Denied => fault(&request, outcome),
        };
        *shared
            .stats
            .lock()
            .unwrap()
            .entry((operation, outcome))
            .or_default() += 1;
        if reader.get_mut().write_all(&response).await.is_err() {
            return;
        }
        if outcome == Outcome::Forwarded {
            // Forwarded responses carry `Connection: close` (see `forward`).
            return;
        }
    }
}

/// Send `request` to the emulator on a fresh connection and return its whole response,
/// with `Connection: close` so the client opens a new connection for its next request.
async fn forward(request: &Request, upstream: u16) -> Option<Vec<u8>> {
    let mut up = TcpStream::connect(("127.0.0.1", upstream)).await.ok()?;
    let mut out = Vec::new();
    out.extend_from_slice(request.head[0].as_bytes());
    out.extend_from_slice(b"\r\n");
    for line in &request.head[1..] {
        if line.to_ascii_lowercase().starts_with("connection:") {
            continue;
        }
        out.extend_from_slice(line.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    out.extend_from_slice(&request.body);
    up.write_all(&out).await.ok()?;
    let mut response = Vec::new();
    up.read_to_end(&mut response).await.ok()?;
    let split = response.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&response[..split]).to_string();
    let mut fixed = Vec::with_capacity(response.len() + 32);
    for line in head.split("\r\n") {
        if line.to_ascii_lowercase().starts_with("connection:") {
            continue;
        }
        fixed.extend_from_slice(line.as_bytes());
        fixed.extend_from_slice(b"\r\n");
    }
    fixed.extend_from_slice(b"Connection: close\r\n\r\n");
    fixed.extend_from_slice(&response[split + 4..]);
    Some(fixed)
}

/// The error response AWS sends for `outcome`, in the request's protocol.
fn fault(request: &Request, outcome: Outcome) -> Vec<u8> {
    let (status, code, message) = match outcome {
        Outcome::Throttled => ("400 Bad Request", "ThrottlingException", "Rate exceeded"),
        Outcome::Denied => (
            "403 Forbidden",
            "AccessDenied",
            "User is not authorized to perform: sts:AssumeRole (denied by the test proxy)",
        ),
        _ => (
            "500 Internal Server Error",
            "InternalFailure",
            "injected by the test proxy",
        ),
    };
    let (content_type, body) = if request.header("x-amz-target").is_some() {
        (
            "application/x-amz-json-1.1",
            format!(r#"{{"__type":"{code}","message":"{message}"}}"#),
        )
    } else {
        // Query protocol (SNS): SNS calls its throttling error `Throttling`.
        let code = if outcome == Outcome::Throttled {
            "Throttling"
        } else {
            code
        };
        (
            "text/xml",
            format!(
                "<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code>\
                 <Message>{message}</Message></Error><RequestId>proxy</RequestId></ErrorResponse>"
            ),
        )
    };
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nx-amzn-ErrorType: {code}\r\n\
         x-amzn-RequestId: proxy\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}
