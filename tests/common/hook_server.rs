//! A webhook on 127.0.0.1 for engine tests: answers each POST with its handler's value and
//! counts calls, keeping every request it was sent.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::routing::post;
use serde_json::Value;

type Handler = dyn Fn(&Value) -> Value + Send + Sync;

pub struct HookServer {
    pub url: String,
    calls: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<Value>>>,
}

impl HookServer {
    pub async fn start(handler: impl Fn(&Value) -> Value + Send + Sync + 'static) -> Self {
        let handler: Arc<Handler> = Arc::new(handler);
        let calls = Arc::new(AtomicUsize::new(0));
        let requests: Arc<Mutex<Vec<Value>>> = Arc::default();
        let (counter, kept) = (calls.clone(), requests.clone());
        let app = Router::new().route(
            "/hook",
            post(move |body: Bytes| {
                let (handler, counter, kept) = (handler.clone(), counter.clone(), kept.clone());
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let answer = handler(&request);
                    kept.lock().unwrap_or_else(|e| e.into_inner()).push(request);
                    axum::Json(answer)
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            url: format!("http://{addr}/hook"),
            calls,
            requests,
        }
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<Value> {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}
