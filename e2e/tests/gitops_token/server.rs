//! A git host over HTTPS that wants a token: `git http-backend` (the CGI program
//! git itself serves smart HTTP with) behind a small TLS server that checks HTTP
//! basic auth against a token file read at each request, so a test can rotate the
//! token the host accepts as a git host's owner would.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
};

use base64::Engine;

/// The server: serves the bare repositories under a folder at `https://localhost:<port>/<name>`.
pub struct TokenGitHost {
    /// `https://localhost:<port>`.
    pub url: String,
    refused: Arc<AtomicUsize>,
}

impl TokenGitHost {
    /// Serves `base` with the control plane's serving certificate (for localhost and
    /// 127.0.0.1, signed by its CA), accepting the token in `accepted_token_file`.
    pub fn start(base: &Path, accepted_token_file: PathBuf, pki: &Path) -> Self {
        let read = |name: &str| std::fs::read(pki.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
        let certs = rustls_pemfile::certs(&mut &read("apiserver.crt")[..])
            .collect::<Result<Vec<_>, _>>()
            .expect("the serving certificate");
        let key = rustls_pemfile::private_key(&mut &read("apiserver.key")[..]).expect("key").expect("a key");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("a TLS configuration");
        let config = Arc::new(config);
        let listener = TcpListener::bind("127.0.0.1:0").expect("a port");
        let port = listener.local_addr().expect("an address").port();
        let refused = Arc::new(AtomicUsize::new(0));
        let (base, counter) = (base.to_owned(), refused.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (config, base, token, counter) =
                    (config.clone(), base.clone(), accepted_token_file.clone(), counter.clone());
                std::thread::spawn(move || serve(stream, config, &base, &token, &counter));
            }
        });
        TokenGitHost { url: format!("https://localhost:{port}"), refused }
    }

    /// How many requests were refused for a missing or wrong token.
    pub fn refused(&self) -> usize {
        self.refused.load(Ordering::SeqCst)
    }
}

/// One request on one connection, then the connection closes.
fn serve(stream: TcpStream, config: Arc<rustls::ServerConfig>, base: &Path, token_file: &Path, refused: &AtomicUsize) {
    let Ok(connection) = rustls::ServerConnection::new(config) else { return };
    let mut tls = rustls::StreamOwned::new(connection, stream);
    let Some(request) = read_request(&mut tls) else { return };
    let accepted = std::fs::read_to_string(token_file).unwrap_or_default();
    let presented = request
        .header("authorization")
        .and_then(|value| value.strip_prefix("Basic "))
        .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64.trim()).ok())
        .and_then(|decoded| String::from_utf8(decoded).ok())
        .and_then(|pair| pair.split_once(':').map(|(_, password)| password.to_owned()));
    let response = if presented.as_deref() == Some(accepted.trim()) {
        git_http_backend(&request, base)
    } else {
        if presented.is_some() {
            refused.fetch_add(1, Ordering::SeqCst);
        }
        b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            .to_vec()
    };
    let _ = tls.write_all(&response);
    let _ = tls.flush();
    tls.conn.send_close_notify();
    let _ = tls.flush();
}

struct Request {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

fn read_request(stream: &mut impl Read) -> Option<Request> {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next()?.to_owned(), parts.next()?.to_owned());
    let (path, query) = target.split_once('?').map_or((target.clone(), String::new()), |(p, q)| (p.into(), q.into()));
    let mut headers = Vec::new();
    loop {
        line.clear();
        reader.read_line(&mut line).ok()?;
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let mut request = Request { method, path, query, headers, body: Vec::new() };
    if request.header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            line.clear();
            reader.read_line(&mut line).ok()?;
            let size = usize::from_str_radix(line.trim().split(';').next()?, 16).ok()?;
            let mut chunk = vec![0; size + 2]; // the chunk and its CRLF
            reader.read_exact(&mut chunk).ok()?;
            if size == 0 {
                break;
            }
            request.body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(length) = request.header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        let mut body = vec![0; length];
        reader.read_exact(&mut body).ok()?;
        request.body = body;
    }
    Some(request)
}

/// Runs `git http-backend` for `request` and turns its CGI answer into an HTTP response.
fn git_http_backend(request: &Request, base: &Path) -> Vec<u8> {
    let mut command = Command::new("git");
    command
        .arg("http-backend")
        .env("GIT_PROJECT_ROOT", base)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        // http-backend lets an authenticated user push (receive-pack).
        .env("REMOTE_USER", "berth")
        .env("REQUEST_METHOD", &request.method)
        .env("PATH_INFO", &request.path)
        .env("QUERY_STRING", &request.query)
        .env("CONTENT_LENGTH", request.body.len().to_string())
        .env("CONTENT_TYPE", request.header("content-type").unwrap_or_default())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(encoding) = request.header("content-encoding") {
        command.env("HTTP_CONTENT_ENCODING", encoding);
    }
    let Ok(mut child) = command.spawn() else {
        return b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec();
    };
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(&request.body);
    }
    let output = child.wait_with_output().map(|o| o.stdout).unwrap_or_default();
    let split = output.windows(4).position(|w| w == b"\r\n\r\n").map(|i| (i, 4));
    let split = split.or_else(|| output.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
    let Some((end, gap)) = split else {
        return b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_vec();
    };
    let cgi_headers = String::from_utf8_lossy(&output[..end]);
    let body = &output[end + gap..];
    let mut status = "200 OK".to_owned();
    let mut response = Vec::new();
    let mut headers = String::new();
    for header in cgi_headers.lines() {
        match header.split_once(':') {
            Some((name, value)) if name.eq_ignore_ascii_case("status") => status = value.trim().to_owned(),
            Some(_) => headers.push_str(&format!("{header}\r\n")),
            None => {}
        }
    }
    response.extend_from_slice(format!("HTTP/1.1 {status}\r\n{headers}").as_bytes());
    response.extend_from_slice(format!("Content-Length: {}\r\nConnection: close\r\n\r\n", body.len()).as_bytes());
    response.extend_from_slice(body);
    response
}
