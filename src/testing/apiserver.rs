//! A scripted apiserver for unit tests of code that calls Kubernetes (after
//! kube-rs/controller-rs `src/fixtures.rs`): a [`kube::Client`] whose other end checks
//! each call against the script and answers it. Test builds only (tower-test is a
//! dev-dependency).

use http_body_util::BodyExt;
use hyper::{Request, Response};
use kube::client::Body;
use serde_json::Value;

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

/// The other end of the context's client.
pub struct ScriptedApiServer {
    handle: Handle,
}

/// One call the apiserver received.
#[derive(Debug)]
pub struct Call {
    pub method: String,
    /// Path without the query.
    pub path: String,
    pub body: Value,
}

impl ScriptedApiServer {
    /// Takes the next call, which must be `method path`, and answers `status` with
    /// `reply`. Returns the call, for assertions on what was sent.
    pub async fn expect(&mut self, method: &str, path: &str, status: u16, reply: Value) -> Call {
        let (call, answer) = self.next(method, path).await;
        answer.reply(status, &reply);
        call
    }

    /// Answers the next call, which must be `method path`, by echoing what was sent
    /// (as the apiserver does for an apply that is accepted).
    pub async fn echo(&mut self, method: &str, path: &str) -> Call {
        let (call, answer) = self.next(method, path).await;
        answer.reply(200, &call.body);
        call
    }

    /// Answers a status apply to `object`'s `path`: the object with the status sent.
    pub async fn status(&mut self, path: &str, object: &impl serde::Serialize) -> Call {
        let (call, answer) = self.next("PATCH", path).await;
        let mut reply = serde_json::to_value(object).expect("json");
        reply["status"] = call.body["status"].clone();
        answer.reply(200, &reply);
        call
    }

    /// The next call, which must be `method path`, and the way to answer it.
    async fn next(&mut self, method: &str, path: &str) -> (Call, Answer) {
        let (request, send) = self.handle.next_request().await.expect("the reconcile makes another call");
        let (parts, body) = request.into_parts();
        let bytes = body.collect().await.expect("request body").to_bytes();
        let call = Call {
            method: parts.method.to_string(),
            path: parts.uri.path().to_owned(),
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        };
        assert_eq!((call.method.as_str(), call.path.as_str()), (method, path), "unexpected call: {call:?}");
        (call, Answer(send))
    }

    /// Asserts that no call is waiting (the reconcile made no call beyond the script).
    pub fn assert_done(&mut self) {
        use futures::FutureExt;
        if let Some(Some((request, _))) = self.handle.next_request().now_or_never() {
            panic!("unexpected call: {} {}", request.method(), request.uri());
        }
    }

    /// A refusal as the apiserver words it.
    pub fn refusal(code: u16, reason: &str, message: &str) -> Value {
        serde_json::json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": message, "reason": reason, "code": code})
    }
}

/// The pending answer to one call.
struct Answer(tower_test::mock::SendResponse<Response<Body>>);

impl Answer {
    fn reply(self, status: u16, body: &Value) {
        let body = serde_json::to_vec(body).expect("json");
        self.0.send_response(Response::builder().status(status).body(Body::from(body)).expect("response"));
    }
}

/// A client whose apiserver is the returned script.
pub fn scripted_client() -> (kube::Client, ScriptedApiServer) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (kube::Client::new(service, "default"), ScriptedApiServer { handle })
}
