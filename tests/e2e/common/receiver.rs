//! An HTTP receiver on loopback for the channel tests: it records every request (method,
//! path, headers, body) and answers as told: accept, refuse with a status, or hang.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};

/// How the receiver answers a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Ok,
    Status(u16),
    /// Never answers (the client's timeout must end it).
    Hang,
}

#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
    /// What the receiver answered.
    pub answer: Answer,
}

impl Request {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str)
    }
}

#[derive(Default)]
struct Inner {
    requests: Vec<Request>,
    /// Per path; a path not here is answered Ok.
    answers: HashMap<String, Answer>,
}

#[derive(Clone)]
pub struct Receiver {
    pub base: String,
    inner: Arc<Mutex<Inner>>,
}

impl Receiver {
    pub async fn start() -> Receiver {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let app = axum::Router::new().fallback(handle).with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
        Receiver { base, inner }
    }

    pub fn answer(&self, path: &str, answer: Answer) {
        self.inner.lock().expect("lock").answers.insert(path.to_string(), answer);
    }

    pub fn requests(&self) -> Vec<Request> {
        self.inner.lock().expect("lock").requests.clone()
    }

    /// The requests to `path` that were accepted.
    pub fn accepted(&self, path: &str) -> Vec<Request> {
        self.requests().into_iter().filter(|r| r.path == path && r.answer == Answer::Ok).collect()
    }

    /// Waits until `path` has had `n` requests (any answer).
    pub async fn wait_for(&self, path: &str, n: usize, timeout: Duration) -> Vec<Request> {
        let start = Instant::now();
        loop {
            let got: Vec<Request> = self.requests().into_iter().filter(|r| r.path == path).collect();
            if got.len() >= n {
                return got;
            }
            assert!(start.elapsed() < timeout, "timed out waiting for {n} requests to {path}: {got:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn handle(
    State(inner): State<Arc<Mutex<Inner>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let path = uri.path().to_string();
    let answer = {
        let mut inner = inner.lock().expect("lock");
        let answer = inner.answers.get(&path).copied().unwrap_or(Answer::Ok);
        inner.requests.push(Request {
            method: method.to_string(),
            path,
            headers: headers
                .iter()
                .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
                .collect(),
            body: body.to_vec(),
            answer,
        });
        answer
    };
    match answer {
        Answer::Ok => (StatusCode::OK, "{\"id\":\"ok\"}".into()),
        Answer::Status(s) => {
            (StatusCode::from_u16(s).expect("status"), "{\"error\":\"refused by the test\"}".into())
        }
        Answer::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            (StatusCode::OK, String::new())
        }
    }
}
