//! The console over plain HTTP: behind tokens it asks for a login and keeps the token in
//! an `HttpOnly`, `SameSite=Strict` cookie; a read token cannot change anything; a form
//! post from another origin is refused; bad input is a page that says what is wrong, and
//! what a record carries is escaped, never run.

mod common;

use std::collections::BTreeMap;

use common::{Served, call, produce};
use herald_gateway::{GatewayConfig, Tokens};

const READ: &str = "read-token-0123456789";
const ADMIN: &str = "admin-token-0123456789";
const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

fn text(reply: &common::Reply) -> String {
    String::from_utf8_lossy(&reply.body).into_owned()
}

/// The session cookie a login set, as a `cookie` header value.
fn session(login: &common::Reply) -> String {
    let set = login.header("set-cookie").expect("a session cookie");
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"), "{set}");
    let pair = set.split(';').next().expect("name=value").to_string();
    assert!(pair.starts_with("herald_session=") && !pair.contains(READ) && !pair.contains(ADMIN), "{pair}");
    pair
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_asks_for_a_token_and_refuses_foreign_and_read_only_changes() {
    let tokens = Tokens::parse(&format!("read {READ}\nadmin {ADMIN}\n")).expect("tokens");
    let served = Served::start(GatewayConfig::default().tokens(tokens)).await;
    let at = served.http;

    let page = call(at, "GET", "/groups?x=1", &[], None).await;
    assert_eq!((page.status, page.header("location")), (303, Some("/login?next=%2Fgroups%3Fx%3D1")));
    let login = call(at, "GET", "/login?next=/groups", &[], None).await;
    assert!(login.status == 200 && text(&login).contains("type=\"password\""), "{}", text(&login));

    let wrong = call(at, "POST", "/login", &[FORM], Some(b"token=not-a-token-at-all&next=%2F")).await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.header("set-cookie").is_none());
    let body = format!("token={READ}&next=%2F%2Fevil.example%2F");
    let ok = call(at, "POST", "/login", &[FORM], Some(body.as_bytes())).await;
    assert_eq!((ok.status, ok.header("location")), (303, Some("/")), "never another site");
    let read_cookie = session(&ok);
    let overview = call(at, "GET", "/", &[("cookie", &read_cookie)], None).await;
    assert!(overview.status == 200 && text(&overview).contains("<h1>Overview</h1>"), "{}", text(&overview));
    assert!(overview.header("content-security-policy").is_some_and(|p| p.contains("frame-ancestors 'none'")));
    // The cookie holds a session id, not the token, and only this origin's pages may use it.
    let token_cookie = format!("herald_session={READ}");
    assert_eq!(call(at, "GET", "/", &[("cookie", &token_cookie)], None).await.status, 303);
    let other_port = [("cookie", read_cookie.as_str()), ("origin", "http://127.0.0.1:3000")];
    assert_eq!(call(at, "GET", "/api/v1/topics", &other_port, None).await.status, 401);
    let own = format!("http://{at}");
    let same = [("cookie", read_cookie.as_str()), ("origin", own.as_str())];
    assert_eq!(call(at, "GET", "/api/v1/topics", &same, None).await.status, 200);

    // A read token may look, not change.
    let create = call(at, "POST", "/topics", &[FORM, ("cookie", &read_cookie)], Some(b"name=made&partitions=1")).await;
    assert_eq!(create.status, 403, "{}", text(&create));
    assert!(served.broker().topic("made").is_none());

    // An admin's browser on another site's page cannot post.
    let body = format!("token={ADMIN}&next=%2F");
    let admin = session(&call(at, "POST", "/login", &[FORM], Some(body.as_bytes())).await);
    let headers = [FORM, ("cookie", admin.as_str()), ("origin", "http://evil.example")];
    let foreign = call(at, "POST", "/topics", &headers, Some(b"name=made&partitions=1")).await;
    assert_eq!(foreign.status, 403, "{}", text(&foreign));
    assert!(served.broker().topic("made").is_none());
    let headers = [FORM, ("cookie", admin.as_str()), ("origin", own.as_str())];
    let created = call(at, "POST", "/topics", &headers, Some(b"name=made&partitions=2")).await;
    assert_eq!((created.status, created.header("location")), (303, Some("/topics/made")));
    assert_eq!(served.broker().topic("made").map(|m| m.partitions), Some(2));
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_a_page_that_says_why_and_records_are_escaped() {
    let served = Served::start(GatewayConfig::default()).await;
    let at = served.http;
    served.broker().create_topic("t", Some(1), BTreeMap::new(), false).expect("topic");
    let record =
        serde_json::json!({ "key": "<script>alert(1)</script>", "value": { "html": "<img src=x onerror=alert(2)>" } });
    produce(at, "t", vec![record]).await;

    let page = text(&call(at, "GET", "/topics/t/messages", &[], None).await);
    assert!(!page.contains("<script>alert") && !page.contains("<img src=x"), "escaped: {page}");
    assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{page}");

    let cases = [
        ("/topics/nope", 404, "no topic"),
        ("/topics/t/messages?partition=9", 404, "no partition 9"),
        ("/topics/t/messages?offset=ten", 400, "offset"),
        ("/topics/t/messages?time=yesterday", 400, "RFC 3339"),
        ("/topics/t/messages?where=data.total", 400, "field op value"),
        ("/topics/t/messages?header=novalue", 400, "name=value"),
        ("/groups/nobody", 404, "no group"),
        ("/dead-letters/t/0/99", 404, "no record"),
        ("/flows/%FF%FE", 400, ""),
        ("/schemas/none", 200, "registry is off"),
        ("/sagas/x/y", 200, "No service database"),
    ];
    // Without tokens, only loopback names are answered (DNS rebinding), and a WebSocket
    // from another site's page is refused.
    let rebound = call(at, "GET", "/", &[("host", "evil.example:8080")], None).await;
    assert_eq!(rebound.status, 421, "{}", text(&rebound));
    let upgrade = [
        ("origin", "http://evil.example"),
        ("upgrade", "websocket"),
        ("connection", "upgrade"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ];
    assert_eq!(call(at, "GET", "/api/v1/ws", &upgrade, None).await.status, 403);
    for (path, status, says) in cases {
        let reply = call(at, "GET", path, &[], None).await;
        assert_eq!(reply.status, status, "{path}: {}", text(&reply));
        assert!(text(&reply).contains(says), "{path}: {}", text(&reply));
    }
    let posts: [(&str, &[u8], u16); 5] = [
        ("/topics", b"name=bad%20name", 400),
        ("/topics/t/settings", b"configs=retention.ms", 400),
        ("/groups/g/reset", b"topic=t&to=offset&value=x", 400),
        ("/groups/g/reset/apply", b"topic=t&set=zero", 400),
        ("/dead-letters/t/redrive", b"pick=zero", 400),
    ];
    for (path, body, status) in posts {
        let reply = call(at, "POST", path, &[FORM], Some(body)).await;
        assert_eq!(reply.status, status, "{path}: {}", text(&reply));
        assert!(reply.header("content-type").is_some_and(|c| c.starts_with("text/html")), "{path}");
    }
    served.stop().await;
}
