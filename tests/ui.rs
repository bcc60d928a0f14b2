//! `/ui`, the run history page: served by the binary, and used in a real
//! browser (Debian's Chromium through chromedriver, `tests/browser.rs`).

use crate::browser::Browser;
use crate::harness::{eventually, Options, TestApp, ADMIN};
use crate::upstream::Upstream;
use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::key::Key;
use serde_json::json;
use std::time::Duration;

/// A sync workflow whose request node calls `{up}/{path}{{ trigger.body.code }}`.
fn orders(up: &Upstream, path: &str) -> String {
    format!(
        "title: Orders\nenabled: true\noptions: {{ timeout: 20s }}\n\
         trigger: {{ type: webhook, mode: sync, key: ui-orders-key-1 }}\nnodes:\n\
         \x20 - key: erp\n    type: request\n    method: POST\n    url: \"{}/{path}{{{{ trigger.body.code }}}}\"\n    body: {{ order: \"{{{{ trigger.body.order }}}}\" }}\n\
         \x20 - type: response\n    body: {{ ok: true, erp: \"{{{{ nodes.erp.status }}}}\" }}\n",
        up.base
    )
}

const OTHER: &str = "title: Other\nenabled: true\n\
    trigger: { type: webhook, mode: sync, key: ui-other-key-01 }\nnodes:\n\
    \x20 - type: end\n    status: failed\n    message: always fails\n";

/// The page answers only when an admin token is set, carries a strict CSP,
/// and is revalidated by its ETag.
#[test]
fn the_page_is_served_with_a_token_set_and_revalidated() {
    let app = TestApp::spawn(&[("other.yaml", OTHER)]);
    let page = app.get("/ui");
    assert_eq!(page.status, 200, "{page:?}");
    assert!(page.body.contains("/ui/app.js"), "{}", page.body);
    let csp = page.header("content-security-policy").unwrap_or_default();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    let tag = page.header("etag").expect("an ETag").to_string();
    for asset in ["/ui/app.js", "/ui/app.css"] {
        let r = app.get(asset);
        assert_eq!(r.status, 200, "{asset}: {r:?}");
        assert_eq!(r.header("etag"), Some(tag.as_str()), "{asset}");
    }
    let again = ureq::get(format!("{}/ui", app.base))
        .header("if-none-match", &tag)
        .call()
        .expect("answered");
    assert_eq!(again.status().as_u16(), 304);
    assert_eq!(app.get("/ui/nothing").status, 404);

    let without = TestApp::spawn_with(
        &[("other.yaml", OTHER)],
        Options {
            env_remove: vec!["HOOKFLOW_ADMIN_TOKEN".into()],
            ..Options::default()
        },
    );
    for path in ["/ui", "/ui/app.js"] {
        assert_eq!(without.get(path).status, 404, "{path}");
    }
}

/// `GET /api/workflows` counts the last day's runs by status; the runs list
/// finds the retries of a run.
#[test]
fn workflows_count_the_last_day_and_runs_list_retries_of_a_run() {
    let app = TestApp::spawn(&[("other.yaml", OTHER), ("bad.yaml", "title: [")]);
    let first = app.post_json("ui-other-key-01", &json!({}));
    assert_eq!(first.status, 500, "{first:?}");
    let first = first.execution();
    app.post_json("ui-other-key-01", &json!({}));
    let listing = app.admin_get("/api/workflows").json();
    let other = listing["workflows"]
        .as_array()
        .and_then(|w| w.iter().find(|w| w["id"] == "other"))
        .unwrap_or_else(|| panic!("{listing}"));
    assert_eq!(other["counts_24h"], json!({"failed": 2}), "{listing}");
    let bad = listing["workflows"]
        .as_array()
        .and_then(|w| w.iter().find(|w| w["id"] == "bad"))
        .unwrap_or_else(|| panic!("{listing}"));
    assert_eq!(
        (bad["loaded"].clone(), bad["counts_24h"].clone()),
        (json!(false), json!({}))
    );
    assert!(!bad["diagnostics"].as_array().expect("list").is_empty());
    assert_eq!(listing["counts_24h_cut"], json!(false));

    let retried = app.admin_post(&format!("/api/executions/{first}/retry"));
    assert_eq!(retried.status, 201, "{retried:?}");
    let retry = retried.json()["execution_id"]
        .as_str()
        .expect("id")
        .to_string();
    app.finished(&retry, Duration::from_secs(10));
    let rows = app
        .admin_get(&format!("/api/executions?retry_of={first}"))
        .json();
    let ids: Vec<&str> = rows["executions"]
        .as_array()
        .expect("rows")
        .iter()
        .filter_map(|r| r["id"].as_str())
        .collect();
    assert_eq!(ids, vec![retry.as_str()], "{rows}");
    let none = app
        .admin_get(&format!("/api/executions?retry_of={retry}"))
        .json();
    assert_eq!(none["executions"], json!([]));
}

/// The operator's path in a real browser: sign in, filter to the failed run
/// of a workflow, open it by keyboard, read the failing node's error, fix the
/// workflow, retry on the current version and see the new run resolved.
#[test]
fn an_operator_finds_a_failed_run_fixes_the_workflow_and_retries_it() {
    let up = Upstream::start();
    let app = TestApp::spawn(&[
        ("orders.yaml", &orders(&up, "status/")),
        ("other.yaml", OTHER),
    ]);
    let mut failed = None;
    // The failed run's order is markup: the page must show it as text.
    let markup = r#"<img id="xss" src="x">"#;
    for (order, code) in [("A-1", 200), (markup, 502), ("A-3", 200), ("A-4", 201)] {
        let r = app.post_json("ui-orders-key-1", &json!({"order": order, "code": code}));
        if code == 502 {
            assert_eq!(r.status, 500, "{r:?}\n{}", app.log_text());
            failed = Some(r.execution());
        } else {
            assert_eq!(r.status, 200, "{r:?}\n{}", app.log_text());
        }
    }
    let failed = failed.expect("a failed run");
    assert_eq!(app.post_json("ui-other-key-01", &json!({})).status, 500);
    // A request refused before any run: malformed JSON.
    let refused = app.post(
        "ui-orders-key-1",
        &[("content-type", "application/json")],
        "{not json",
    );
    assert_eq!(refused.status, 400, "{refused:?}");
    let record = app.finished(&failed, Duration::from_secs(10));
    let error = record["jobs"][0]["error"]
        .as_str()
        .unwrap_or_else(|| panic!("the request node failed with an error: {record}"))
        .to_string();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let browser = Browser::start().await;
        let c = &browser.client;
        c.goto(&format!("{}/ui", app.base)).await.expect("open /ui");

        sign_in(&browser).await;
        browser
            .until("the workflows listing", || async {
                let text = browser.text("main table").await;
                (text.contains("orders") && text.contains("other")).then_some(())
            })
            .await;

        browser.screenshot("workflows.png").await;

        // The failed runs of `orders`, by the filters.
        browser
            .find("#nav a[data-view=runs]")
            .await
            .click()
            .await
            .expect("runs");
        browser
            .find("#f-workflow")
            .await
            .select_by_value("orders")
            .await
            .expect("workflow");
        browser
            .find("#f-status")
            .await
            .select_by_value("failed")
            .await
            .expect("status");
        // "Started to" the minute the run started: that whole minute, as an
        // operator means "we sent it at 10:02" (the field has no seconds).
        c.execute(
            "const d = new Date(arguments[0]); const p = n => String(n).padStart(2, '0');\
             document.querySelector('#f-until').value = \
             `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;",
            vec![record["started_at"].clone()],
        )
        .await
        .expect("set until");
        browser
            .find("form.filters button[type=submit]")
            .await
            .click()
            .await
            .expect("filter");
        let row = browser
            .until("one failed run of orders", || async {
                let url = c.current_url().await.ok()?;
                let fragment = url.fragment().unwrap_or_default().to_string();
                if !(fragment.contains("workflow=orders")
                    && fragment.contains("status=failed")
                    && fragment.contains("until="))
                {
                    return None;
                }
                let rows = c
                    .find_all(fantoccini::Locator::Css("#runs tbody tr"))
                    .await
                    .ok()?;
                match rows.as_slice() {
                    [row] => Some(row.clone()),
                    _ => None,
                }
            })
            .await;
        browser.screenshot("runs.png").await;
        let row_text = row.text().await.expect("row text");
        assert!(
            row_text.contains("failed") && row_text.contains("500") && row_text.contains(&failed),
            "{row_text}"
        );

        // Open it with the keyboard: the row takes focus, Enter opens it.
        c.execute(
            "arguments[0].focus()",
            vec![serde_json::to_value(&row).expect("element")],
        )
        .await
        .expect("focus the row");
        let enter = KeyActions::new("keyboard".into())
            .then(KeyAction::Down {
                value: Key::Enter.into(),
            })
            .then(KeyAction::Up {
                value: Key::Enter.into(),
            });
        c.perform_actions(enter).await.expect("press Enter");
        let shown = browser
            .until("the failing node's error", || async {
                let text = browser.text("section.card.failed .error-text").await;
                (!text.is_empty()).then_some(text)
            })
            .await;
        assert_eq!(shown, error, "the page shows the node's error as recorded");
        let body = browser.text("main pre").await;
        assert!(
            body.contains(r#""order": "<img id=\"xss\" src=\"x\">""#),
            "{body}"
        );
        assert!(
            c.find(fantoccini::Locator::Css("#xss")).await.is_err(),
            "a value was put on the page as HTML"
        );
        let heading = browser.text("main h1").await;
        assert!(
            heading.contains(&failed) && heading.contains("failed"),
            "{heading}"
        );
        c.execute(
            "document.querySelector('section.card').scrollIntoView()",
            vec![],
        )
        .await
        .expect("scroll to the nodes");
        browser.screenshot("run-failed-nodes.png").await;
        browser
            .find("main .actions button[data-action=test-case]")
            .await
            .click()
            .await
            .expect("download as a test case");
        browser
            .until("the test case saved", || async {
                let text = browser.text("main [aria-live] .notice").await;
                (!text.is_empty()).then_some(())
            })
            .await;
        let saved = browser.text("main [aria-live] .notice").await;
        assert!(saved.contains("Saved orders.test.yaml"), "{saved}");
        // The request as parse entries, to start a workflow from (issue 20).
        browser
            .find("main .actions button[data-action=parse-entries]")
            .await
            .click()
            .await
            .expect("parse entries from this request");
        let entries = browser
            .until("the parse entries", || async {
                let text = browser.text("main pre.parse-entries").await;
                text.contains("parse:").then_some(text)
            })
            .await;
        assert!(entries.contains("body:"), "{entries}");
        assert!(entries.contains("{key: code, alias: code"), "{entries}");

        // Fix the workflow; once the new version is served, retry on it.
        let before = app.workflow_version("orders");
        app.write_workflow("orders.yaml", &orders(&up, "echo/"));
        eventually(
            Duration::from_secs(15),
            "the fixed workflow to load",
            || (app.workflow_version("orders") != before).then_some(()),
        );
        browser
            .find("button[data-version=current]")
            .await
            .click()
            .await
            .expect("retry on the current version");
        let retry = browser
            .until("the new run's page", || async {
                let url = c.current_url().await.ok()?;
                let id = url.fragment()?.strip_prefix("/run/")?.to_string();
                (id != failed).then_some(id)
            })
            .await;
        let heading = browser
            .until("the new run resolved", || async {
                let h = browser.text("main h1").await;
                (h.contains(&retry) && h.contains("resolved")).then_some(h)
            })
            .await;
        assert!(!heading.contains("failed"), "{heading}");
        let facts = browser.text("dl.facts").await;
        assert!(
            facts.contains(&failed),
            "a link back to the retried run: {facts}"
        );
        browser.screenshot("run.png").await;

        // The failed run now lists its retry, with the retry's status.
        c.goto(&format!("{}/ui#/run/{failed}", app.base))
            .await
            .expect("back");
        browser
            .until("the retry listed on the failed run", || async {
                browser
                    .text("dl.facts")
                    .await
                    .contains(&format!("{retry} resolved"))
                    .then_some(())
            })
            .await;

        // The request refused before any run is listed with its reason.
        browser
            .find("#nav a[data-view=refused]")
            .await
            .click()
            .await
            .expect("refused requests");
        let refused = browser
            .until("the refused request", || async {
                let text = browser.text("#refused tbody tr").await;
                (!text.is_empty()).then_some(text)
            })
            .await;
        assert!(
            refused.contains("orders")
                && refused.contains("400")
                && refused.contains("bad_request"),
            "{refused}"
        );
        assert!(
            refused.contains("127.0.0.1"),
            "the sender's address: {refused}"
        );
        browser.screenshot("refused.png").await;
        browser.close().await;
    });
    let record = app.finished(&retry_of(&app, &failed), Duration::from_secs(5));
    assert_eq!(record["status"], "resolved", "{record}");
}

/// Types the admin token into the page's sign-in form and sends it.
async fn sign_in(browser: &Browser) {
    browser
        .find("#token")
        .await
        .send_keys(ADMIN)
        .await
        .expect("type");
    browser
        .find(".login button[type=submit]")
        .await
        .click()
        .await
        .expect("sign in");
}

fn retry_of(app: &TestApp, id: &str) -> String {
    let rows = app
        .admin_get(&format!("/api/executions?retry_of={id}"))
        .json();
    rows["executions"][0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("a retry of {id}: {rows}"))
        .to_string()
}

/// The page of a run that has not finished polls its record, and leaves the
/// page as it is while the record is unchanged: a section the operator
/// opened stays open (a redraw every second closed it and took the focus).
#[test]
fn a_running_runs_page_keeps_what_the_operator_opened() {
    let up = Upstream::start();
    let slow = format!(
        "title: Slow\nenabled: true\noptions: {{ timeout: 300ms }}\n\
         trigger:\n  type: webhook\n  mode: sync\n  key: ui-slow-key-01\n  timeout_response: {{ status: 202, body: later }}\nnodes:\n\
         \x20 - type: request\n    method: GET\n    url: \"{}/sleep/8000\"\n",
        up.base
    );
    let app = TestApp::spawn(&[("slow.yaml", &slow)]);
    let r = app.post_json("ui-slow-key-01", &json!({"order": "S-1"}));
    assert_eq!(r.status, 202, "{r:?}");
    let id = r.execution();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let browser = Browser::start().await;
        let c = &browser.client;
        c.goto(&format!("{}/ui#/run/{id}", app.base))
            .await
            .expect("open the run");
        sign_in(&browser).await;
        browser
            .until("the running run's page", || async {
                let h = browser.text("main h1").await;
                (h.contains(&id) && h.contains("running")).then_some(())
            })
            .await;
        let headers = browser.find("main details").await;
        headers.click().await.expect("open the headers");
        let open = || async {
            c.execute("return document.querySelector('main details').open", vec![])
                .await
                .expect("read")
        };
        assert_eq!(open().await, json!(true));
        // Past three polls, the record unchanged: still open.
        tokio::time::sleep(Duration::from_millis(3500)).await;
        assert_eq!(open().await, json!(true), "the page was drawn again");
        let h = browser.text("main h1").await;
        assert!(h.contains("running"), "{h}");
        browser.close().await;
    });
}
