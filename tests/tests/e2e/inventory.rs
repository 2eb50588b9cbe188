//! Inventory and State Manager associations: the tutorial's inventory section
//! with two agents reading this machine's real packages and interfaces
//! (read-only), schedule forms and refusals, association lifecycle, offline
//! runs uploaded later, hash-only uploads, fleet queries and change history.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use tether_tests::{Agent, Coordinator, wait_for};

/// Installed packages in this machine's dpkg database, read independently of the agent.
fn installed_dpkg_packages() -> Vec<String> {
    let Ok(text) = std::fs::read_to_string("/var/lib/dpkg/status") else {
        return Vec::new();
    };
    text.split("\n\n")
        .filter(|p| {
            p.lines()
                .any(|l| l.starts_with("Status:") && l.ends_with(" installed"))
        })
        .filter_map(|p| p.lines().find_map(|l| l.strip_prefix("Package: ")))
        .map(str::to_string)
        .collect()
}

/// Non-loopback interfaces, from /sys.
fn interfaces() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/sys/class/net")
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != "lo")
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn custom_dir(root: &Path, name: &str, files: &[(&str, &str)]) -> String {
    let d = root.join(format!("{name}-custom"));
    std::fs::create_dir_all(&d).expect("custom inventory dir");
    for (f, body) in files {
        std::fs::write(d.join(f), body).expect("custom inventory file");
    }
    d.display().to_string()
}

fn agent_with_custom(
    root: &Path,
    name: &str,
    coord: &Coordinator,
    act: (&str, &str),
    dir: &str,
) -> Agent {
    Agent::start_with_activation(
        root,
        name,
        coord,
        act,
        &[("TETHER_AGENT_CUSTOM_INVENTORY_DIR", dir)],
    )
}

fn entries(coord: &Coordinator, instance: &str, type_name: &str, extra: &[&str]) -> Value {
    let mut args = vec![
        "list-inventory-entries",
        "--instance-id",
        instance,
        "--type-name",
        type_name,
    ];
    args.extend_from_slice(extra);
    coord.json(&args)
}

fn wait_success(coord: &Coordinator, association_id: &str, nodes: u64) -> Value {
    wait_for(
        "the association to succeed on every node",
        Duration::from_secs(60),
        || {
            let d = coord.json(&["describe-association", "--association-id", association_id]);
            let o = &d["AssociationDescription"]["Overview"];
            (o["Status"] == "Success"
                && o["AssociationStatusAggregatedCount"]["Success"].as_u64() == Some(nodes))
            .then_some(d)
        },
    )
}

#[test]
fn the_tutorial_inventory_flow_works_with_tether() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(tmp.path());
    let (id, code) = coord.activation(2);
    let rack = custom_dir(
        tmp.path(),
        "n1",
        &[(
            "rack.json",
            r#"{"SchemaVersion":"1.0","TypeName":"Custom:RackInfo","Content":{"Location":"RENCI","Rack":"4"}}"#,
        )],
    );
    let none = custom_dir(tmp.path(), "n2", &[]);
    let n1 = agent_with_custom(tmp.path(), "n1", &coord, (&id, &code), &rack);
    let n2 = agent_with_custom(tmp.path(), "n2", &coord, (&id, &code), &none);

    // $ aws ssm create-association --name AWS-GatherSoftwareInventory --targets
    //   "Key=instanceids,Values=<ids>" --schedule-expression "cron(0 0/30 * 1/1 * ? *)"
    //   --parameters networkConfig=Enabled,windowsUpdates=Disabled,applications=Enabled
    let targets = format!(
        "Key=instanceids,Values={},{}",
        n1.instance_id, n2.instance_id
    );
    let created = coord.json(&[
        "create-association",
        "--name",
        "AWS-GatherSoftwareInventory",
        "--targets",
        &targets,
        "--schedule-expression",
        "cron(0 0/30 * 1/1 * ? *)",
        "--parameters",
        "networkConfig=Enabled,windowsUpdates=Disabled,applications=Enabled",
    ]);
    let desc = &created["AssociationDescription"];
    let assoc = desc["AssociationId"].as_str().unwrap().to_string();
    assert_eq!(desc["Name"], "AWS-GatherSoftwareInventory");
    assert_eq!(desc["ScheduleExpression"], "cron(0 0/30 * 1/1 * ? *)");
    assert_eq!(desc["AssociationVersion"], "1");
    assert_eq!(
        desc["Parameters"]["networkConfig"],
        serde_json::json!(["Enabled"])
    );
    assert_eq!(desc["Targets"][0]["Key"], "instanceids");
    assert!(desc["Date"].is_string(), "{desc}");

    // $ aws ssm list-associations
    let list = coord.json(&["list-associations"]);
    let all = list["Associations"].as_array().unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(all[0]["AssociationId"], assoc.as_str());

    // $ aws ssm describe-association --association-id <guid>: runs at once (a new association).
    let done = wait_success(&coord, &assoc, 2);
    assert!(done["AssociationDescription"]["LastExecutionDate"].is_string());

    for node in [&n1, &n2] {
        let st = coord.json(&[
            "describe-instance-associations-status",
            "--instance-id",
            &node.instance_id,
        ]);
        let infos = st["InstanceAssociationStatusInfos"].as_array().unwrap();
        assert_eq!(infos.len(), 1);
        assert_eq!(infos[0]["Status"], "Success", "{st}");
        assert!(
            infos[0]["ExecutionSummary"]
                .as_str()
                .unwrap()
                .contains("AWS:Application")
        );
    }

    // $ aws ssm list-inventory-entries --instance-id <id> --type-name AWS:Application
    let want = installed_dpkg_packages();
    for node in [&n1, &n2] {
        let apps = wait_for(
            "applications to be uploaded",
            Duration::from_secs(30),
            || {
                // Pages of at most 50 entries, as SSM: follow NextToken.
                let mut v = entries(&coord, &node.instance_id, "AWS:Application", &[]);
                v.get("CaptureTime")?;
                let mut all = v["Entries"].as_array()?.clone();
                assert!(all.len() <= 50);
                while let Some(t) = v
                    .get("NextToken")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                {
                    v = entries(
                        &coord,
                        &node.instance_id,
                        "AWS:Application",
                        &["--next-token", &t],
                    );
                    all.extend(v["Entries"].as_array()?.iter().cloned());
                }
                v["Entries"] = Value::Array(all);
                (v["Entries"].as_array()?.len() == want.len()).then_some(v)
            },
        );
        assert_eq!(apps["TypeName"], "AWS:Application");
        assert_eq!(apps["InstanceId"], node.instance_id.as_str());
        let names: Vec<&str> = apps["Entries"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["Name"].as_str().unwrap())
            .collect();
        for p in &want {
            assert!(names.contains(&p.as_str()), "{p} missing");
        }
        let first = &apps["Entries"][0];
        for field in [
            "Name",
            "Publisher",
            "Version",
            "Release",
            "Epoch",
            "InstalledTime",
            "ApplicationType",
            "Architecture",
            "URL",
            "Summary",
            "PackageId",
        ] {
            assert!(first.get(field).is_some(), "{field} missing in {first}");
        }
        assert!(!names.is_empty() || want.is_empty());
    }
    assert!(
        want.iter().any(|p| p == "dpkg"),
        "this machine runs Debian-style packaging"
    );

    // Filters as the aws CLI writes them.
    let filtered = entries(
        &coord,
        &n1.instance_id,
        "AWS:Application",
        &["--filters", "Key=Name,Values=dpk,Type=BeginWith"],
    );
    let f = filtered["Entries"].as_array().unwrap();
    assert!(
        !f.is_empty()
            && f.iter()
                .all(|e| e["Name"].as_str().unwrap().starts_with("dpk")),
        "{filtered}"
    );

    // Network: every interface but loopback, every address.
    let net = entries(&coord, &n1.instance_id, "AWS:Network", &[]);
    let mut names: Vec<String> = net["Entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["Name"].as_str().unwrap().to_string())
        .collect();
    names.sort();
    assert_eq!(names, interfaces(), "{net}");
    for e in net["Entries"].as_array().unwrap() {
        for field in [
            "IPV4",
            "IPV6",
            "SubnetMask",
            "MacAddress",
            "Gateway",
            "DNSServer",
            "DHCPServer",
        ] {
            assert!(e.get(field).is_some(), "{field} missing in {e}");
        }
    }
    let comp = entries(&coord, &n2.instance_id, "AWS:AWSComponent", &[]);
    assert_eq!(comp["Entries"][0]["Name"], "tether-agent");
    let info = entries(&coord, &n2.instance_id, "AWS:InstanceInformation", &[]);
    assert_eq!(info["Entries"][0]["InstanceId"], n2.instance_id.as_str());
    let rack = entries(&coord, &n1.instance_id, "Custom:RackInfo", &[]);
    assert_eq!(rack["Entries"][0]["Location"], "RENCI");
    assert_eq!(
        entries(&coord, &n2.instance_id, "Custom:RackInfo", &[])["Entries"],
        serde_json::json!([])
    );

    // Fleet queries: which nodes have dpkg, and how many run each of its versions.
    let inv = coord.json(&[
        "get-inventory",
        "--filters",
        "Key=AWS:Application.Name,Values=dpkg,Type=Equal",
    ]);
    let ents = inv["Entities"].as_array().unwrap();
    assert_eq!(ents.len(), 2, "{inv}");
    assert!(
        ents.iter()
            .all(|e| e["Data"]["AWS:InstanceInformation"]["Content"][0]["InstanceId"] == e["Id"])
    );
    let agg = coord.json(&[
        "get-inventory",
        "--filters",
        "Key=AWS:Application.Name,Values=dpkg,Type=Equal",
        "--aggregators",
        r#"[{"Expression":"AWS:Application.Name","Aggregators":[{"Expression":"AWS:Application.Version"}]}]"#,
    ]);
    let content = &agg["Entities"][0]["Data"]["AWS:Application"]["Content"];
    assert_eq!(content.as_array().unwrap().len(), 1, "{agg}");
    assert_eq!(content[0]["Name"], "dpkg");
    assert_eq!(content[0]["Count"], "2");
    let only_rack = coord.json(&[
        "get-inventory",
        "--filters",
        "Key=Custom:RackInfo.Location,Values=RENCI",
        "--result-attributes",
        "TypeName=Custom:RackInfo",
    ]);
    assert_eq!(only_rack["Entities"].as_array().unwrap().len(), 1);
    assert_eq!(only_rack["Entities"][0]["Id"], n1.instance_id.as_str());

    // The change history: everything was added by the first capture.
    let ch = coord.json(&[
        "list-inventory-changes",
        "--instance-id",
        &n1.instance_id,
        "--type-name",
        "Custom:RackInfo",
    ]);
    assert_eq!(ch["Changes"][0]["Added"][0]["Rack"], "4", "{ch}");
}

#[test]
fn schedule_forms_are_accepted_and_bad_ones_refused_with_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(tmp.path());
    let target = "Key=InstanceIds,Values=mi-0123456789abcdef0";
    let create = |expr: &str, extra: &[&str]| {
        let mut args = vec![
            "create-association",
            "--name",
            "AWS-RunShellScript",
            "--targets",
            target,
            "--parameters",
            "commands=true",
            "--schedule-expression",
            expr,
        ];
        args.extend_from_slice(extra);
        coord.cli(&args)
    };
    for expr in [
        "cron(0 0/30 * 1/1 * ? *)",
        "cron(0/30 * 1/1 * ? *)",
        "cron(15 10 ? * MON-FRI *)",
        "cron(0 2 ? * SUN#2 *)",
        "cron(0 23 ? * 6L *)",
        "cron(0 12 L * ? *)",
        "cron(0 9 LW * ? *)",
        "cron(0 9 15W * ? *)",
        "cron(0 0 1 JAN,JUL ? 2027-2030)",
        "rate(30 minutes)",
        "rate(1 hour)",
        "rate(1 day)",
        "rate(7 days)",
    ] {
        let out = create(expr, &[]);
        assert!(
            out.status.success(),
            "{expr}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for (expr, field) in [
        ("rate(5 minute)", "plural unit: rate(5 minutes)"),
        ("rate(1 hours)", "singular unit: rate(1 hour)"),
        ("cron(0 24 * * ? *)", "hours field \"24\""),
        ("cron(0 0 * * * *)", "use ? in one of them"),
        ("cron(0 0 ? * MON#6 *)", "the number after #"),
        ("cron(30 0 0 * * ? *)", "seconds field"),
        ("every day", "must be cron(...) or rate(...)"),
    ] {
        let out = create(expr, &[]);
        assert_eq!(out.status.code(), Some(254), "{expr} accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("InvalidSchedule") && err.contains(field),
            "{expr}: {err}"
        );
        assert!(out.stdout.is_empty());
    }
    let out = create("rate(30 minutes)", &["--apply-only-at-cron-interval"]);
    assert_eq!(out.status.code(), Some(254));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("ApplyOnlyAtCronInterval applies to cron expressions only")
    );
    // Nothing refused was stored.
    let list = coord.json(&["list-associations"]);
    assert_eq!(list["Associations"].as_array().unwrap().len(), 13);
}

#[test]
fn associations_update_delete_and_follow_tags() {
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(tmp.path());
    let (id, code) = coord.activation(1);
    let dir = custom_dir(tmp.path(), "n1", &[]);
    let n1 = agent_with_custom(tmp.path(), "n1", &coord, (&id, &code), &dir);
    // A command document as an association, run once at creation.
    let marker = tmp.path().join("ran");
    let cmd = format!("commands=echo run >> {}", marker.display());
    let created = coord.json(&[
        "create-association",
        "--name",
        "AWS-RunShellScript",
        "--targets",
        &format!("Key=InstanceIds,Values={}", n1.instance_id),
        "--parameters",
        &cmd,
        "--schedule-expression",
        "rate(1 day)",
        "--association-name",
        "echo-daily",
        "--max-concurrency",
        "50%",
        "--max-errors",
        "1",
    ]);
    let assoc = created["AssociationDescription"]["AssociationId"]
        .as_str()
        .unwrap()
        .to_string();
    wait_success(&coord, &assoc, 1);
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "run\n");
    // Tag targets: an instance tagged after the association exists picks it up.
    let tagged = coord.json(&[
        "create-association",
        "--name",
        "AWS-RunShellScript",
        "--targets",
        "Key=tag:Env,Values=lab",
        "--parameters",
        &format!("commands=touch {}", tmp.path().join("tagged").display()),
    ]);
    let tagged_id = tagged["AssociationDescription"]["AssociationId"]
        .as_str()
        .unwrap()
        .to_string();
    // An association that applies only at its cron interval does not run now
    // (checked below); created after the tagged one, it changes n1's set.
    let later = coord.json(&[
        "create-association",
        "--name",
        "AWS-RunShellScript",
        "--targets",
        &format!("Key=InstanceIds,Values={}", n1.instance_id),
        "--parameters",
        &format!("commands=touch {}", tmp.path().join("never").display()),
        "--schedule-expression",
        "cron(0 0 1 1 ? 2199)",
        "--apply-only-at-cron-interval",
    ]);
    let later_id = later["AssociationDescription"]["AssociationId"]
        .as_str()
        .unwrap()
        .to_string();
    // Once the agent has received `later`, it holds a set made after the
    // tagged association existed: that set must not have included it.
    wait_for("n1 to receive its new set", Duration::from_secs(30), || {
        n1.logged("association received", &later_id).then_some(())
    });
    assert!(
        !n1.logged("association received", &tagged_id),
        "{}",
        n1.log()
    );
    assert!(!tmp.path().join("tagged").exists());
    coord.json(&[
        "add-tags-to-resource",
        "--resource-type",
        "ManagedInstance",
        "--resource-id",
        &n1.instance_id,
        "--tags",
        "Key=Env,Value=lab",
    ]);
    wait_success(&coord, &tagged_id, 1);
    assert!(tmp.path().join("tagged").exists());
    coord.json(&["delete-association", "--association-id", &tagged_id]);
    // Update: a new version runs again right away.
    let up = coord.json(&[
        "update-association",
        "--association-id",
        &assoc,
        "--parameters",
        &format!("commands=echo v2 >> {}", marker.display()),
    ]);
    assert_eq!(up["AssociationDescription"]["AssociationVersion"], "2");
    wait_for("version 2 to run", Duration::from_secs(30), || {
        (std::fs::read_to_string(&marker).ok()? == "run\nv2\n").then_some(())
    });
    let st = coord.json(&[
        "describe-instance-associations-status",
        "--instance-id",
        &n1.instance_id,
    ]);
    let infos = st["InstanceAssociationStatusInfos"].as_array().unwrap();
    assert_eq!(infos.len(), 2);
    let pending = infos
        .iter()
        .find(|i| i["AssociationId"] == later_id.as_str())
        .unwrap();
    assert_eq!(pending["Status"], "Pending");
    // The agent has held it since before version 2 ran, and never ran it.
    assert!(
        !n1.logged("association run starting", &later_id),
        "{}",
        n1.log()
    );
    assert!(!tmp.path().join("never").exists());
    let named = coord.json(&[
        "list-associations",
        "--association-filter-list",
        "key=AssociationName,value=echo-daily",
    ]);
    assert_eq!(named["Associations"].as_array().unwrap().len(), 1);
    // Wrong version, unknown IDs: refused, nothing changed.
    let out = coord.cli(&[
        "update-association",
        "--association-id",
        &assoc,
        "--association-version",
        "1",
        "--schedule-expression",
        "rate(2 days)",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("InvalidAssociationVersion"));
    let out = coord.cli(&[
        "describe-association",
        "--association-id",
        "00000000-0000-4000-8000-000000000000",
    ]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("AssociationDoesNotExist"));
    // Delete: gone from the list and from the agent.
    coord.json(&["delete-association", "--association-id", &later_id]);
    coord.json(&["delete-association", "--association-id", &assoc]);
    assert_eq!(
        coord.json(&["list-associations"])["Associations"],
        serde_json::json!([])
    );
    wait_for(
        "the agent to drop its associations",
        Duration::from_secs(30),
        || {
            let set = std::fs::read_to_string(n1.state_dir.join("associations/set.json")).ok()?;
            set.contains("\"Envelopes\":[]").then_some(())
        },
    );
}

#[test]
fn offline_runs_are_uploaded_later_and_unchanged_types_travel_as_hashes() {
    let tmp = tempfile::tempdir().unwrap();
    let mut coord = Coordinator::start(tmp.path());
    let (id, code) = coord.activation(1);
    let marker = |v: &str| format!(r#"{{"TypeName":"Custom:Marker","Content":{{"Value":"{v}"}}}}"#);
    let dir = custom_dir(tmp.path(), "n1", &[("marker.json", &marker("one"))]);
    let n1 = agent_with_custom(tmp.path(), "n1", &coord, (&id, &code), &dir);
    let created = coord.json(&[
        "create-association", "--name", "AWS-GatherSoftwareInventory",
        "--targets", &format!("Key=InstanceIds,Values={}", n1.instance_id),
        "--schedule-expression", "rate(1 minute)",
        "--parameters", "applications=Disabled,networkConfig=Disabled,awsComponents=Disabled,services=Disabled,instanceDetailedInformation=Disabled,customInventory=Enabled",
    ]);
    let assoc = created["AssociationDescription"]["AssociationId"]
        .as_str()
        .unwrap()
        .to_string();
    wait_success(&coord, &assoc, 1);
    let first = entries(&coord, &n1.instance_id, "Custom:Marker", &[]);
    assert_eq!(first["Entries"][0]["Value"], "one");
    let t1 = chrono::Utc::now().to_rfc3339();

    // Cut off: the schedule still runs on the node, the result waits in its outbox.
    coord.stop();
    std::fs::write(Path::new(&dir).join("marker.json"), marker("two")).unwrap();
    let outbox = n1.state_dir.join("inventory/outbox.json");
    wait_for(
        "an offline run to queue its result",
        Duration::from_secs(90),
        || {
            std::fs::read_to_string(&outbox)
                .ok()?
                .contains(r#""Value":"two""#)
                .then_some(())
        },
    );
    coord.restart();
    wait_for(
        "the offline result to be uploaded",
        Duration::from_secs(30),
        || {
            let v = entries(&coord, &n1.instance_id, "Custom:Marker", &[]);
            (v["Entries"][0]["Value"] == "two").then_some(())
        },
    );
    let changes = coord.json(&[
        "list-inventory-changes",
        "--instance-id",
        &n1.instance_id,
        "--start-time",
        &t1,
    ]);
    let c = &changes["Changes"][0];
    assert_eq!(c["TypeName"], "Custom:Marker");
    assert_eq!(c["Added"][0]["Value"], "two", "{changes}");
    assert_eq!(c["Removed"][0]["Value"], "one", "{changes}");
    let t2 = chrono::Utc::now().to_rfc3339();
    let capture = entries(&coord, &n1.instance_id, "Custom:Marker", &[])["CaptureTime"].clone();

    // The next run finds nothing new: only the hash travels, the capture time moves on.
    let start = Instant::now();
    wait_for(
        "a run whose upload is hash-only",
        Duration::from_secs(90),
        || {
            n1.log()
                .lines()
                .any(|l| l.contains("inventory stored") && l.contains("unchanged=1"))
                .then_some(())
        },
    );
    assert!(start.elapsed() < Duration::from_secs(90));
    let now = entries(&coord, &n1.instance_id, "Custom:Marker", &[]);
    assert_eq!(now["Entries"][0]["Value"], "two");
    assert_ne!(now["CaptureTime"], capture);
    let none = coord.json(&[
        "list-inventory-changes",
        "--instance-id",
        &n1.instance_id,
        "--start-time",
        &t2,
    ]);
    assert_eq!(none["Changes"], serde_json::json!([]));
}

#[test]
fn the_coordinator_asks_again_for_content_it_does_not_hold() {
    use sha2::Digest;
    let tmp = tempfile::tempdir().unwrap();
    let coord = Coordinator::start(tmp.path());
    let (id, code) = coord.activation(1);
    let dir = custom_dir(
        tmp.path(),
        "n1",
        &[(
            "m.json",
            r#"{"TypeName":"Custom:Marker","Content":{"Value":"one"}}"#,
        )],
    );
    let mut n1 = agent_with_custom(tmp.path(), "n1", &coord, (&id, &code), &dir);
    // The agent believes the coordinator already holds this content (as after
    // a coordinator restored from an older backup): it sends the hash alone.
    n1.crash();
    let hash = hex::encode(sha2::Sha256::digest(br#"[{"Value":"one"}]"#));
    std::fs::create_dir_all(n1.state_dir.join("inventory")).unwrap();
    std::fs::write(
        n1.state_dir.join("inventory/acked.json"),
        format!(r#"{{"Custom:Marker":"{hash}"}}"#),
    )
    .unwrap();
    n1.run();
    let created = coord.json(&[
        "create-association",
        "--name",
        "AWS-GatherSoftwareInventory",
        "--instance-id",
        &n1.instance_id,
        "--parameters",
        "applications=Disabled,networkConfig=Disabled,awsComponents=Disabled,services=Disabled,instanceDetailedInformation=Disabled",
    ]);
    let assoc = created["AssociationDescription"]["AssociationId"]
        .as_str()
        .unwrap()
        .to_string();
    wait_success(&coord, &assoc, 1);
    let v = wait_for(
        "the content re-sent in full",
        Duration::from_secs(30),
        || {
            let v = entries(&coord, &n1.instance_id, "Custom:Marker", &[]);
            (v["Entries"][0]["Value"] == "one").then_some(v)
        },
    );
    assert_eq!(v["Entries"].as_array().unwrap().len(), 1);
    assert!(
        n1.log()
            .contains("the coordinator asks for full inventory content"),
        "{}",
        n1.log()
    );
}
