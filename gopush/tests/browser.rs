//! The browser client (`clients/js/gopush.js`, served by web) in real headless Chromium, driven
//! over CDP, against a real `gopush standalone` and a real local cluster: it connects and
//! receives, reconnects after the server closes its connection, resumes exactly the messages it
//! missed while offline, follows its key through a `kill -9` of the key's comet and that comet's
//! restart with nothing lost or repeated, and the demo page renders (its screenshot is kept in the
//! artifacts directory, see docs/testing.md).

#[allow(dead_code)] // the cluster-only helpers of the shared harness are not all used here
mod harness;

use cluster::rpc::CometApi;
use harness::browser::{Browser, artifacts_dir};
use harness::config::WebPorts;
use harness::http::push;
use harness::{Cluster, Standalone, keys_owned_by};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Long enough for a reconnect with back-off, a prune and a ring change on a busy 2-core box.
const NOTICE: Duration = Duration::from_secs(60);

/// The `n` of each message the demo page shows, oldest first.
const SHOWN: &str =
    "[...document.querySelectorAll('#messages td.msg')].map(e => JSON.parse(e.textContent).n).reverse()";
/// The mids the demo page shows, oldest first.
const SHOWN_MIDS: &str = "[...document.querySelectorAll('#messages td.mid')].map(e => e.textContent).reverse()";

fn numbers(v: &Value) -> Vec<u64> {
    v.as_array().expect("an array").iter().map(|n| n.as_u64().expect("a number")).collect()
}

async fn shown(browser: &Browser) -> Vec<u64> {
    numbers(&browser.eval(SHOWN).await)
}

/// The mids shown grow strictly: nothing repeated, nothing out of order.
async fn assert_mids_increase(browser: &Browser) {
    let mids = browser.eval(SHOWN_MIDS).await;
    let mids: Vec<u128> = mids.as_array().unwrap().iter().map(|m| m.as_str().unwrap().parse().unwrap()).collect();
    assert!(mids.windows(2).all(|w| w[0] < w[1]), "mids shown in order, none twice: {mids:?}");
}

async fn push_n(admin: &str, key: &str, n: u64) {
    assert_eq!(push(admin, key, 600, &json!({ "n": n }).to_string()).await, Some(0), "push {n}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_chromium_the_client_receives_reconnects_and_resumes_exactly_what_it_missed() {
    let Some(browser) = Browser::start().await else { return };
    // The page comes from `localhost`, the API from `127.0.0.1`: another origin, so every lookup
    // is a CORS fetch and works only because cors_origins lists the page's origin.
    let mut web = WebPorts::free();
    let page_origin = format!("http://localhost:{}", web.public);
    web.extra = format!("cors_origins = [\"{page_origin}\"]");
    let server = Standalone::start_with(web, "").await;
    let (public, admin) = (server.public(), server.admin());
    let api = format!("http://{public}");
    let key = "browser-solo";

    // Connect and receive.
    browser.open(&format!("{page_origin}/demo?key={key}&web={api}")).await;
    browser.wait_for("the page to connect", NOTICE, "window.gopushDemo && gopushDemo.state === 'connected'").await;
    let comet_ws = format!("127.0.0.1:{}", server.comet.ws);
    assert_eq!(browser.eval("gopushDemo.server").await, json!(comet_ws));
    browser.eval("window.states = []; gopushDemo.on('state', s => states.push(s.state)); true").await;
    for n in 0..3 {
        push_n(&admin, key, n).await;
    }
    browser.wait_for("3 messages shown", NOTICE, "document.querySelectorAll('#messages tr').length >= 3").await;
    assert_eq!(shown(&browser).await, [0, 1, 2]);

    // The server closes the key's connections: the client comes back by itself.
    let comet = cluster::pool::RemoteComet::new(format!("127.0.0.1:{}", server.comet.rpc), Default::default());
    assert_eq!(comet.close_key(key.to_string()).await.expect("close_key"), 1, "one connection closed");
    browser
        .wait_for(
            "a reconnect after the close",
            NOTICE,
            "states.includes('disconnected') && gopushDemo.state === 'connected'",
        )
        .await;
    push_n(&admin, key, 3).await;
    browser
        .wait_for("the message after the reconnect", NOTICE, "document.querySelectorAll('#messages tr').length >= 4")
        .await;
    assert_eq!(shown(&browser).await, [0, 1, 2, 3], "nothing lost or repeated across the reconnect");
    assert_mids_increase(&browser).await;

    // Offline for a while: a client started later from the last mid gets exactly what it missed,
    // then live messages.
    browser.eval("gopushDemo.close(); window.lastMid = gopushDemo.lastMid; true").await;
    for n in 4..9 {
        push_n(&admin, key, n).await;
    }
    let resume = format!(
        "import('/client/gopush.js').then(({{ GoPush }}) => {{ window.got = []; \
         window.again = new GoPush('{api}', '{key}', {{ mid: lastMid }}); \
         again.on('message', m => got.push(m.msg.n)); return true; }})"
    );
    browser.eval(&resume).await;
    browser.wait_for("the missed messages", NOTICE, "got.length >= 5 && again.state === 'connected'").await;
    push_n(&admin, key, 9).await;
    browser.wait_for("the live message after them", NOTICE, "got.length >= 6").await;
    assert_eq!(numbers(&browser.eval("got").await), [4, 5, 6, 7, 8, 9], "exactly the missed ones, then the live one");
    browser.eval("again.close(); true").await;

    // The demo page renders, served same-origin by web; its screenshot is kept.
    browser.open(&format!("http://{public}/demo?key={key}")).await;
    browser
        .wait_for(
            "the demo to connect and show history",
            NOTICE,
            "document.querySelectorAll('#messages tr').length >= 10",
        )
        .await;
    assert_eq!(browser.eval("document.getElementById('state').textContent").await, json!("connected"));
    assert_eq!(browser.eval("document.getElementById('node').textContent").await, json!(comet_ws));
    let curl = browser.eval("document.getElementById('curl').textContent").await;
    assert!(curl.as_str().unwrap().contains(&format!("http://{admin}/1/admin/push/private?key={key}")), "{curl}");
    let png = artifacts_dir().join("browser").join("demo.png");
    browser.screenshot(&png).await;
    eprintln!("demo page screenshot: {}", png.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_chromium_the_client_follows_its_key_through_a_kill_9_and_a_restart_losing_nothing() {
    let Some(zk) = testkit::zk_addr() else { return };
    let Some(redis) = testkit::redis_addrs() else { return };
    let Some(browser) = Browser::start().await else { return };
    let mut cluster = Cluster::start(&zk, &redis, &["node1", "node2"]).await;
    let (public, admin) = (cluster.public(), cluster.admin());
    let key = keys_owned_by(&cluster.nodes(), "node1", "browser", 1).remove(0);
    let (node1, node2) = (cluster.comet("node1").ws(), cluster.comet("node2").ws());

    browser.open(&format!("http://{public}/demo?key={key}")).await;
    browser.wait_for("the page to connect", NOTICE, "window.gopushDemo && gopushDemo.state === 'connected'").await;
    assert_eq!(browser.eval("gopushDemo.server").await, json!(node1));

    // A publisher pushes all along (expire > 0); what got ret 0 must be shown, once, in order.
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = tokio::spawn({
        let (admin, key, stop) = (admin.clone(), key.clone(), stop.clone());
        async move {
            let mut acked = Vec::new();
            for n in 0..2000u64 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                if push(&admin, &key, 600, &json!({ "n": n }).to_string()).await == Some(0) {
                    acked.push(n);
                }
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
            acked
        }
    });
    browser.wait_for("messages before the kill", NOTICE, "document.querySelectorAll('#messages tr').length >= 5").await;
    cluster.comet_mut("node1").proc.kill9();
    browser
        .wait_for(
            "the client on node2",
            NOTICE,
            &format!("gopushDemo.server === '{node2}' && gopushDemo.state === 'connected'"),
        )
        .await;
    let before = shown(&browser).await.len();
    browser
        .wait_for(
            "messages on node2",
            NOTICE,
            &format!("document.querySelectorAll('#messages tr').length >= {}", before + 5),
        )
        .await;
    cluster.restart_comet("node1").await;
    browser
        .wait_for(
            "the client back on node1",
            NOTICE,
            &format!("gopushDemo.server === '{node1}' && gopushDemo.state === 'connected'"),
        )
        .await;
    let before = shown(&browser).await.len();
    browser
        .wait_for(
            "messages on node1 again",
            NOTICE,
            &format!("document.querySelectorAll('#messages tr').length >= {}", before + 5),
        )
        .await;
    stop.store(true, Ordering::Relaxed);
    let acked = publisher.await.expect("publisher");
    let last = *acked.last().expect("acknowledged pushes");
    browser.wait_for("the last acknowledged message", NOTICE, &format!("{SHOWN}.includes({last})")).await;

    let got = shown(&browser).await;
    assert!(got.windows(2).all(|w| w[0] < w[1]), "in order and none twice: {got:?}");
    let missing: Vec<u64> = acked.iter().copied().filter(|n| !got.contains(n)).collect();
    assert!(missing.is_empty(), "acknowledged but never shown: {missing:?} (shown {got:?})");
    assert_mids_increase(&browser).await;
    eprintln!("kill -9 and restart: {} acknowledged, {} shown, none lost or repeated", acked.len(), got.len());
}
