//! Prometheus for the metric-gate suites, two ways:
//!
//! - [`Prometheus`]: the real server, built from its Go module by
//!   `e2e/controlplane/build-prometheus.sh`, scraping an [`Exporter`] the test
//!   serves and sets values on (tests/rollout_prometheus);
//! - [`StandIn`]: `GET /api/v1/query` answered in Prometheus' documented JSON
//!   format, with answers the test chooses per query (a value, an empty vector, NaN,
//!   an error, a slow answer) and every request it got recorded (query and
//!   headers): the cases a real server cannot be made to produce on cue
//!   (tests/rollout_metrics).
//!
//! Plain threads and processes, not the test's runtime: they outlive each
//! `#[tokio::test]`, as the operator that asks them does.

use std::{
    io::{BufRead, BufReader, Write},
    net::{TcpListener, TcpStream},
    sync::{Arc, Mutex},
};

/// What the stand-in answers a query.
#[derive(Clone, Debug)]
pub enum Answer {
    /// A vector with one series per value (`"0.5"`, `"NaN"`, `"+Inf"`; none: empty).
    Vector(Vec<String>),
    /// `{"status":"error"}` with HTTP 400, as Prometheus answers a bad query.
    Error(String),
    /// The answer, after this long (to make the operator's request time out).
    Slow(std::time::Duration, Box<Answer>),
}

impl Answer {
    pub fn value(value: &str) -> Self {
        Self::Vector(vec![value.to_owned()])
    }

    fn http(&self) -> (u16, String) {
        match self {
            Self::Vector(values) => {
                let result: Vec<serde_json::Value> = values
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        serde_json::json!({"metric": {"series": i.to_string()}, "value": [1_764_633_600.123, v]})
                    })
                    .collect();
                let body = serde_json::json!({"status": "success", "data": {"resultType": "vector", "result": result}});
                (200, body.to_string())
            }
            Self::Error(error) => {
                (400, serde_json::json!({"status": "error", "errorType": "bad_data", "error": error}).to_string())
            }
            Self::Slow(delay, answer) => {
                std::thread::sleep(*delay);
                answer.http()
            }
        }
    }
}

/// A request the stand-in got.
#[derive(Clone, Debug)]
pub struct Asked {
    pub query: String,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
}

#[derive(Default)]
struct State {
    /// The last rule whose text the query contains answers; none: an empty vector.
    rules: Vec<(String, Answer)>,
    asked: Vec<Asked>,
}

/// The running stand-in.
#[derive(Clone)]
pub struct StandIn {
    pub url: String,
    state: Arc<Mutex<State>>,
}

impl StandIn {
    /// Listens on a loopback port until the process ends.
    pub fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let url = format!("http://{}", listener.local_addr()?);
        let state = Arc::new(Mutex::new(State::default()));
        let serving = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = serving.clone();
                std::thread::spawn(move || {
                    let _ = serve(stream, &state);
                });
            }
        });
        Ok(Self { url, state })
    }

    /// Answers queries containing `text` with `answer` from now on.
    pub fn answer(&self, text: &str, answer: Answer) {
        self.lock().rules.push((text.to_owned(), answer));
    }

    /// The requests whose query contains `text`, oldest first.
    pub fn asked(&self, text: &str) -> Vec<Asked> {
        self.lock().asked.iter().filter(|a| a.query.contains(text)).cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn serve(stream: TcpStream, state: &Mutex<State>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let target = line.split_whitespace().nth(1).unwrap_or_default().to_owned();
    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = header.trim_end().split_once(':') {
            headers.push((name.trim().to_lowercase(), value.trim().to_owned()));
        }
    }
    let (path, params) = target.split_once('?').unwrap_or((&target, ""));
    let query = params.split('&').find_map(|p| p.strip_prefix("query=")).map(decode);
    let (status, body) = match (path, query) {
        ("/api/v1/query", Some(query)) => {
            let answer = {
                let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
                let rule = state.rules.iter().rev().find(|(text, _)| query.contains(text.as_str()));
                let answer = rule.map(|(_, a)| a.clone());
                state.asked.push(Asked { query, headers });
                answer
            };
            answer.unwrap_or(Answer::Vector(Vec::new())).http()
        }
        _ => (404, "404 page not found".to_owned()),
    };
    let reason = if status == 200 { "OK" } else { "Error" };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

/// Decodes a percent-encoded (and `+` for space) query parameter.
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(byte) => {
                        out.push(byte);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' => out.push(b' '),
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A Prometheus exposition endpoint (`GET /metrics`, text format) serving the series
/// the test sets, for a real Prometheus to scrape.
#[derive(Clone)]
pub struct Exporter {
    /// `host:port`, as a scrape target.
    pub target: String,
    series: Arc<Mutex<std::collections::BTreeMap<String, f64>>>,
}

impl Exporter {
    /// Listens on a loopback port until the process ends.
    pub fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let target = listener.local_addr()?.to_string();
        let series = Arc::new(Mutex::new(std::collections::BTreeMap::new()));
        let serving = series.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let series = serving.clone();
                std::thread::spawn(move || {
                    let _ = expose(stream, &series);
                });
            }
        });
        Ok(Self { target, series })
    }

    /// Exposes `series` (a name with labels: `errors{namespace="a"}`) at `value`.
    pub fn set(&self, series: &str, value: f64) {
        self.series.lock().unwrap_or_else(|e| e.into_inner()).insert(series.to_owned(), value);
    }
}

fn expose(stream: TcpStream, series: &Mutex<std::collections::BTreeMap<String, f64>>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header.trim().is_empty() {
            break;
        }
    }
    let body: String = series
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .map(|(series, value)| format!("{series} {}\n", exposition_value(*value)))
        .collect();
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

/// A sample value as the text exposition format writes it (`+Inf`, `-Inf`, `NaN`).
fn exposition_value(value: f64) -> String {
    match value {
        v if v.is_nan() => "NaN".to_owned(),
        v if v.is_infinite() => if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned(),
        v => v.to_string(),
    }
}

/// Builds Prometheus if needed (cached by its pins) and returns the binary.
/// `BERTH_PROMETHEUS_BIN` points at a prebuilt one instead.
pub fn ensure_binary() -> anyhow::Result<std::path::PathBuf> {
    if let Some(path) = std::env::var_os("BERTH_PROMETHEUS_BIN") {
        return Ok(std::path::PathBuf::from(path));
    }
    crate::path_printed_by(&crate::repo_root().join("e2e/controlplane/build-prometheus.sh"), &[])
}

/// How often the real Prometheus scrapes the exporter.
pub const SCRAPE_INTERVAL_SECONDS: u64 = 1;

/// A real Prometheus on loopback scraping one [`Exporter`]; ended with the test
/// process (a watchdog, as for the operator), or when dropped.
pub struct Prometheus {
    /// `http://127.0.0.1:<port>`: what Berth's `--prometheus-url` names.
    pub url: String,
    pub exporter: Exporter,
    /// Its log (stdout and stderr).
    pub log: std::path::PathBuf,
    child: std::process::Child,
}

impl Prometheus {
    /// Starts Prometheus with its data and log under `dir`, scraping a new exporter
    /// every [`SCRAPE_INTERVAL_SECONDS`], and waits until it is ready.
    pub fn start(dir: &std::path::Path) -> anyhow::Result<Self> {
        use anyhow::Context;
        use std::os::unix::process::CommandExt;
        let binary = ensure_binary()?;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let exporter = Exporter::start().context("starting the exporter")?;
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global: {{scrape_interval: {SCRAPE_INTERVAL_SECONDS}s, evaluation_interval: {SCRAPE_INTERVAL_SECONDS}s}}\n\
                 scrape_configs:\n  - job_name: berth-e2e\n    static_configs: [{{targets: ['{}']}}]\n",
                exporter.target
            ),
        )
        .context("writing prometheus.yml")?;
        let port = TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).context("a free port")?.port();
        let log = dir.join("prometheus.log");
        let out = std::fs::File::create(&log).context("creating prometheus.log")?;
        let child = std::process::Command::new("bash")
            .args(["-c", crate::operator::WATCHDOG, "prometheus", &std::process::id().to_string()])
            .arg(&binary)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .env("BERTH_E2E_WRAPPER", "")
            .process_group(0)
            .stdin(std::process::Stdio::null())
            .stdout(out.try_clone().context("log handle")?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut prometheus = Self { url: format!("http://127.0.0.1:{port}"), exporter, log, child };
        prometheus.wait_ready(std::time::Duration::from_secs(60))?;
        Ok(prometheus)
    }

    fn wait_ready(&mut self, limit: std::time::Duration) -> anyhow::Result<()> {
        let started = std::time::Instant::now();
        let address = self.url.trim_start_matches("http://").to_owned();
        while started.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                anyhow::bail!("prometheus exited ({status}):\n{log}");
            }
            if get(&address, "/-/ready").is_some_and(|(status, _)| status == 200) {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        anyhow::bail!("prometheus was not ready within {limit:?}; see {}", self.log.display())
    }

    /// The instant query's result as Prometheus answers it now (for a test to wait
    /// until a scrape landed).
    pub fn query(&self, query: &str) -> Option<serde_json::Value> {
        let encoded: String = query
            .bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
                _ => format!("%{b:02X}"),
            })
            .collect();
        let (status, body) = get(self.url.trim_start_matches("http://"), &format!("/api/v1/query?query={encoded}"))?;
        let body: serde_json::Value = serde_json::from_str(&body).ok()?;
        (status == 200).then(|| body["data"]["result"].clone())
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.0 GET on loopback (1.0, so the body is never chunked): status and
/// body.
fn get(address: &str, path: &str) -> Option<(u16, String)> {
    use std::io::Read;
    let mut stream = TcpStream::connect(address).ok()?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Some((status, body))
}
