//! The fuzz harness on stable Rust: what `fuzz/fuzz_targets/` feeds libFuzzer, fed here a
//! fixed stream of inputs so `cargo test` catches a panic, a review that should not
//! parse, or a token accepted that should not be, without nightly or cargo-fuzz.
//!
//! Inputs: the seed corpus (`fuzz/corpus/<target>/`), random bytes from a xorshift PRNG
//! with a fixed seed, and mutations of a valid AdmissionReview, approval token and bearer
//! token. The harness (`fuzz/src/lib.rs`, included below) checks every answer; these tests
//! add what each kind of mutation must lead to. `just fuzz` runs the real fuzzers.

#[path = "../fuzz/src/lib.rs"]
mod harness;

use std::path::Path;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use berth::testing::{Review, example};
use harness::{Admitted, admit, approval_token, authenticate, bearer_token, fixtures, verify_approval};

/// xorshift64*: a fixed, dependency-free stream of pseudo-random numbers.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
    /// A byte that changes another when XORed in, keeping ASCII ASCII.
    fn flip(&mut self) -> u8 {
        1 + self.below(127) as u8
    }
    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.byte()).collect()
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a corpus entry").path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let name = path.file_name().expect("a file name").to_string_lossy().into_owned();
            (name, std::fs::read(&path).expect("a corpus file"))
        })
        .collect()
}

#[test]
fn the_seed_corpus_runs_clean_and_means_what_its_names_say() {
    let reviews = corpus("admission_review");
    assert!(reviews.len() >= 10);
    for (name, body) in &reviews {
        let admitted = harness::admission_review(body);
        assert_eq!(admitted.is_some(), name != "no-request.json", "{name}");
    }
    let decided = |name: &str| {
        let (_, body) = reviews.iter().find(|(n, _)| n == name).expect("a seed");
        harness::admission_review(body).expect("a review")
    };
    assert!(decided("create-production-approved.json").allowed("environmentrequests"));
    // Created without an approval, it waits for one (an approval is bound to its UID).
    assert!(decided("create-production-unapproved.json").allowed("environmentrequests"));
    assert!(!decided("delete-class-staging.json").allowed("environmentclasses"), "staging is in use");
    assert!(decided("create-rollout.json").allowed("rollouts"));

    for (target, run) in [("approval_token", approval_token as fn(&[u8]) -> bool), ("bearer_token", bearer_token)] {
        let seeds = corpus(target);
        assert!(seeds.len() >= 8, "{target}");
        for (name, data) in &seeds {
            let accepted = run(data);
            assert_eq!(accepted, name.starts_with("signed-valid"), "{target}/{name}");
        }
    }
}

#[test]
fn random_bytes_are_not_reviews_and_never_panic_a_target() {
    let mut rng = Rng::new(0x5eed_0001);
    let json_ish = b"{}[]\":,.-+0123456789eEtruefalsnul \\\"abcxyz\x00\xff";
    for i in 0..1500 {
        let len = rng.below(300);
        let data: Vec<u8> =
            if rng.below(2) == 0 { rng.bytes(len) } else { (0..len).map(|_| *rng.pick(json_ish)).collect() };
        assert!(admit(&data).is_err(), "{:?}", String::from_utf8_lossy(&data));
        harness::admission_review(&data);
        bearer_token(&data);
        // Ed25519 is slow unoptimized: a fifth of them is plenty here.
        if i % 5 == 0 {
            approval_token(&data);
        }
    }
}

/// A JSON path: object keys and array indexes.
#[derive(Clone, Debug)]
enum Step {
    Key(String),
    Index(usize),
}

/// Every path below `value`, parents first.
fn paths(value: &Value) -> Vec<Vec<Step>> {
    fn walk(value: &Value, at: &mut Vec<Step>, out: &mut Vec<Vec<Step>>) {
        let children: Vec<(Step, &Value)> = match value {
            Value::Object(map) => map.iter().map(|(k, v)| (Step::Key(k.clone()), v)).collect(),
            Value::Array(items) => items.iter().enumerate().map(|(i, v)| (Step::Index(i), v)).collect(),
            _ => Vec::new(),
        };
        for (step, child) in children {
            at.push(step);
            out.push(at.clone());
            walk(child, at, out);
            at.pop();
        }
    }
    let mut out = Vec::new();
    walk(value, &mut Vec::new(), &mut out);
    out
}

fn at<'v>(value: &'v mut Value, path: &[Step]) -> &'v mut Value {
    path.iter().fold(value, |v, step| match step {
        Step::Key(k) => &mut v[k.as_str()],
        Step::Index(i) => &mut v[*i],
    })
}

fn remove(value: &mut Value, path: &[Step]) {
    let (last, parent) = path.split_last().expect("not the root");
    match (at(value, parent), last) {
        (Value::Object(map), Step::Key(k)) => {
            map.remove(k);
        }
        (Value::Array(items), Step::Index(i)) => {
            items.remove(*i);
        }
        _ => unreachable!("paths() only yields existing children"),
    }
}

fn dotted(path: &[Step]) -> String {
    path.iter()
        .map(|step| match step {
            Step::Key(k) => k.clone(),
            Step::Index(i) => i.to_string(),
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// Paths the webhook cannot do without: changing their type or dropping them is a 400.
const REQUIRED: [&str; 8] = [
    "apiVersion",
    "kind",
    "request",
    "request.uid",
    "request.kind",
    "request.resource",
    "request.operation",
    "request.userInfo",
];

/// The review the apiserver sends for `object` (`None`: a DELETE of `old`).
fn review(operation: &str, resource: &str, object: Option<Value>, old: Option<Value>) -> Value {
    Review::new(operation, resource, object, old).json()
}

fn preview_review() -> Value {
    let preview: Value = example("environmentrequest-preview.yaml");
    review("CREATE", "environmentrequests", Some(preview), None)
}

/// The production request, created by alice, carrying `token`.
fn production_review(token: &str) -> Value {
    let mut production = serde_json::to_value(&fixtures().production).expect("json");
    production["spec"]["approval"] = json!({ "token": token });
    review("CREATE", "environmentrequests", Some(production), None)
}

fn decide(review: &Value) -> Result<Admitted, String> {
    admit(&serde_json::to_vec(review).expect("json"))
}

#[test]
fn valid_reviews_are_decided_as_the_examples_say() {
    let preview = decide(&preview_review()).expect("a valid review");
    assert!(preview.allowed("environmentrequests"));
    assert!(!preview.allowed("tenants"), "a request is not a tenant");
    let patch: Value = serde_json::from_slice(preview.patch.as_deref().expect("a patch")).expect("json");
    assert_eq!(
        patch,
        json!([{"op": "add", "path": "/metadata/annotations",
                "value": {"berth.dev/created-by": "alice", "berth.dev/spec-author": "alice"}},
               {"op": "add", "path": "/metadata/finalizers", "value": ["berth.dev/gitops-cleanup"]}])
    );

    let approval = fixtures().approval.clone();
    assert!(decide(&production_review(&approval)).expect("a valid review").allowed("environmentrequests"));
    let mut self_approved = production_review(&approval);
    // bob, the approver, creates it himself.
    self_approved["request"]["userInfo"]["username"] = json!("bob");
    assert!(!decide(&self_approved).expect("a valid review").allowed("environmentrequests"), "four eyes");
    let mut unapproved = production_review(&approval);
    unapproved["request"]["object"]["spec"]["approval"] = Value::Null;
    assert!(decide(&unapproved).expect("a valid review").allowed("environmentrequests"), "created to await approval");
    let mut namesake = production_review(&approval);
    namesake["request"]["object"]["metadata"]["uid"] = json!("a-namesake-created-later");
    assert!(!decide(&namesake).expect("a valid review").allowed("environmentrequests"), "bound to the UID");
    let mut changed = production_review(&approval);
    changed["request"]["object"]["spec"]["app"]["revision"] = json!("v1.9.0");
    assert!(!decide(&changed).expect("a valid review").allowed("environmentrequests"), "the spec changed");
}

#[test]
fn a_truncated_review_is_an_error() {
    let body = serde_json::to_vec(&preview_review()).expect("json");
    assert!(admit(&body).is_ok());
    for len in 0..body.len() {
        assert!(admit(&body[..len]).is_err(), "{}", String::from_utf8_lossy(&body[..len]));
    }
}

#[test]
fn flipped_bytes_never_panic() {
    let mut rng = Rng::new(0x5eed_0002);
    let preview = serde_json::to_vec(&preview_review()).expect("json");
    let production = serde_json::to_vec(&production_review(&fixtures().approval)).expect("json");
    let (mut errors, mut denied) = (0, 0);
    for i in 0..800 {
        let mut mutated = if i % 5 == 0 { production.clone() } else { preview.clone() };
        for _ in 0..1 + rng.below(3) {
            let i = rng.below(mutated.len());
            mutated[i] ^= if rng.below(4) == 0 { rng.byte().max(1) } else { rng.flip() };
        }
        match admit(&mutated) {
            Err(_) => errors += 1,
            Ok(admitted) => denied += usize::from(!admitted.allowed("environmentrequests")),
        }
    }
    // Most flips break the JSON; of the rest, many change a signed or checked value.
    assert!(errors > 300 && denied > 30, "{errors} errors, {denied} denials");
}

#[test]
fn values_of_another_type_never_panic_and_required_ones_are_errors() {
    let valid = production_review(&fixtures().approval);
    let replacements = [json!(null), json!(true), json!(0), json!(-1.5), json!(""), json!("x"), json!([]), json!({})];
    let mut cases = 0;
    for path in paths(&valid) {
        let name = dotted(&path);
        for replacement in &replacements {
            let mut review = valid.clone();
            let value = at(&mut review, &path);
            if std::mem::discriminant(value) == std::mem::discriminant(replacement) {
                continue;
            }
            *value = replacement.clone();
            let decided = decide(&review);
            if REQUIRED.contains(&name.as_str()) {
                assert!(decided.is_err(), "{name} = {replacement}");
            } else if name.starts_with("request.object.spec") {
                // Still a review, and the approval covered the old spec; without one
                // (null) it is created to wait for an approval.
                let admitted = decided.unwrap_or_else(|e| panic!("{name} = {replacement}: {e}"));
                let awaits_approval = name == "request.object.spec.approval" && replacement.is_null();
                assert_eq!(admitted.allowed("environmentrequests"), awaits_approval, "{name} = {replacement}");
            }
            cases += 1;
        }
    }
    assert!(cases > 200, "{cases}");
}

#[test]
fn dropped_fields_never_panic_and_required_ones_are_errors() {
    let valid = production_review(&fixtures().approval);
    for path in paths(&valid) {
        let name = dotted(&path);
        let mut review = valid.clone();
        remove(&mut review, &path);
        let decided = decide(&review);
        if REQUIRED.contains(&name.as_str()) {
            assert!(decided.is_err(), "without {name}");
        }
        if name.starts_with("request.object.spec") {
            let admitted = decided.unwrap_or_else(|e| panic!("without {name}: {e}"));
            // Without its approval it is created to wait for one.
            let awaits_approval = name == "request.object.spec.approval";
            assert_eq!(admitted.allowed("environmentrequests"), awaits_approval, "without {name}");
        }
    }
}

#[test]
fn giant_strings_never_panic() {
    let valid = production_review(&fixtures().approval);
    let giant = json!("x".repeat(64 * 1024));
    for path in paths(&valid) {
        let mut review = valid.clone();
        let value = at(&mut review, &path);
        if value.is_string() {
            *value = giant.clone();
            let _ = decide(&review);
        }
    }
    let mut labelled = valid.clone();
    labelled["request"]["object"]["metadata"]["labels"] = json!({ "x".repeat(64 * 1024): "y" });
    let _ = decide(&labelled);
}

#[test]
fn deep_nesting_is_an_error_or_skipped_never_a_stack_overflow() {
    let body = serde_json::to_string(&preview_review()).expect("json");
    let nest = |depth: usize, open: &str, close: &str| format!("{}1{}", open.repeat(depth), close.repeat(depth));
    let shapes = [("[", "]"), ("{\"a\":", "}")];
    // Inside the object, which the review keeps as JSON, serde_json's recursion limit (128)
    // stops it: 100 levels parse, 200 do not.
    let owner = "\"owner\":\"alice@example.com\"";
    for (open, close) in shapes {
        for (depth, parses) in [(100, true), (200, false)] {
            for nested in [
                format!("\"owner\":{}", nest(depth, open, close)),
                format!("{owner},\"x\":{}", nest(depth, open, close)),
            ] {
                let result = admit(body.replacen(owner, &nested, 1).as_bytes());
                match result {
                    Ok(admitted) => {
                        assert!(parses, "{depth} levels parsed");
                        assert!(!admitted.allowed("environmentrequests") || nested.starts_with(owner));
                    }
                    Err(error) => assert!(!parses && error.contains("recursion limit"), "{depth}: {error}"),
                }
            }
        }
    }
    // Where the review is typed, serde refuses the first bracket.
    for (place, expected) in [
        ("\"dryRun\":false", "expected a boolean"),
        ("\"app\":\"checkout\"", "expected a string"),
        ("\"groups\":[\"team-payments\",\"system:authenticated\"]", "expected a string"),
    ] {
        let key = &place[..place.find(':').expect("a key") + 1];
        let deep = body.replacen(place, &format!("{key}{}", nest(200, "[", "]")), 1);
        assert_ne!(deep, body);
        let error = admit(deep.as_bytes()).expect_err("not the type");
        assert!(error.contains(expected), "{place}: {error}");
    }
    // Fields the request does not have are skipped without recursion, however deep; the
    // review's own unknown fields are kept (for its flattened apiVersion and kind), so the
    // limit holds there.
    for (open, close) in shapes {
        let dry_run = "\"dryRun\":false";
        let deep = body.replacen(dry_run, &format!("{dry_run},\"deep\":{}", nest(100_000, open, close)), 1);
        let parsed = admit(deep.as_bytes());
        assert!(parsed.is_ok(), "{parsed:?}");
        let kind = "\"kind\":\"AdmissionReview\"";
        let deep = body.replacen(kind, &format!("{kind},\"deep\":{}", nest(100, open, close)), 1);
        assert!(admit(deep.as_bytes()).is_ok());
        let deep = body.replacen(kind, &format!("{kind},\"deep\":{}", nest(200, open, close)), 1);
        let error = admit(deep.as_bytes()).expect_err("past the limit");
        assert!(error.contains("recursion limit"), "{error}");
    }
}

/// The token's three segments.
fn segments(token: &str) -> [String; 3] {
    let parts: Vec<&str> = token.split('.').collect();
    let [header, payload, signature] = parts.as_slice() else { panic!("three segments") };
    [header.to_string(), payload.to_string(), signature.to_string()]
}

/// Each segment swapped around, one byte flipped in each, no or dropped segments,
/// unsigned and re-labelled headers, and changed claims under the old signature.
fn mutations(token: &str, rng: &mut Rng, header: Value) -> Vec<String> {
    let parts = segments(token);
    let [h, p, s] = &parts;
    let mut out = Vec::new();
    for order in [[0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]] {
        out.push(order.map(|i| parts[i].as_str()).join("."));
    }
    for (i, segment) in parts.iter().enumerate() {
        for at in 0..segment.len() {
            // Every position of short segments, a sample of long ones.
            if segment.len() > 120 && rng.below(segment.len() / 60) != 0 {
                continue;
            }
            let mut flipped = parts.clone().map(String::into_bytes);
            flipped[i][at] ^= rng.flip();
            out.push(flipped.map(|bytes| String::from_utf8(bytes).expect("ASCII")).join("."));
        }
    }
    out.extend([
        format!("{h}.{p}"),
        format!("{h}.{p}."),
        format!("{h}.{p}.{s}."),
        format!("{h}.{p}.{s}.{s}"),
        format!(".{p}.{s}"),
        format!("{h}..{s}"),
        format!("{h} .{p}.{s}"),
        format!("{h}.{p}.{}", &s[..s.len() - 2]),
        format!("{h}.{p}.{s}AA"),
        String::new(),
        "..".to_owned(),
    ]);
    let payload: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).expect("base64")).expect("json");
    for (claim, value) in [("sub", json!("mallory")), ("exp", json!(4_000_000_000_i64)), ("groups", json!(["x"]))] {
        let mut changed = payload.clone();
        changed[claim] = value;
        out.push(format!("{h}.{}.{s}", b64(changed.to_string().as_bytes())));
    }
    for alg in ["none", "None", "NONE", "HS256", "RS256", "ES256", "EdDSA", "ES384", ""] {
        let mut relabelled = header.clone();
        relabelled["alg"] = json!(alg);
        let relabelled = b64(relabelled.to_string().as_bytes());
        out.push(format!("{relabelled}.{p}.{s}"));
        out.push(format!("{relabelled}.{p}."));
    }
    for (field, value) in
        [("kid", Value::Null), ("kid", json!(7)), ("kid", json!("someone-else")), ("crit", json!(["b64"]))]
    {
        let mut relabelled = header.clone();
        relabelled[field] = value;
        out.push(format!("{}.{p}.{s}", b64(relabelled.to_string().as_bytes())));
    }
    out
}

#[test]
fn only_the_issued_approval_token_is_accepted() {
    let fixtures = fixtures();
    let token = fixtures.approval.as_str();
    assert_eq!(verify_approval(token).expect("the issued token"), harness::APPROVER);
    assert_eq!(verify_approval(&format!("  {token}\n")).expect("surrounding space"), harness::APPROVER);

    let mut rng = Rng::new(0x5eed_0003);
    let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": fixtures.kid});
    let mut tokens = mutations(token, &mut rng, header);
    // Algorithm confusion: HS256 keyed with the public key's PEM.
    let [h, p, _] = segments(token);
    let confused = json!({"alg": "HS256", "typ": "JWT", "kid": fixtures.kid}).to_string();
    let key = jsonwebtoken::EncodingKey::from_secret(fixtures.public_pem.as_bytes());
    let input = format!("{}.{p}", b64(confused.as_bytes()));
    let signature = jsonwebtoken::crypto::sign(input.as_bytes(), &key, jsonwebtoken::Algorithm::HS256).expect("HS256");
    tokens.push(format!("{input}.{signature}"));
    tokens.push(format!("{h}.{p}.{}", b64(&[0; 64])));
    assert!(tokens.len() > 200, "{}", tokens.len());
    for mutated in &tokens {
        assert_ne!(mutated.trim(), token);
        assert!(verify_approval(mutated).is_err(), "accepted {mutated:?}");
    }

    // Through admission: the production request with each token.
    let allowed = |token: &str| decide(&production_review(token)).expect("a review").allowed("environmentrequests");
    assert!(allowed(token));
    for mutated in tokens.iter().step_by(8) {
        assert!(!allowed(mutated), "admitted with {mutated:?}");
    }
}

#[test]
fn signed_approval_claims_are_accepted_exactly_when_they_should_be() {
    let mut rng = Rng::new(0x5eed_0004);
    let (mut accepted, mut refused) = (0, 0);
    for _ in 0..100 {
        // Target mode 4: each claim swapped for input with probability 1/16; small clock offsets.
        let flags: u16 = (0..16).filter(|_| rng.below(16) == 0).map(|bit| 1 << bit).sum();
        let mut data = vec![4];
        data.extend(flags.to_le_bytes());
        for _ in 0..3 {
            let len = 1 + rng.below(40);
            data.extend(rng.bytes(len));
            data.push(rng.below(24) as u8);
        }
        data.extend(rng.bytes(64));
        if approval_token(&data) { accepted += 1 } else { refused += 1 }
    }
    assert!(accepted > 5 && refused > 5, "{accepted} accepted, {refused} refused");
    for mode in [1u8, 2, 3] {
        for _ in 0..40 {
            let mut data = vec![mode];
            let len = rng.below(200);
            data.extend(rng.bytes(len));
            approval_token(&data);
        }
    }
}

#[test]
fn only_the_issued_bearer_token_is_accepted() {
    let fixtures = fixtures();
    let token = fixtures.bearer_token.as_str();
    let caller = authenticate(Some(&format!("Bearer {token}"))).expect("the issued token");
    assert_eq!((caller.subject.as_str(), caller.groups.as_slice()), ("alice", &["team-payments".to_owned()][..]));
    assert!(authenticate(Some(&format!("bearer  {token} "))).is_ok(), "the scheme is case-insensitive");
    let basic = format!("Basic {token}");
    for value in [None, Some(""), Some("Bearer"), Some("Bearer "), Some(token), Some(basic.as_str())] {
        assert!(authenticate(value).is_err(), "{value:?}");
    }

    let mut rng = Rng::new(0x5eed_0005);
    let header = json!({"alg": "HS256", "typ": "JWT"});
    let tokens = mutations(token, &mut rng, header);
    assert!(tokens.len() > 150, "{}", tokens.len());
    for mutated in &tokens {
        assert_ne!(mutated.trim(), token);
        assert!(authenticate(Some(&format!("Bearer {mutated}"))).is_err(), "accepted {mutated:?}");
    }
}

#[test]
fn signed_bearer_claims_are_accepted_exactly_when_they_should_be() {
    let mut rng = Rng::new(0x5eed_0006);
    let now = harness::now().as_second();
    let choices: [(&str, Vec<Value>); 7] = [
        ("sub", vec![json!("alice"), json!("bob"), json!(""), json!("  "), json!(7), Value::Null]),
        ("aud", vec![json!("berth"), json!(["other", "berth"]), json!(["other"]), json!([1, "berth"]), json!("x")]),
        ("exp", vec![json!(now + 3600), json!(now - 30), json!(now - 61), json!(1e300), json!("soon"), json!(-1e300)]),
        ("nbf", vec![json!(now), json!(now + 59), json!(now + 61), json!(i64::MAX), json!(u64::MAX), json!(1.5)]),
        ("iat", vec![json!(now), json!(now + 3600), json!("now"), json!(-5)]),
        ("groups", vec![json!(["team-payments"]), json!([]), json!("team"), json!([null])]),
        ("roles", vec![json!(["approver"]), json!(["Admin", "unknown"]), json!({}), json!([1])]),
    ];
    let headers = [
        r#"{"alg":"HS256","typ":"JWT"}"#,
        r#"{"alg":"HS256","kid":null}"#,
        r#"{"alg":"HS256","kid":"k"}"#,
        r#"{"alg":"HS256","kid":5}"#,
        r#"{"alg":"hs256"}"#,
        r#"{"alg":"HS256","crit":[]}"#,
        r#"["HS256"]"#,
    ];
    let (mut accepted, mut refused) = (0, 0);
    for _ in 0..500 {
        let mut claims = serde_json::Map::new();
        for (name, values) in &choices {
            // Mostly valid values, so acceptance is common enough to count.
            let i = if rng.below(3) == 0 { rng.below(values.len()) } else { 0 };
            if rng.below(12) != 0 {
                claims.insert((*name).to_owned(), values[i].clone());
            }
        }
        let header = if rng.below(3) == 0 { *rng.pick(&headers) } else { headers[0] };
        let mut data = vec![2];
        data.extend(header.as_bytes());
        data.push(0);
        data.extend(Value::Object(claims).to_string().as_bytes());
        if bearer_token(&data) { accepted += 1 } else { refused += 1 }
    }
    assert!(accepted > 30 && refused > 30, "{accepted} accepted, {refused} refused");
    for mode in [0u8, 1, 3] {
        for _ in 0..150 {
            let mut data = vec![mode];
            let len = rng.below(200);
            data.extend(rng.bytes(len));
            bearer_token(&data);
        }
    }
}
