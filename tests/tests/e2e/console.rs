//! The web console in a real browser: headless Chromium (Debian's
//! `chromium` and `chromium-driver`, installed by scripts/test.sh) driven
//! over WebDriver (fantoccini) against a real coordinator and real agents,
//! all on loopback. Each page the tests visit is saved as a PNG under
//! `target/debug/console-screenshots/` (the test's artefacts).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use tether_tests::{Agent, Coordinator, bin, tether_as};

/// A chromedriver on a loopback port and a headless Chromium session.
struct Browser {
    driver: Child,
    client: Client,
    shots: PathBuf,
    base: String,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl Browser {
    async fn start(coord: &Coordinator, profile: &Path, name: &str) -> Browser {
        Browser::start_in(coord, profile, name, None).await
    }

    /// A browser whose time zone is `tz` (Chromium follows `TZ`).
    async fn start_in(
        coord: &Coordinator,
        profile: &Path,
        name: &str,
        tz: Option<&str>,
    ) -> Browser {
        let port = free_port();
        let mut driver = Command::new("chromedriver");
        if let Some(tz) = tz {
            driver.env("TZ", tz);
        }
        let driver = driver
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver (scripts/test.sh installs chromium-driver)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not listen");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let caps = json!({
            "browserName": "chrome",
            // The coordinator's certificate is signed by its own CA.
            "acceptInsecureCerts": true,
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--window-size=1280,1000",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        });
        let Value::Object(caps) = caps else {
            unreachable!()
        };
        let connector = hyper_util::client::legacy::connect::HttpConnector::new();
        let client = ClientBuilder::new(connector)
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .expect("a WebDriver session with headless Chromium");
        let shots = bin("tether")
            .parent()
            .expect("target dir")
            .join("console-screenshots")
            .join(name);
        std::fs::create_dir_all(&shots).expect("screenshot directory");
        Browser {
            driver,
            client,
            shots,
            base: format!("https://127.0.0.1:{}", coord.http_port),
        }
    }

    async fn goto(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .expect("navigate");
    }

    async fn shot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("screenshot");
        std::fs::write(self.shots.join(format!("{name}.png")), png).expect("save screenshot");
    }

    async fn text(&self, css: &str) -> String {
        match self.client.find(Locator::Css(css)).await {
            Ok(e) => e.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    async fn count(&self, css: &str) -> usize {
        self.client
            .find_all(Locator::Css(css))
            .await
            .map(|v| v.len())
            .unwrap_or(0)
    }

    /// Waits until `f` says yes, or panics naming `what` (with the page's text).
    async fn until<F, Fut>(&self, what: &str, secs: u64, mut f: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if f().await {
                return;
            }
            if Instant::now() > deadline {
                let body = self.text("body").await;
                panic!("timed out waiting for {what}; the page says:\n{body}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn fill(&self, css: &str, value: &str) {
        let e = self.client.find(Locator::Css(css)).await.expect(css);
        e.clear().await.expect("clear");
        e.send_keys(value).await.expect("type");
    }

    async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .expect(css)
            .click()
            .await
            .expect("click");
    }

    async fn sign_in(&self, token: &str) {
        self.goto("/console/login").await;
        self.fill("#token", token).await;
        self.click("#signin").await;
    }

    async fn url(&self) -> String {
        self.client
            .current_url()
            .await
            .map(|u| u.to_string())
            .unwrap_or_default()
    }

    /// A POST from the page's own origin with the session's cookie and a
    /// form of our choosing: what a forged cross-site form would send if the
    /// browser attached the cookie. Returns the HTTP status.
    async fn post(&self, path: &str, body: &str) -> u64 {
        let v = self
            .client
            .execute_async(
                "const [p, b, done] = arguments;
                 fetch(p, {method: 'POST', body: b, credentials: 'same-origin', redirect: 'manual',
                           headers: {'Content-Type': 'application/x-www-form-urlencoded'}})
                   .then(r => done(r.status)).catch(e => done(-1));",
                vec![json!(path), json!(body)],
            )
            .await
            .expect("fetch in the page");
        v.as_u64().unwrap_or(0)
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn root_token(coord: &Coordinator) -> String {
    coord.operator()["Token"]
        .as_str()
        .expect("Token in operator.json")
        .to_string()
}

const MARKUP_NAME: &str = "<img src=x id=evil-name onerror=\"window.pwned=1\">";
const MARKUP_TAG: &str = "<script>window.pwned=2</script>";

#[test]
fn the_console_shows_the_fleet_runs_a_command_and_refuses_what_policies_refuse() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(tmp.path());
    let a1 = Agent::start(tmp.path(), "web1", &coord);
    let a2 = Agent::start(tmp.path(), "web2", &coord);
    // Markup in an instance's name and a tag's value, put in the database
    // as its owner could (the API's patterns keep it out): shown as text.
    let tags = json!([{"Key": "role", "Value": "web"}, {"Key": "note", "Value": MARKUP_TAG}]);
    coord.sql(&format!(
        "UPDATE instances SET name = '{}', tags_json = '{}' WHERE instance_id = '{}'",
        MARKUP_NAME.replace('\'', "''"),
        tags.to_string().replace('\'', "''"),
        a1.instance_id
    ));
    coord.json(&[
        "add-tags-to-resource",
        "--resource-type",
        "ManagedInstance",
        "--resource-id",
        &a2.instance_id,
        "--tags",
        "Key=role,Value=web",
    ]);
    // Inventory for the instance page.
    coord.json(&[
        "create-association",
        "--name",
        "AWS-GatherSoftwareInventory",
        "--targets",
        &format!("Key=instanceids,Values={}", a2.instance_id),
        "--parameters",
        "applications=Enabled,networkConfig=Enabled",
    ]);
    coord.json(&[
        "put-parameter",
        "--name",
        "/app/db-password",
        "--type",
        "SecureString",
        "--value",
        "Sekr1t-Value-42",
    ]);
    let token = root_token(&coord);

    runtime().block_on(async {
        let b = Browser::start(&coord, &tmp.path().join("chrome"), "main").await;

        // Not signed in: the sign-in page.
        b.goto("/console/fleet").await;
        assert!(b.url().await.contains("/console/login"), "{}", b.url().await);
        b.shot("01-login").await;
        b.sign_in(&token).await;

        // The fleet: both agents Online, counted at the top.
        b.until("two Online instances", 30, || async {
            b.count("#fleet tbody tr[data-instance]").await == 2
                && b.text("[data-status=Online]").await == "2"
        })
        .await;
        let fleet = b.text("#fleet").await;
        assert!(fleet.contains(MARKUP_NAME), "the name shows as text: {fleet}");
        assert!(fleet.contains(MARKUP_TAG), "the tag shows as text: {fleet}");
        assert_eq!(b.count("#evil-name").await, 0, "no element from a name");
        assert_eq!(b.count("#fleet script, #fleet img").await, 0);
        // The table refreshes by itself (the fragment replaces it) and stays inert.
        tokio::time::sleep(Duration::from_secs(11)).await;
        assert_eq!(b.count("#fleet tbody tr[data-instance]").await, 2);
        let pwned = b.client.execute("return window.pwned || 0", vec![]).await.unwrap();
        assert_eq!(pwned, json!(0), "markup in the fleet ran");
        b.shot("02-fleet").await;
        // A filter: by name.
        // Filters: by name (or ID), by tag, by status.
        b.goto(&format!("/console/fleet?name={}", a2.instance_id)).await;
        assert_eq!(b.count("#fleet tbody tr[data-instance]").await, 1);
        assert!(b.text("#fleet").await.contains(&a2.instance_id));
        b.goto("/console/fleet?tag=note").await;
        assert_eq!(b.count("#fleet tbody tr[data-instance]").await, 1);
        assert!(b.text("#fleet").await.contains(&a1.instance_id));
        b.goto("/console/fleet?tag=role%3Dweb&status=ConnectionLost").await;
        assert_eq!(b.count("#fleet tbody tr[data-instance]").await, 0);

        // Run a command on a tag from the form, watching the count.
        b.goto("/console/run?document=AWS-RunShellScript").await;
        b.fill(
            "#p_commands",
            "echo first-line '<b id=injected>bold</b>'\nsleep 4\necho console-done",
        )
        .await;
        b.click("input[name=mode][value=tags]").await;
        b.fill("#tag_key", "role").await;
        b.fill("#tag_values", "web").await;
        b.until("the target preview to count 2", 15, || async {
            b.text("#target-count").await == "2"
        })
        .await;
        b.fill("#comment", "from the console").await;
        b.shot("03-run").await;
        b.click("#send").await;
        b.until("the command page", 15, || async {
            b.url().await.contains("/console/commands/")
        })
        .await;
        let url = b.url().await;
        let command_id = url
            .rsplit('/')
            .next()
            .and_then(|t| t.split('?').next())
            .unwrap()
            .to_string();
        // The output arrives while the step runs, then the rest.
        b.until("the first line while it runs", 20, || async {
            let out = b.text("#command-output").await;
            out.contains("first-line") && !out.contains("console-done")
        })
        .await;
        b.shot("04-command-running").await;
        b.until("the rest of the output", 40, || async {
            b.text("#command-output").await.contains("console-done")
                && b.count("#invocations td.status .pill.ok").await == 2
        })
        .await;
        assert!(b.text("#command-output").await.contains("<b id=injected>bold</b>"));
        assert_eq!(b.count("#injected").await, 0, "output markup stayed text");
        b.shot("05-command-done").await;
        b.click("#full-output").await;
        b.until("the full output", 10, || async {
            b.url().await.contains("full=1") && b.text("#command-output").await.contains("console-done")
        })
        .await;
        // Through the one door: the CLI sees the same command, requested by root.
        let listed = coord.json(&["list-commands", "--command-id", &command_id]);
        assert_eq!(listed["Commands"][0]["Comment"], "from the console");

        // History finds it.
        b.goto("/console/history?document=AWS-RunShellScript").await;
        assert!(b.text("#commands").await.contains(&command_id));
        b.shot("06-history").await;

        // The instance page: details and inventory.
        b.until("inventory on the instance page", 60, || async {
            b.goto(&format!("/console/instances/{}", a2.instance_id)).await;
            b.count("#applications tbody tr td:not(.empty)").await > 0
        })
        .await;
        assert!(b.count("#network tbody tr").await > 0);
        assert!(b.text("#commands").await.contains(&command_id));
        b.shot("07-instance").await;
        // Search within the applications.
        let first = b.text("#applications tbody tr td").await;
        b.goto(&format!(
            "/console/instances/{}?app={}",
            a2.instance_id,
            &first[..first.len().min(3)]
        ))
        .await;
        assert!(b.text("#applications").await.contains(&first));

        for (page, name) in [
            ("/console/documents", "08-documents"),
            ("/console/documents/AWS-RunShellScript", "09-document"),
            ("/console/associations", "10-associations"),
            ("/console/parameters", "11-parameters"),
            ("/console/audit?key=EventName&value=SendCommand", "12-audit"),
        ] {
            b.goto(page).await;
            assert_eq!(b.count(".error").await, 0, "{page}: {}", b.text("main").await);
            b.shot(name).await;
        }
        assert!(b.text("#events").await.contains("SendCommand"));

        // A SecureString's value reaches the browser only when asked for.
        b.goto("/console/parameters").await;
        let source = b.client.source().await.unwrap();
        assert!(source.contains("/app/db-password"));
        assert!(!source.contains("Sekr1t-Value-42"), "the value was sent unasked");
        b.click("#parameters button").await;
        b.until("the decrypted value", 10, || async {
            b.text("#parameter-value").await == "Sekr1t-Value-42"
        })
        .await;

        // A forged POST (no CSRF token, or a wrong one) is refused and does nothing.
        let before = coord.json(&["list-commands"])["Commands"].as_array().unwrap().len();
        let form = format!(
            "document=AWS-RunShellScript&p_commands=id&mode=ids&ids={}",
            a1.instance_id
        );
        assert_eq!(b.post("/console/run", &form).await, 403);
        assert_eq!(b.post("/console/run", &format!("csrf=00&{form}")).await, 403);
        assert_eq!(b.post("/console/logout", "").await, 403);
        let after = coord.json(&["list-commands"])["Commands"].as_array().unwrap().len();
        assert_eq!(before, after, "a forged POST sent a command");
        b.goto("/console/fleet").await;
        assert!(b.url().await.contains("/console/fleet"), "still signed in");

        // Sign out: the session is gone.
        b.click("#logout").await;
        b.until("the sign-in page", 10, || async { b.url().await.contains("/console/login") })
            .await;
        b.goto("/console/fleet").await;
        assert!(b.url().await.contains("/console/login"));

        // A restricted user: may look, may not send; the page says so and
        // the audit trail records the refusal, from the console.
        coord.json(&["create-user", "--user-name", "viewer"]);
        coord.json(&[
            "put-user-policy",
            "--user-name",
            "viewer",
            "--policy-name",
            "look",
            "--policy-document",
            r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["tether:ConsoleLogin","ssm:Describe*","ssm:List*","ssm:Get*"],"Resource":"*"}]}"#,
        ]);
        let config = tmp.path().join("viewer.json");
        let issued = coord.json(&["create-operator-config", "--user-name", "viewer"]);
        std::fs::write(&config, issued.to_string()).unwrap();
        let viewer_token = issued["Token"].as_str().expect("Token").to_string();
        b.sign_in(&viewer_token).await;
        b.until("the fleet as viewer", 10, || async {
            b.count("#fleet tbody tr[data-instance]").await == 2
        })
        .await;
        b.goto(&format!("/console/run?document=AWS-RunShellScript&ids={}", a1.instance_id))
            .await;
        b.fill("#p_commands", "id").await;
        b.click("#send").await;
        b.until("the refusal in the page", 10, || async {
            b.text(".error").await.contains("AccessDeniedException")
        })
        .await;
        assert!(b.text(".error").await.contains("ssm:SendCommand"));
        b.shot("13-refused").await;
        // Nor may the viewer decrypt: the refusal, and no value.
        b.goto("/console/parameters").await;
        b.click("#parameters button").await;
        b.until("the decryption refused", 10, || async {
            b.text(".error").await.contains("AccessDeniedException")
        })
        .await;
        assert!(!b.client.source().await.unwrap().contains("Sekr1t-Value-42"));
        let events = coord.json(&[
            "lookup-events",
            "--lookup-attributes",
            "AttributeKey=Username,AttributeValue=viewer",
        ]);
        let refused: Vec<Value> = events["Events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["EventName"] == "SendCommand")
            .map(|e| serde_json::from_str(e["CloudTrailEvent"].as_str().unwrap()).unwrap())
            .collect();
        assert!(
            refused.iter().any(|r: &Value| r["errorCode"] == "AccessDeniedException"
                && r["additionalEventData"]["tether"]["transport"] == "console"
                && r["userAgent"] == "Tether web console"),
            "{events}"
        );
        let logins = events["Events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["EventName"] == "ConsoleLogin")
            .count();
        assert!(logins >= 1, "ConsoleLogin is audited: {events}");
        // The restricted user's own CLI gets the same refusal.
        let out = tether_as(
            &config,
            &["send-command", "--document-name", "AWS-RunShellScript", "--instance-ids", &a1.instance_id, "--parameters", "commands=id"],
        );
        assert!(!out.status.success());
        drop(b);
    });
    drop((a1, a2));
}

#[test]
fn a_console_session_expires_and_a_user_without_console_login_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let coord =
        Coordinator::start_with_env(tmp.path(), &[("TETHER_CONSOLE_SESSION_LIFETIME", "3")]);
    let token = root_token(&coord);
    coord.json(&["create-user", "--user-name", "nologin"]);
    coord.json(&[
        "put-user-policy",
        "--user-name",
        "nologin",
        "--policy-name",
        "ssm",
        "--policy-document",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ssm:*","Resource":"*"}]}"#,
    ]);
    let issued = coord.json(&["create-operator-config", "--user-name", "nologin"]);
    let nologin = issued["Token"].as_str().expect("Token").to_string();
    runtime().block_on(async {
        let b = Browser::start(&coord, &tmp.path().join("chrome"), "expiry").await;
        b.sign_in(&token).await;
        b.until("the fleet", 10, || async {
            b.url().await.contains("/console/fleet")
        })
        .await;
        tokio::time::sleep(Duration::from_secs(4)).await;
        b.goto("/console/history").await;
        assert!(
            b.url().await.contains("/console/login?expired=1"),
            "{}",
            b.url().await
        );
        assert!(b.text(".note").await.contains("expired"));
        b.shot("01-expired").await;

        b.sign_in("not-a-token").await;
        b.until("the bad token refused", 10, || async {
            b.text(".error").await.contains("not valid")
        })
        .await;
        b.sign_in(&nologin).await;
        b.until(
            "sign-in refused without tether:ConsoleLogin",
            10,
            || async { b.text(".error").await.contains("tether:ConsoleLogin") },
        )
        .await;
        assert!(b.url().await.contains("/console/login"));
        b.shot("02-no-console-login").await;
        // A sign-in form posted without its CSRF cookie's token is refused.
        assert_eq!(
            b.post("/console/login", &format!("token={token}")).await,
            403
        );
    });
    let events = coord.json(&[
        "lookup-events",
        "--lookup-attributes",
        "AttributeKey=EventName,AttributeValue=ConsoleLogin",
    ]);
    assert!(
        events.to_string().contains("AccessDeniedException"),
        "{events}"
    );
}

/// What the first console left: the Cancel button goes when the command
/// ends (the live update, no reload); times are UTC in the HTML and the
/// browser's own time zone on the page (UTC in the title); an instance's
/// inventory changes as a table (old → new, when) and its custom types;
/// history filtered by requester over the whole history, not one page.
#[test]
fn the_console_drops_cancel_when_done_shows_local_times_inventory_changes_and_requesters() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(tmp.path());
    let custom = tmp.path().join("n1-custom");
    std::fs::create_dir_all(&custom).unwrap();
    let rack = |r: &str| {
        format!(
            r#"{{"SchemaVersion":"1.0","TypeName":"Custom:RackInfo","Content":{{"Location":"RENCI","Rack":"{r}"}}}}"#
        )
    };
    std::fs::write(custom.join("rack.json"), rack("4")).unwrap();
    let (act, code) = coord.activation(1);
    let a = Agent::start_with_activation(
        tmp.path(),
        "n1",
        &coord,
        (&act, &code),
        &[(
            "TETHER_AGENT_CUSTOM_INVENTORY_DIR",
            custom.to_str().unwrap(),
        )],
    );
    let created = coord.json(&[
        "create-association", "--name", "AWS-GatherSoftwareInventory",
        "--targets", &format!("Key=InstanceIds,Values={}", a.instance_id),
        "--schedule-expression", "rate(1 minute)",
        "--parameters", "applications=Disabled,networkConfig=Enabled,awsComponents=Disabled,services=Disabled,instanceDetailedInformation=Disabled,customInventory=Enabled",
    ]);
    assert!(created["AssociationDescription"]["AssociationId"].is_string());

    // History: one command by alice, then 55 by root (more than a page).
    coord.json(&["create-user", "--user-name", "alice"]);
    coord.json(&[
        "put-user-policy", "--user-name", "alice", "--policy-name", "run",
        "--policy-document",
        r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["ssm:*","tether:ConsoleLogin"],"Resource":"*"}]}"#,
    ]);
    let alice = tmp.path().join("alice.json");
    std::fs::write(
        &alice,
        coord
            .json(&["create-operator-config", "--user-name", "alice"])
            .to_string(),
    )
    .unwrap();
    let out = tether_as(
        &alice,
        &[
            "send-command",
            "--document-name",
            "AWS-RunShellScript",
            "--instance-ids",
            &a.instance_id,
            "--parameters",
            "commands=echo alice",
            "--comment",
            "by alice",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let by_alice: Value = serde_json::from_slice(&out.stdout).unwrap();
    let alice_command = by_alice["Command"]["CommandId"]
        .as_str()
        .unwrap()
        .to_string();
    for n in 0..55 {
        coord.json(&[
            "send-command",
            "--document-name",
            "AWS-RunShellScript",
            "--instance-ids",
            &a.instance_id,
            "--parameters",
            "commands=true",
            "--comment",
            &format!("root {n}"),
        ]);
    }
    // The CLI's flags for Tether's extras.
    let described = coord.json(&[
        "describe-instance-information",
        "--include-tags",
        "--summarize",
        "--name-contains",
        &a.instance_id[3..12].to_uppercase(),
    ]);
    assert_eq!(described["Summary"]["Total"], 1, "{described}");
    assert_eq!(
        described["InstanceInformationList"][0]["InstanceId"],
        a.instance_id.as_str()
    );
    assert!(
        described["InstanceInformationList"][0]["Tags"].is_array(),
        "{described}"
    );
    let none = coord.json(&[
        "describe-instance-information",
        "--name-contains",
        "no-such-node",
        "--summarize",
    ]);
    assert_eq!(none["Summary"]["Total"], 0, "{none}");
    let listed = coord.json(&["list-commands", "--requested-by", "alice"]);
    let ids: Vec<&str> = listed["Commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["CommandId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [alice_command.as_str()], "{listed}");

    let token = root_token(&coord);
    runtime().block_on(async {
        let b = Browser::start_in(&coord, &tmp.path().join("chrome"), "extras", Some("Asia/Kolkata")).await;
        b.sign_in(&token).await;
        b.until("the fleet", 15, || async { b.url().await.contains("/console/fleet") }).await;

        // History by requester: alice's one command, though 55 newer ones
        // fill the first pages.
        b.goto("/console/history?requester=alice").await;
        let rows = b.count("#commands tbody tr").await;
        let table = b.text("#commands").await;
        assert_eq!(rows, 1, "{table}");
        assert!(table.contains(&alice_command), "{table}");
        assert_eq!(b.count("#next-page").await, 0);
        b.shot("01-history-alice").await;
        b.goto("/console/history?requester=root").await;
        assert_eq!(b.count("#commands tbody tr").await, 50);
        assert!(!b.text("#commands").await.contains(&alice_command));
        b.click("#next-page").await;
        b.until("root's second page", 10, || async { b.url().await.contains("next=") }).await;
        assert_eq!(b.count("#commands tbody tr").await, 5, "{}", b.text("#commands").await);
        assert!(!b.text("#commands").await.contains(&alice_command));

        // Local time: the HTML says UTC; the page shows Asia/Kolkata
        // (UTC+5:30) with the UTC value in the title.
        b.goto(&format!("/console/commands/{alice_command}")).await;
        b.until("a local time", 10, || async {
            b.count("time.local[data-utc]").await > 0
        })
        .await;
        let shown = b.text("time.local").await;
        let title = b
            .client
            .find(Locator::Css("time.local"))
            .await
            .unwrap()
            .attr("title")
            .await
            .unwrap()
            .unwrap_or_default();
        let utc = chrono::NaiveDateTime::parse_from_str(&title, "%Y-%m-%d %H:%M:%S UTC")
            .unwrap_or_else(|e| panic!("title {title:?}: {e}"));
        let local = chrono::NaiveDateTime::parse_from_str(&shown[..19], "%Y-%m-%d %H:%M:%S")
            .unwrap_or_else(|e| panic!("shown {shown:?}: {e}"));
        assert_eq!(local - utc, chrono::Duration::minutes(330), "{shown} / {title}");
        assert!(shown.contains("GMT+5:30") || shown.contains("IST"), "{shown}");
        let raw = b
            .client
            .execute_async(
                "const [p, done] = arguments; fetch(p, {credentials: 'same-origin'}).then(r => r.text()).then(done);",
                vec![json!(format!("/console/commands/{alice_command}"))],
            )
            .await
            .unwrap();
        let raw = raw.as_str().unwrap_or_default();
        assert!(raw.contains(&format!("{title}</time>")), "the HTML carries UTC");
        b.shot("02-command-local-time").await;

        // Cancel: there while the command runs, gone when it ends, without
        // a reload (the marker set on the page survives).
        b.goto(&format!("/console/run?document=AWS-RunShellScript&ids={}", a.instance_id)).await;
        b.fill("#p_commands", "sleep 5\necho slept").await;
        b.click("#send").await;
        b.until("the command page", 15, || async { b.url().await.contains("/console/commands/") }).await;
        assert_eq!(b.count("#cancel").await, 1, "Cancel while it runs");
        b.client.execute("window.consoleMarker = 42; return 1", vec![]).await.unwrap();
        b.shot("03-command-running").await;
        b.until("the command to end", 40, || async {
            b.text("#command-output").await.contains("slept")
                && b.count("#command-status [data-done]").await == 1
        })
        .await;
        b.until("Cancel to go", 10, || async { b.count("#cancel").await == 0 }).await;
        let marker = b.client.execute("return window.consoleMarker || 0", vec![]).await.unwrap();
        assert_eq!(marker, json!(42), "the page was not reloaded");
        assert!(b.text("#command-status").await.contains("Success"));
        b.shot("04-command-done").await;

        // Inventory: the custom type, then its change as old → new.
        b.until("the custom type on the instance page", 90, || async {
            b.goto(&format!("/console/instances/{}", a.instance_id)).await;
            b.text("#custom-RackInfo").await.contains("RENCI")
        })
        .await;
        std::fs::write(custom.join("rack.json"), rack("5")).unwrap();
        b.until("the change in the table", 150, || async {
            b.goto(&format!("/console/instances/{}", a.instance_id)).await;
            b.count("#inventory-changes tr.changed").await > 0
        })
        .await;
        let changes = b.text("#inventory-changes").await;
        assert!(changes.contains("Custom:RackInfo"), "{changes}");
        assert!(changes.contains("Rack: 4 → 5"), "{changes}");
        assert!(b.text("#custom-RackInfo").await.contains('5'));
        assert_eq!(b.count("#inventory-changes time.local").await, b.count("#inventory-changes tbody tr").await);
        let source = b.client.source().await.unwrap();
        assert!(!source.contains("\"Changes\""), "no raw JSON");
        b.client
            .execute("document.getElementById('inventory').scrollIntoView(); return 1", vec![])
            .await
            .unwrap();
        b.shot("05-instance-inventory-changes").await;
    });
    drop(a);
}
