//! A stand-in for Prometheus' query API: `GET /api/v1/query` answered in Prometheus'
//! documented JSON format, with answers the test chooses per query (a value, an empty
//! vector, NaN, an error) and every request it got recorded (query and headers).
//! Plain threads, not the test's runtime: it outlives each `#[tokio::test]`, as the
//! operator that asks it does.

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
