//! The console's pages, each made of requests through the one door
//! ([`Ctx::call`]): what a page shows is what those requests answered the
//! signed-in principal, and a refusal is shown in the page.

use std::collections::HashMap;

use hyper::{Method, StatusCode};
use maud::{Markup, html};
use serde_json::{Value, json};
use tether_ssm::{ApiError, limits};

use super::views::{self, ago_time, error_box, layout, pill, qs, s, seg, time};
use super::{Answer, Ctx};

type Form = HashMap<String, String>;
type Query = HashMap<String, String>;

/// Routes a signed-in request.
pub(super) async fn route(ctx: &Ctx, method: &Method, path: &str, q: &Query, form: Form) -> Answer {
    let rest = path.trim_start_matches("/console/");
    let parts: Vec<&str> = rest.split('/').collect();
    let get = method == Method::GET;
    let post = method == Method::POST;
    match parts.as_slice() {
        ["fleet"] if get => page(ctx, "Fleet", "fleet", fleet(ctx, q, true).await),
        ["fleet", "table"] if get => fragment(fleet(ctx, q, false).await),
        ["instances", id] if get => page(ctx, id, "fleet", instance(ctx, id, q).await),
        ["commands", id] if get => page(ctx, "Command", "history", command(ctx, id, q).await),
        ["commands", id, "status"] if get => fragment(command_status(ctx, id).await),
        ["commands", id, "output"] if get => {
            let inst = q.get("instance").map(String::as_str).unwrap_or("");
            fragment(output(ctx, id, inst, q.contains_key("full")).await)
        }
        ["commands", id, "cancel"] if post => {
            match ctx.call("CancelCommand", json!({"CommandId": id})).await {
                Ok(_) => Answer::Redirect(format!("/console/commands/{}", seg(id))),
                Err(e) => page(ctx, "Command", "history", Err(e)),
            }
        }
        ["run"] if get => page(ctx, "Run a command", "run", run_form(ctx, q, None).await),
        ["run"] if post => run_send(ctx, form).await,
        ["run", "preview"] if get => Answer::Json(preview(ctx, q).await),
        ["history"] if get => page(ctx, "History", "history", history(ctx, q).await),
        ["documents"] if get => page(ctx, "Documents", "documents", documents(ctx, q).await),
        ["documents", name] if get => page(ctx, name, "documents", document(ctx, name, q).await),
        ["associations"] if get => page(
            ctx,
            "Associations",
            "associations",
            associations(ctx, q).await,
        ),
        ["parameters"] if get => page(ctx, "Parameters", "parameters", parameters(ctx, q).await),
        ["parameters", "value"] if post => page(
            ctx,
            "Parameter",
            "parameters",
            parameter_value(ctx, &form).await,
        ),
        ["audit"] if get => page(ctx, "Audit trail", "audit", audit(ctx, q).await),
        _ => Answer::Html(
            StatusCode::NOT_FOUND,
            layout(
                "Not found",
                "",
                &ctx.session.principal_arn,
                &ctx.session.csrf,
                html! { div.error { "No such console page: " (path) } },
            )
            .into_string(),
        ),
    }
}

/// A whole page; an error is shown in it (403 for a refusal).
fn page(ctx: &Ctx, title: &str, section: &str, body: Result<Markup, ApiError>) -> Answer {
    let (status, body) = match body {
        Ok(m) => (StatusCode::OK, m),
        Err(e) => (status_of(&e), html! { h1 { (title) } (error_box(&e)) }),
    };
    Answer::Html(
        status,
        layout(
            title,
            section,
            &ctx.session.principal_arn,
            &ctx.session.csrf,
            body,
        )
        .into_string(),
    )
}

/// A fragment a script puts into a page.
fn fragment(body: Result<Markup, ApiError>) -> Answer {
    match body {
        Ok(m) => Answer::Html(StatusCode::OK, m.into_string()),
        Err(e) => Answer::Html(status_of(&e), error_box(&e).into_string()),
    }
}

fn status_of(e: &ApiError) -> StatusCode {
    match e.kind {
        "AccessDeniedException" => StatusCode::FORBIDDEN,
        "InternalServerError" => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

fn param<'a>(q: &'a Query, k: &str) -> &'a str {
    q.get(k).map(|v| v.trim()).unwrap_or("")
}

/// A list request's paging members: a page of
/// [`limits::CONSOLE_PAGE_ROWS`], from `next` when it is given.
fn page_request(next: &str) -> Value {
    let mut req = json!({"MaxResults": limits::CONSOLE_PAGE_ROWS});
    if !next.is_empty() {
        req["NextToken"] = json!(next);
    }
    req
}

/// `a=b` → (`a`, Some(`b`)); `a` → (`a`, None).
fn tag_filter(t: &str) -> (String, Option<String>) {
    match t.split_once('=') {
        Some((k, v)) => (k.trim().to_string(), Some(v.trim().to_string())),
        None => (t.trim().to_string(), None),
    }
}

// ---------------------------------------------------------------- fleet

/// The fleet: one page of DescribeInstanceInformation (with Tether's tags,
/// name filter and summary), filtered as the query says.
async fn fleet(ctx: &Ctx, q: &Query, whole: bool) -> Result<Markup, ApiError> {
    let (name, status, platform, tag, next) = (
        param(q, "name"),
        param(q, "status"),
        param(q, "platform"),
        param(q, "tag"),
        param(q, "next"),
    );
    let mut filters = Vec::new();
    if !status.is_empty() {
        filters.push(json!({"Key": "PingStatus", "Values": [status]}));
    }
    if !platform.is_empty() {
        filters.push(json!({"Key": "PlatformTypes", "Values": [platform]}));
    }
    if !tag.is_empty() {
        match tag_filter(tag) {
            (k, Some(v)) => filters.push(json!({"Key": format!("tag:{k}"), "Values": [v]})),
            (k, None) => filters.push(json!({"Key": "tag-key", "Values": [k]})),
        }
    }
    let mut req = page_request(next);
    req["IncludeTags"] = json!(true);
    req["Summarize"] = json!(true);
    if !filters.is_empty() {
        req["Filters"] = json!(filters);
    }
    if !name.is_empty() {
        req["NameContains"] = json!(name);
    }
    let v = ctx.call("DescribeInstanceInformation", req).await;
    let filter_qs = qs(&[
        ("name", name),
        ("status", status),
        ("platform", platform),
        ("tag", tag),
    ]);
    let table = match v {
        Ok(v) => fleet_table(&v, &filter_qs, next),
        Err(e) if whole => error_box(&e),
        Err(e) => return Err(e),
    };
    if !whole {
        return Ok(table);
    }
    let refresh = format!(
        "/console/fleet/table?{}",
        qs(&[
            ("name", name),
            ("status", status),
            ("platform", platform),
            ("tag", tag),
            ("next", next)
        ])
    );
    Ok(html! {
        h1 { "Fleet" }
        form.filters method="get" action="/console/fleet" {
            input type="search" name="name" placeholder="Name or ID" value=(name) aria-label="Name";
            select name="status" aria-label="Status" {
                option value="" { "Any status" }
                @for st in ["Online", "ConnectionLost", "Inactive"] {
                    option value=(st) selected[st == status] { (st) }
                }
            }
            select name="platform" aria-label="Platform" {
                option value="" { "Any platform" }
                @for p in ["Linux", "Windows", "MacOS"] {
                    option value=(p) selected[p == platform] { (p) }
                }
            }
            input type="text" name="tag" placeholder="tag key=value" value=(tag) aria-label="Tag";
            button type="submit" { "Filter" }
            @if !filter_qs.is_empty() { a href="/console/fleet" { "Clear" } }
        }
        section #fleet-table data-refresh=(refresh) data-interval=(limits::CONSOLE_FLEET_REFRESH.as_millis()) {
            (table)
        }
    })
}

fn fleet_table(v: &Value, filter_qs: &str, this_page: &str) -> Markup {
    let list = v["InstanceInformationList"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let summary = &v["Summary"];
    let next = s(v, "NextToken");
    html! {
        div.counts {
            span.count { b #count-total { (summary["Total"].as_u64().unwrap_or(0)) } " instances" }
            @if let Some(m) = summary["PingStatus"].as_object() {
                @for (k, n) in m {
                    span class={"count " (views::status_class(k))} { b data-status=(k) { (n) } " " (k) }
                }
            }
            @if let Some(m) = summary["PlatformType"].as_object() {
                @for (k, n) in m {
                    span.count.muted { (n) " " (k) }
                }
            }
        }
        div.scroll {
            table.grid #fleet {
                thead { tr { th { "Instance" } th { "Status" } th { "Platform" } th { "Agent" } th { "IP" } th { "Last seen" } th { "Tags" } } }
                tbody {
                    @if list.is_empty() { tr { td colspan="7" .empty { "No instance matches." } } }
                    @for i in &list {
                        @let id = s(i, "InstanceId");
                        tr data-instance=(id) {
                            td {
                                a href={"/console/instances/" (seg(id))} { span.name { (s(i, "Name")) } }
                                div.id { (id) }
                            }
                            td { (pill(s(i, "PingStatus"))) }
                            td { (s(i, "PlatformName")) " " (s(i, "PlatformVersion")) div.id { (s(i, "PlatformType")) } }
                            td { (s(i, "AgentVersion")) }
                            td.mono { (s(i, "IPAddress")) }
                            td { (ago_time(&i["LastPingDateTime"])) }
                            td.tags {
                                @for t in i["Tags"].as_array().into_iter().flatten() {
                                    span.tag { (s(t, "Key")) "=" (s(t, "Value")) }
                                }
                            }
                        }
                    }
                }
            }
        }
        div.pager {
            @if !this_page.is_empty() { a href={"/console/fleet?" (filter_qs)} { "« First page" } }
            @if !next.is_empty() {
                a href={"/console/fleet?" (filter_qs) @if !filter_qs.is_empty() { "&" } "next=" (seg(next))} { "Next page »" }
            }
        }
    }
}

// ---------------------------------------------------------------- instance

async fn instance(ctx: &Ctx, id: &str, q: &Query) -> Result<Markup, ApiError> {
    let v = ctx
        .call(
            "DescribeInstanceInformation",
            json!({"Filters": [{"Key": "InstanceIds", "Values": [id]}], "IncludeTags": true}),
        )
        .await?;
    let Some(i) = v["InstanceInformationList"].get(0).cloned() else {
        return Err(ApiError::new(
            "InvalidInstanceId",
            format!("instance {id} is not registered"),
        ));
    };
    let search = param(q, "app");
    let mut app_req = json!({"InstanceId": id, "TypeName": "AWS:Application", "MaxResults": limits::CONSOLE_PAGE_ROWS});
    if !search.is_empty() {
        app_req["Filters"] = json!([{"Key": "Name", "Values": [search], "Type": "BeginWith"}]);
    }
    let apps = ctx.call("ListInventoryEntries", app_req).await;
    let nets = ctx
        .call(
            "ListInventoryEntries",
            json!({"InstanceId": id, "TypeName": "AWS:Network", "MaxResults": limits::CONSOLE_PAGE_ROWS}),
        )
        .await;
    let services = ctx
        .call(
            "ListInventoryEntries",
            json!({"InstanceId": id, "TypeName": "AWS:Service", "MaxResults": limits::CONSOLE_PAGE_ROWS}),
        )
        .await;
    // The changes of the last days, capture by capture; and which custom
    // types (PutInventory's Custom:*) the instance has now.
    let since = tether_util::time::now_ms() - limits::CONSOLE_INVENTORY_CHANGE_DAYS * 86_400_000;
    let changes = ctx
        .call(
            "ListInventoryChanges",
            json!({"InstanceId": id, "ByCapture": true, "StartTime": since / 1000}),
        )
        .await;
    let mut customs = Vec::new();
    if let Ok(all) = ctx
        .call("ListInventoryChanges", json!({"InstanceId": id}))
        .await
    {
        for t in all["Changes"].as_array().into_iter().flatten() {
            let name = s(t, "TypeName");
            if name.starts_with("Custom:") {
                let entries = ctx
                    .call(
                        "ListInventoryEntries",
                        json!({"InstanceId": id, "TypeName": name, "MaxResults": limits::CONSOLE_PAGE_ROWS}),
                    )
                    .await;
                customs.push((name.to_string(), entries));
            }
        }
    }
    let assocs = ctx
        .call(
            "DescribeInstanceAssociationsStatus",
            json!({"InstanceId": id}),
        )
        .await;
    let cmds = ctx
        .call("ListCommands", json!({"InstanceId": id, "MaxResults": 10}))
        .await;
    let details: [(&str, Markup); 12] = [
        ("Instance ID", html! { (s(&i, "InstanceId")) }),
        ("Name", html! { (s(&i, "Name")) }),
        ("Computer name", html! { (s(&i, "ComputerName")) }),
        ("Ping status", html! { (s(&i, "PingStatus")) }),
        ("Last seen", time(&i["LastPingDateTime"])),
        (
            "Platform",
            html! { (s(&i, "PlatformName")) " " (s(&i, "PlatformVersion")) " (" (s(&i, "PlatformType")) ")" },
        ),
        ("Agent version", html! { (s(&i, "AgentVersion")) }),
        ("IP address", html! { (s(&i, "IPAddress")) }),
        ("Registered", time(&i["RegistrationDate"])),
        ("Activation", html! { (s(&i, "ActivationId")) }),
        ("IAM role", html! { (s(&i, "IamRole")) }),
        ("Resource type", html! { (s(&i, "ResourceType")) }),
    ];
    Ok(html! {
        h1 { (s(&i, "Name")) " " span.id { (id) } " " (pill(s(&i, "PingStatus"))) }
        div.cols {
            section {
                h2 { "Details" }
                dl.details {
                    @for (k, val) in &details { dt { (k) } dd { (val) } }
                    dt { "Tags" }
                    dd.tags { @for t in i["Tags"].as_array().into_iter().flatten() { span.tag { (s(t, "Key")) "=" (s(t, "Value")) } } }
                }
                p { a.button href={"/console/run?" (qs(&[("ids", id)]))} { "Run a command here" } }
            }
            section {
                h2 { "Recent commands" }
                (commands_table(&cmds, false))
                h2 { "Associations" }
                @match &assocs {
                    Err(e) => (error_box(e)),
                    Ok(a) => {
                        table.grid {
                            thead { tr { th { "Association" } th { "Document" } th { "Status" } th { "Last run" } } }
                            tbody {
                                @let list = a["InstanceAssociationStatusInfos"].as_array().cloned().unwrap_or_default();
                                @if list.is_empty() { tr { td colspan="4" .empty { "None." } } }
                                @for x in &list {
                                    tr {
                                        td { (s(x, "AssociationName")) div.id { (s(x, "AssociationId")) } }
                                        td { (s(x, "Name")) }
                                        td { (pill(s(x, "Status"))) div.id { (s(x, "DetailedStatus")) } }
                                        td { (time(&x["ExecutionDate"])) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        section #inventory {
            h2 { "Inventory: applications" }
            form.filters method="get" action={"/console/instances/" (seg(id))} {
                input type="search" name="app" placeholder="Name begins with" value=(search) aria-label="Application";
                button type="submit" { "Search" }
            }
            (entries(&apps, &["Name", "Version", "Architecture", "Publisher", "InstalledTime"], "applications"))
            h2 { "Inventory: network interfaces" }
            (entries(&nets, &["Name", "IPV4", "IPV6", "MacAddress", "DHCPServer"], "network"))
            h2 { "Inventory: services" }
            (entries(&services, &["Name", "DisplayName", "Status", "StartType", "ServiceType"], "services"))
            @for (name, entries) in &customs {
                h2 { "Inventory: " (name) }
                (custom_entries(entries, name))
            }
            h2 { "Inventory changes, last " (limits::CONSOLE_INVENTORY_CHANGE_DAYS) " days" }
            @match &changes {
                Err(e) => (error_box(e)),
                Ok(c) => (inventory_changes(c)),
            }
        }
    })
}

fn entries(v: &Result<Value, ApiError>, columns: &[&str], id: &str) -> Markup {
    match v {
        Err(e) => error_box(e),
        Ok(v) => {
            let list = v["Entries"].as_array().cloned().unwrap_or_default();
            html! {
                div.scroll {
                    table.grid id=(id) {
                        thead { tr { @for c in columns { th { (c) } } } }
                        tbody {
                            @if list.is_empty() { tr { td colspan=(columns.len()) .empty { "None reported." } } }
                            @for e in &list { tr { @for c in columns { td { (e[*c].as_str().unwrap_or("")) } } } }
                        }
                    }
                }
                @if v["NextToken"].is_string() { p.note { "More entries than shown: narrow the search." } }
            }
        }
    }
}

/// A custom type's entries: its attributes as columns (as many as fit).
fn custom_entries(v: &Result<Value, ApiError>, name: &str) -> Markup {
    let columns: Vec<String> = match v {
        Ok(v) => {
            let mut seen: Vec<String> = Vec::new();
            for e in v["Entries"].as_array().into_iter().flatten() {
                for k in e.as_object().into_iter().flat_map(|o| o.keys()) {
                    if !seen.contains(k) && seen.len() < CUSTOM_COLUMNS {
                        seen.push(k.clone());
                    }
                }
            }
            seen
        }
        Err(_) => Vec::new(),
    };
    let refs: Vec<&str> = columns.iter().map(String::as_str).collect();
    let id = format!("custom-{}", name.trim_start_matches("Custom:"));
    entries(v, &refs, &id)
}

/// The most columns a custom type's table shows.
const CUSTOM_COLUMNS: usize = 8;

/// The rows one change list shows before "… and N more".
const CHANGE_ROWS: usize = 10;

/// An entry's name in a change list: its `Name` (or `InstanceId`), else
/// its attributes.
fn entry_label(e: &Value) -> String {
    for k in ["Name", "InstanceId"] {
        if let Some(n) = e[k].as_str() {
            return n.to_string();
        }
    }
    attributes(e, &[])
}

/// `k: v, …` of an entry's attributes but those named.
fn attributes(e: &Value, except: &[&str]) -> String {
    e.as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| !except.contains(&k.as_str()) && k.as_str() != "InstalledTime")
        .map(|(k, v)| {
            format!(
                "{k}: {}",
                v.as_str().map_or_else(|| v.to_string(), str::to_string)
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// One capture's change of a type with a single entry before and after
/// (a custom type has no identifying attribute, so the answer says Removed
/// and Added): shown as that item Changed.
fn paired(c: &Value) -> Value {
    let (added, removed) = (&c["Added"], &c["Removed"]);
    let one = |v: &Value| v.as_array().is_some_and(|a| a.len() == 1);
    if !(one(added) && one(removed) && c["Changed"].as_array().is_none_or(Vec::is_empty)) {
        return c.clone();
    }
    let (old, new) = (&removed[0], &added[0]);
    let mut attributes: Vec<&String> = old
        .as_object()
        .into_iter()
        .chain(new.as_object())
        .flat_map(|o| o.keys())
        .filter(|k| old[k.as_str()] != new[k.as_str()] && k.as_str() != "InstalledTime")
        .collect();
    attributes.sort();
    attributes.dedup();
    let mut out = c.clone();
    out["Added"] = json!([]);
    out["Removed"] = json!([]);
    out["Changed"] = json!([{"Attributes": attributes, "Before": old, "After": new}]);
    out
}

/// ListInventoryChanges (by capture) as a table, newest first: when, the
/// type, what happened to which item, old → new.
fn inventory_changes(v: &Value) -> Markup {
    let mut changes: Vec<Value> = v["Changes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(paired)
        .collect();
    changes.reverse();
    html! {
        div.scroll {
            table.grid #inventory-changes {
                thead { tr { th { "When" } th { "Type" } th { "Change" } th { "Item" } th { "Old → new" } } }
                tbody {
                    @if changes.is_empty() { tr { td colspan="5" .empty { "No change." } } }
                    @for c in &changes {
                        @let (when, kind) = (&c["CaptureTime"], s(c, "TypeName"));
                        @for x in c["Changed"].as_array().into_iter().flatten() {
                            @let (old, new) = (&x["Before"], &x["After"]);
                            tr.changed {
                                td { (time(when)) }
                                td { (kind) }
                                td { span.pill.busy { "Changed" } }
                                td { (entry_label(new)) }
                                td {
                                    @for a in x["Attributes"].as_array().into_iter().flatten().filter_map(Value::as_str) {
                                        div.change {
                                            span.attr { (a) ": " }
                                            del { (old[a].as_str().unwrap_or("")) }
                                            " → "
                                            ins { (new[a].as_str().unwrap_or("")) }
                                        }
                                    }
                                }
                            }
                        }
                        @for (label, class, list) in [("Added", "ok", &c["Added"]), ("Removed", "bad", &c["Removed"])] {
                            @let items = list.as_array().cloned().unwrap_or_default();
                            @for e in items.iter().take(CHANGE_ROWS) {
                                tr {
                                    td { (time(when)) }
                                    td { (kind) }
                                    td { span class={"pill " (class)} { (label) } }
                                    td { (entry_label(e)) }
                                    td.id { (attributes(e, &["Name", "InstanceId"])) }
                                }
                            }
                            @if items.len() > CHANGE_ROWS {
                                tr {
                                    td { (time(when)) }
                                    td { (kind) }
                                    td { span class={"pill " (class)} { (label) } }
                                    td colspan="2" .muted { "… and " (items.len() - CHANGE_ROWS) " more" }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------- commands

fn commands_table(v: &Result<Value, ApiError>, paging: bool) -> Markup {
    match v {
        Err(e) => error_box(e),
        Ok(v) => {
            let list = v["Commands"].as_array().cloned().unwrap_or_default();
            html! {
                div.scroll {
                    table.grid #commands {
                        thead { tr { th { "Command" } th { "Document" } th { "Status" } th { "Requested" } th { "By" } th { "Targets" } th { "Done / errors" } } }
                        tbody {
                            @if list.is_empty() { tr { td colspan="7" .empty { "No command." } } }
                            @for c in &list {
                                @let id = s(c, "CommandId");
                                tr {
                                    td { a href={"/console/commands/" (seg(id))} { span.mono { (id) } } @if !s(c, "Comment").is_empty() { div.id { (s(c, "Comment")) } } }
                                    td { (s(c, "DocumentName")) }
                                    td { (pill(s(c, "Status"))) }
                                    td { (time(&c["RequestedDateTime"])) }
                                    td.id { (s(c, "RequestedBy")) }
                                    td { (c["TargetCount"]) }
                                    td { (c["CompletedCount"]) " / " (c["ErrorCount"]) }
                                }
                            }
                        }
                    }
                }
                @if paging { }
            }
        }
    }
}

async fn command(ctx: &Ctx, id: &str, q: &Query) -> Result<Markup, ApiError> {
    let v = ctx.call("ListCommands", json!({"CommandId": id})).await?;
    let Some(c) = v["Commands"].get(0).cloned() else {
        return Err(ApiError::new(
            "InvalidCommandId",
            format!("command {id} does not exist"),
        ));
    };
    let status = command_status(ctx, id).await?;
    let invs = ctx
        .call("ListCommandInvocations", json!({"CommandId": id}))
        .await?;
    let first = invs["CommandInvocations"]
        .get(0)
        .map(|i| s(i, "InstanceId").to_string())
        .unwrap_or_default();
    let chosen = q.get("instance").cloned().unwrap_or(first);
    let full = q.contains_key("full");
    let params = serde_json::to_string_pretty(&c["Parameters"]).unwrap_or_default();
    let targets = if c["InstanceIds"].as_array().is_some_and(|a| !a.is_empty()) {
        c["InstanceIds"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    } else {
        c["Targets"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| {
                format!(
                    "{}={}",
                    s(t, "Key"),
                    t["Values"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(",")
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    let out_url = format!(
        "/console/commands/{}/output?{}",
        seg(id),
        qs(&[("instance", &chosen), ("full", if full { "1" } else { "" })])
    );
    let output = output(ctx, id, &chosen, full).await?;
    Ok(html! {
        h1 { "Command " span.mono { (id) } }
        dl.details.wide {
            dt { "Document" } dd { (s(&c, "DocumentName")) " (version " (s(&c, "DocumentVersion")) ")" }
            dt { "Requested" } dd { (time(&c["RequestedDateTime"])) " by " (s(&c, "RequestedBy")) }
            dt { "Targets" } dd { (targets) }
            dt { "Comment" } dd { (s(&c, "Comment")) }
            dt { "Concurrency / errors" } dd { (s(&c, "MaxConcurrency")) " / " (s(&c, "MaxErrors")) }
            dt { "Parameters" } dd { pre.json { (params) } }
        }
        h2 { "Status" }
        section #command-status data-refresh={"/console/commands/" (seg(id)) "/status"} data-interval=(limits::CONSOLE_REFRESH.as_millis()) {
            (status)
        }
        @if !chosen.is_empty() {
            h2 { "Output on " (chosen) }
            p {
                @if full {
                    a href={"/console/commands/" (seg(id)) "?" (qs(&[("instance", &chosen)]))} { "Show the first 24,000 characters" }
                } @else {
                    a #full-output href={"/console/commands/" (seg(id)) "?" (qs(&[("instance", &chosen), ("full", "1")]))} { "Full output" }
                }
            }
            section #command-output data-refresh=(out_url) data-interval="1000" { (output) }
        }
    })
}

/// The command's status, its Cancel button while it can still be
/// cancelled, and the per-instance status table: the section the script
/// refreshes, so the button goes when the command ends (`data-done` then
/// stops the refreshing).
async fn command_status(ctx: &Ctx, id: &str) -> Result<Markup, ApiError> {
    let cmd = ctx.call("ListCommands", json!({"CommandId": id})).await?;
    let c = cmd["Commands"].get(0).cloned().unwrap_or(Value::Null);
    let v = ctx
        .call("ListCommandInvocations", json!({"CommandId": id}))
        .await?;
    let list = v["CommandInvocations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let unfinished = |st: &str| matches!(st, "Pending" | "InProgress" | "Delayed" | "Cancelling");
    let done = !unfinished(s(&c, "Status")) && list.iter().all(|i| !unfinished(s(i, "Status")));
    Ok(html! {
        div.command-state data-done=[done.then_some("1")] {
            p.summary {
                (pill(s(&c, "Status")))
                " " span #command-counts { (c["CompletedCount"]) " of " (c["TargetCount"]) " done, " (c["ErrorCount"]) " errors" }
            }
            @if !done {
                form method="post" action={"/console/commands/" (seg(id)) "/cancel"} {
                    input type="hidden" name="csrf" value=(ctx.session.csrf);
                    button.danger type="submit" id="cancel" { "Cancel command" }
                }
            }
        }
        div.scroll {
            table.grid #invocations {
                thead { tr { th { "Instance" } th { "Status" } th { "Details" } th { "Requested" } th { "Output" } } }
                tbody {
                    @if list.is_empty() { tr { td colspan="5" .empty { "No invocation yet." } } }
                    @for i in &list {
                        @let inst = s(i, "InstanceId");
                        tr data-instance=(inst) {
                            td { span.name { (s(i, "InstanceName")) } div.id { (inst) } }
                            td.status { (pill(s(i, "Status"))) }
                            td { (s(i, "StatusDetails")) }
                            td { (time(&i["RequestedDateTime"])) }
                            td { a href={"/console/commands/" (seg(id)) "?" (qs(&[("instance", inst)]))} { "Show" } }
                        }
                    }
                }
            }
        }
    })
}

/// One instance's output, step by step, from the same calls as
/// `get-command-invocation --follow`: ListCommandInvocations with details
/// for the steps, then GetCommandInvocation for each.
async fn output(ctx: &Ctx, id: &str, instance: &str, full: bool) -> Result<Markup, ApiError> {
    if instance.is_empty() {
        return Ok(html! { p.empty { "No instance chosen." } });
    }
    let listed = ctx
        .call(
            "ListCommandInvocations",
            json!({"CommandId": id, "InstanceId": instance, "Details": true}),
        )
        .await?;
    let Some(inv) = listed["CommandInvocations"].get(0).cloned() else {
        return Ok(html! { p.empty { "No invocation on " (instance) "." } });
    };
    let status = s(&inv, "Status").to_string();
    let done = matches!(
        status.as_str(),
        "Success" | "Failed" | "TimedOut" | "Cancelled" | "Undeliverable" | "Terminated"
    );
    let mut steps = Vec::new();
    for p in inv["CommandPlugins"].as_array().into_iter().flatten() {
        let name = s(p, "Name");
        let step = ctx
            .call(
                "GetCommandInvocation",
                json!({"CommandId": id, "InstanceId": instance, "PluginName": name, "FullOutput": full}),
            )
            .await?;
        steps.push((name.to_string(), s(p, "Status").to_string(), step));
    }
    Ok(html! {
        div.output data-done=[done.then_some("1")] {
            p { "Invocation " (pill(&status)) }
            @for (name, st, step) in &steps {
                div.step {
                    h3 { (name) " " (pill(st)) " " span.id { "response code " (step["ResponseCode"]) } }
                    pre.stdout { (s(step, "StandardOutputContent")) }
                    @if !s(step, "StandardErrorContent").is_empty() {
                        pre.stderr { (s(step, "StandardErrorContent")) }
                    }
                }
            }
        }
    })
}

// ---------------------------------------------------------------- history

async fn history(ctx: &Ctx, q: &Query) -> Result<Markup, ApiError> {
    let (status, document, after, before, requester, next) = (
        param(q, "status"),
        param(q, "document"),
        param(q, "after"),
        param(q, "before"),
        param(q, "requester"),
        param(q, "next"),
    );
    let mut filters = Vec::new();
    if !status.is_empty() {
        filters.push(json!({"key": "Status", "value": status}));
    }
    if !document.is_empty() {
        filters.push(json!({"key": "DocumentName", "value": document}));
    }
    // datetime-local gives `YYYY-MM-DDTHH:MM`, UTC here.
    let stamp = |t: &str| {
        if t.len() == 16 {
            format!("{t}:00Z")
        } else {
            t.to_string()
        }
    };
    if !after.is_empty() {
        filters.push(json!({"key": "InvokedAfter", "value": stamp(after)}));
    }
    if !before.is_empty() {
        filters.push(json!({"key": "InvokedBefore", "value": stamp(before)}));
    }
    let mut req = page_request(next);
    if !filters.is_empty() {
        req["Filters"] = json!(filters);
    }
    // Tether's RequestedBy: the store filters the whole history (indexed).
    if !requester.is_empty() {
        req["RequestedBy"] = json!(requester);
    }
    let v = ctx.call("ListCommands", req).await;
    let filter_qs = qs(&[
        ("status", status),
        ("document", document),
        ("after", after),
        ("before", before),
        ("requester", requester),
    ]);
    let next_token = v
        .as_ref()
        .ok()
        .map(|v| s(v, "NextToken").to_string())
        .unwrap_or_default();
    Ok(html! {
        h1 { "History" }
        form.filters method="get" action="/console/history" {
            select name="status" aria-label="Status" {
                option value="" { "Any status" }
                @for st in ["Pending", "InProgress", "Success", "Cancelled", "Failed", "TimedOut", "Cancelling"] {
                    option value=(st) selected[st == status] { (st) }
                }
            }
            input type="text" name="document" placeholder="Document" value=(document) aria-label="Document";
            label { "after (UTC) " input type="datetime-local" name="after" value=(after); }
            label { "before (UTC) " input type="datetime-local" name="before" value=(before); }
            input type="text" name="requester" placeholder="Requested by: user, root or ARN" value=(requester) aria-label="Requester";
            button type="submit" { "Filter" }
            @if !filter_qs.is_empty() { a href="/console/history" { "Clear" } }
        }
        (commands_table(&v, true))
        div.pager {
            @if !next.is_empty() { a href={"/console/history?" (filter_qs)} { "« First page" } }
            @if !next_token.is_empty() {
                a #next-page href={"/console/history?" (filter_qs) @if !filter_qs.is_empty() { "&" } "next=" (seg(&next_token))} { "Next page »" }
            }
        }
    })
}

// ---------------------------------------------------------------- run

/// Every Command document (ListDocuments, page by page, up to 20 pages).
async fn command_documents(ctx: &Ctx) -> Result<Vec<Value>, ApiError> {
    let mut out = Vec::new();
    let mut next: Option<String> = None;
    for _ in 0..20 {
        let mut req =
            json!({"Filters": [{"Key": "DocumentType", "Values": ["Command"]}], "MaxResults": 50});
        if let Some(n) = &next {
            req["NextToken"] = json!(n);
        }
        let v = ctx.call("ListDocuments", req).await?;
        out.extend(
            v["DocumentIdentifiers"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
        );
        match v["NextToken"].as_str() {
            Some(n) if !n.is_empty() => next = Some(n.to_string()),
            _ => break,
        }
    }
    Ok(out)
}

/// The run form: a document and version, then its parameters (from the
/// document's own definitions: types, defaults, allowed values, patterns),
/// targets with a live count, and the rate controls.
async fn run_form(ctx: &Ctx, q: &Query, error: Option<&ApiError>) -> Result<Markup, ApiError> {
    let docs = command_documents(ctx).await?;
    let document = param(q, "document");
    let version = param(q, "version");
    let mut versions = Vec::new();
    let mut definitions: Vec<(String, Value)> = Vec::new();
    if !document.is_empty() {
        let vs = ctx
            .call(
                "ListDocumentVersions",
                json!({"Name": document, "MaxResults": 50}),
            )
            .await?;
        versions = vs["DocumentVersions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut req = json!({"Name": document, "DocumentFormat": "JSON"});
        if !version.is_empty() {
            req["DocumentVersion"] = json!(version);
        }
        let d = ctx.call("GetDocument", req).await?;
        let content: Value = serde_json::from_str(s(&d, "Content")).unwrap_or(Value::Null);
        if let Some(ps) = content["parameters"].as_object() {
            definitions = ps.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        }
    }
    let mode = if param(q, "mode") == "tags"
        || (!param(q, "tag_key").is_empty() && param(q, "ids").is_empty())
    {
        "tags"
    } else {
        "ids"
    };
    Ok(html! {
        h1 { "Run a command" }
        @if let Some(e) = error { (error_box(e)) }
        form.filters method="get" action="/console/run" #pick {
            label { "Document "
                select name="document" id="document" {
                    option value="" { "Choose…" }
                    @for d in &docs {
                        option value=(s(d, "Name")) selected[s(d, "Name") == document] { (s(d, "Name")) }
                    }
                }
            }
            @if !versions.is_empty() {
                label { "Version "
                    select name="version" id="version" {
                        option value="" { "Default" }
                        @for v in &versions {
                            @let n = s(v, "DocumentVersion");
                            option value=(n) selected[n == version] { (n) @if v["IsDefaultVersion"].as_bool() == Some(true) { " (default)" } }
                        }
                    }
                }
            }
            @for k in ["ids", "tag_key", "tag_values"] {
                @if !param(q, k).is_empty() { input type="hidden" name=(k) value=(param(q, k)); }
            }
            button type="submit" id="choose" { "Choose" }
        }
        @if !document.is_empty() {
            form.run method="post" action="/console/run" #run {
                input type="hidden" name="csrf" value=(ctx.session.csrf);
                input type="hidden" name="document" value=(document);
                input type="hidden" name="version" value=(version);
                fieldset {
                    legend { "Parameters" }
                    @if definitions.is_empty() { p.empty { "This document takes no parameter." } }
                    @for (name, d) in &definitions { (parameter_input(name, d, q)) }
                }
                fieldset #targets {
                    legend { "Targets" }
                    label.inline { input type="radio" name="mode" value="ids" checked[mode == "ids"]; " Instance IDs" }
                    label.inline { input type="radio" name="mode" value="tags" checked[mode == "tags"]; " Tags" }
                    div.target-ids {
                        label for="ids" { "Instance IDs (space or comma separated)" }
                        input type="text" id="ids" name="ids" value=(param(q, "ids"));
                    }
                    div.target-tags {
                        label for="tag_key" { "Tag key" }
                        input type="text" id="tag_key" name="tag_key" value=(param(q, "tag_key"));
                        label for="tag_values" { "Tag values (comma separated)" }
                        input type="text" id="tag_values" name="tag_values" value=(param(q, "tag_values"));
                    }
                    p.preview { "Reaches " output #target-count { "?" } " instances (" output #target-online { "?" } " online)" }
                }
                fieldset {
                    legend { "Rate and time" }
                    div.row {
                        label { "Max concurrency " input type="text" name="max_concurrency" value=(or(param(q, "max_concurrency"), "50")) pattern="^([1-9][0-9]*|[1-9][0-9]?%|100%)$"; }
                        label { "Max errors " input type="text" name="max_errors" value=(or(param(q, "max_errors"), "0")) pattern="^([0-9]+|[0-9][0-9]?%|100%)$"; }
                        label { "Delivery timeout (s) " input type="number" name="timeout" min="30" max="2592000" value=(param(q, "timeout")); }
                    }
                    label for="comment" { "Comment" }
                    input type="text" id="comment" name="comment" maxlength="100" value=(param(q, "comment"));
                }
                button.primary type="submit" id="send" { "Run" }
            }
        }
    })
}

fn or<'a>(v: &'a str, default: &'a str) -> &'a str {
    if v.is_empty() { default } else { v }
}

/// One parameter's input, as its definition says.
fn parameter_input(name: &str, d: &Value, q: &Query) -> Markup {
    let kind = s(d, "type");
    let field = format!("p_{name}");
    let default = match &d["default"] {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        Value::Array(a) if kind == "StringList" => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| x.to_string())
            })
            .collect::<Vec<_>>()
            .join("\n"),
        other => other.to_string(),
    };
    let value = q.get(&field).cloned().unwrap_or(default);
    let required = d.get("default").is_none();
    let allowed: Vec<String> = d["allowedValues"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| {
            v.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string())
        })
        .collect();
    let pattern = s(d, "allowedPattern");
    html! {
        div.param {
            label for=(field) { b { (name) } " " span.id { (kind) } @if required { " (required)" } }
            @if !s(d, "description").is_empty() { div.help { (s(d, "description")) } }
            @if !allowed.is_empty() {
                select id=(field) name=(field) required[required] {
                    @for a in &allowed { option value=(a) selected[*a == value] { (a) } }
                }
            } @else if kind == "Boolean" {
                select id=(field) name=(field) {
                    @for b in ["true", "false"] { option value=(b) selected[b == value] { (b) } }
                }
            } @else if kind == "Integer" {
                input type="number" id=(field) name=(field) value=(value) required[required];
            } @else if kind == "StringList" || kind == "StringMap" || kind == "MapList" {
                textarea id=(field) name=(field) rows="4" required[required] data-pattern=[(!pattern.is_empty()).then_some(pattern)] { (value) }
                div.help { @if kind == "StringList" { "One item a line." } @else { "JSON." } }
            } @else {
                input type="text" id=(field) name=(field) value=(value) required[required] data-pattern=[(!pattern.is_empty()).then_some(pattern)];
            }
            @if !pattern.is_empty() { div.help { "Must match " code { (pattern) } } }
            div.field-error {}
        }
    }
}

/// Sends the command the form describes, then goes to its page; a refusal
/// or a bad value shows the form again with the error.
async fn run_send(ctx: &Ctx, form: Form) -> Answer {
    let f = |k: &str| form.get(k).map(|v| v.trim()).unwrap_or("");
    let document = f("document");
    let mut req = json!({"DocumentName": document});
    if !f("version").is_empty() {
        req["DocumentVersion"] = json!(f("version"));
    }
    // The parameters as the document defines them.
    let mut definitions = serde_json::Map::new();
    if !document.is_empty() {
        let mut g = json!({"Name": document, "DocumentFormat": "JSON"});
        if !f("version").is_empty() {
            g["DocumentVersion"] = json!(f("version"));
        }
        if let Ok(d) = ctx.call("GetDocument", g).await {
            let content: Value = serde_json::from_str(s(&d, "Content")).unwrap_or(Value::Null);
            if let Some(ps) = content["parameters"].as_object() {
                definitions = ps.clone();
            }
        }
    }
    let mut params = serde_json::Map::new();
    for (name, d) in &definitions {
        let raw = form
            .get(&format!("p_{name}"))
            .map(String::as_str)
            .unwrap_or("");
        let values: Vec<String> = if s(d, "type") == "StringList" {
            raw.lines()
                .map(str::trim_end)
                .filter(|l| !l.is_empty())
                .map(str::to_string)
                .collect()
        } else if raw.trim().is_empty() {
            Vec::new()
        } else {
            vec![raw.to_string()]
        };
        if !values.is_empty() {
            params.insert(name.clone(), json!(values));
        }
    }
    if !params.is_empty() {
        req["Parameters"] = Value::Object(params);
    }
    if f("mode") == "tags" {
        let values: Vec<&str> = f("tag_values")
            .split(',')
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .collect();
        req["Targets"] = json!([{"Key": format!("tag:{}", f("tag_key")), "Values": values}]);
    } else {
        let ids: Vec<&str> = f("ids")
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|v| !v.is_empty())
            .collect();
        req["InstanceIds"] = json!(ids);
    }
    for (field, member) in [
        ("max_concurrency", "MaxConcurrency"),
        ("max_errors", "MaxErrors"),
        ("comment", "Comment"),
    ] {
        if !f(field).is_empty() {
            req[member] = json!(f(field));
        }
    }
    if !f("timeout").is_empty() {
        match f("timeout").parse::<i64>() {
            Ok(n) => req["TimeoutSeconds"] = json!(n),
            Err(_) => {
                let e = ApiError::new(
                    "ValidationException",
                    format!(
                        "delivery timeout {:?} is not a number of seconds",
                        f("timeout")
                    ),
                );
                return page(
                    ctx,
                    "Run a command",
                    "run",
                    run_form(ctx, &form, Some(&e)).await,
                );
            }
        }
    }
    match ctx.call("SendCommand", req).await {
        Ok(v) => Answer::Redirect(format!(
            "/console/commands/{}",
            seg(s(&v["Command"], "CommandId"))
        )),
        Err(e) => {
            let status = status_of(&e);
            match page(
                ctx,
                "Run a command",
                "run",
                run_form(ctx, &form, Some(&e)).await,
            ) {
                Answer::Html(_, body) => Answer::Html(status, body),
                other => other,
            }
        }
    }
}

/// How many instances the targets being typed reach (DescribeInstanceInformation's summary).
async fn preview(ctx: &Ctx, q: &Query) -> Value {
    let mut req = json!({"MaxResults": 5, "Summarize": true});
    if param(q, "mode") == "tags" {
        let key = param(q, "tag_key");
        let values: Vec<&str> = param(q, "tag_values")
            .split(',')
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .collect();
        if key.is_empty() {
            return json!({"Count": 0, "Online": 0});
        }
        req["Filters"] = if values.is_empty() {
            json!([{"Key": "tag-key", "Values": [key]}])
        } else {
            json!([{"Key": format!("tag:{key}"), "Values": values}])
        };
    } else {
        let ids: Vec<&str> = param(q, "ids")
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|v| !v.is_empty())
            .collect();
        if ids.is_empty() {
            return json!({"Count": 0, "Online": 0});
        }
        req["Filters"] = json!([{"Key": "InstanceIds", "Values": ids}]);
    }
    match ctx.call("DescribeInstanceInformation", req).await {
        Ok(v) => json!({
            "Count": v["Summary"]["Total"],
            "Online": v["Summary"]["PingStatus"]["Online"].as_u64().unwrap_or(0),
        }),
        Err(e) => json!({"Error": format!("{}: {}", e.kind, e.message)}),
    }
}

// ---------------------------------------------------------------- documents

async fn documents(ctx: &Ctx, q: &Query) -> Result<Markup, ApiError> {
    let next = param(q, "next");
    let req = page_request(next);
    let v = ctx.call("ListDocuments", req).await?;
    let list = v["DocumentIdentifiers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    Ok(html! {
        h1 { "Documents" }
        div.scroll {
            table.grid #documents {
                thead { tr { th { "Name" } th { "Type" } th { "Format" } th { "Version" } th { "Owner" } th { "Platforms" } } }
                tbody {
                    @for d in &list {
                        tr {
                            td { a href={"/console/documents/" (seg(s(d, "Name")))} { (s(d, "Name")) } }
                            td { (s(d, "DocumentType")) }
                            td { (s(d, "DocumentFormat")) }
                            td { (s(d, "DocumentVersion")) }
                            td { (s(d, "Owner")) }
                            td { (d["PlatformTypes"].as_array().into_iter().flatten().filter_map(Value::as_str).collect::<Vec<_>>().join(", ")) }
                        }
                    }
                }
            }
        }
        (pager("/console/documents", "", next, s(&v, "NextToken")))
    })
}

fn pager(base: &str, filter_qs: &str, this: &str, next: &str) -> Markup {
    html! {
        div.pager {
            @if !this.is_empty() { a href={(base) "?" (filter_qs)} { "« First page" } }
            @if !next.is_empty() {
                a href={(base) "?" (filter_qs) @if !filter_qs.is_empty() { "&" } "next=" (seg(next))} { "Next page »" }
            }
        }
    }
}

async fn document(ctx: &Ctx, name: &str, q: &Query) -> Result<Markup, ApiError> {
    let name = url::form_urlencoded::parse(format!("n={name}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let version = param(q, "version");
    let mut req = json!({"Name": name});
    if !version.is_empty() {
        req["DocumentVersion"] = json!(version);
    }
    let d = ctx.call("DescribeDocument", req.clone()).await?;
    let d = &d["Document"];
    let content = ctx.call("GetDocument", req).await?;
    let versions = ctx
        .call(
            "ListDocumentVersions",
            json!({"Name": name, "MaxResults": 50}),
        )
        .await?;
    Ok(html! {
        h1 { (name) }
        dl.details.wide {
            dt { "Type" } dd { (s(d, "DocumentType")) }
            dt { "Description" } dd { (s(d, "Description")) }
            dt { "Version" } dd { (s(d, "DocumentVersion")) " (default " (s(d, "DefaultVersion")) ", latest " (s(d, "LatestVersion")) ")" }
            dt { "Status" } dd { (pill(s(d, "Status"))) }
            dt { "Hash" } dd.mono { (s(d, "Hash")) }
        }
        h2 { "Parameters" }
        table.grid {
            thead { tr { th { "Name" } th { "Type" } th { "Default" } th { "Description" } } }
            tbody {
                @for p in d["Parameters"].as_array().into_iter().flatten() {
                    tr { td { (s(p, "Name")) } td { (s(p, "Type")) } td { (s(p, "DefaultValue")) } td { (s(p, "Description")) } }
                }
            }
        }
        h2 { "Versions" }
        ul.versions {
            @for v in versions["DocumentVersions"].as_array().into_iter().flatten() {
                li { a href={"/console/documents/" (seg(&name)) "?" (qs(&[("version", s(v, "DocumentVersion"))]))} { (s(v, "DocumentVersion")) } " " (time(&v["CreatedDate"])) @if v["IsDefaultVersion"].as_bool() == Some(true) { " (default)" } }
            }
        }
        p { a.button href={"/console/run?" (qs(&[("document", &name)]))} { "Run this document" } }
        h2 { "Content" }
        pre.json { (s(&content, "Content")) }
    })
}

// ---------------------------------------------------------------- associations

async fn associations(ctx: &Ctx, q: &Query) -> Result<Markup, ApiError> {
    let next = param(q, "next");
    let req = page_request(next);
    let v = ctx.call("ListAssociations", req).await?;
    let list = v["Associations"].as_array().cloned().unwrap_or_default();
    Ok(html! {
        h1 { "Associations" }
        div.scroll {
            table.grid #associations {
                thead { tr { th { "Name" } th { "Document" } th { "Targets" } th { "Schedule" } th { "Status" } th { "Last run" } } }
                tbody {
                    @if list.is_empty() { tr { td colspan="6" .empty { "No association." } } }
                    @for a in &list {
                        tr {
                            td { (s(a, "AssociationName")) div.id { (s(a, "AssociationId")) } }
                            td { (s(a, "Name")) " " span.id { (s(a, "DocumentVersion")) } }
                            td { @for t in a["Targets"].as_array().into_iter().flatten() { span.tag { (s(t, "Key")) "=" (t["Values"].as_array().into_iter().flatten().filter_map(Value::as_str).collect::<Vec<_>>().join(",")) } } }
                            td.mono { (s(a, "ScheduleExpression")) }
                            td { (pill(s(&a["Overview"], "Status"))) div.id { (s(&a["Overview"], "DetailedStatus")) } }
                            td { (time(&a["LastExecutionDate"])) }
                        }
                    }
                }
            }
        }
        (pager("/console/associations", "", next, s(&v, "NextToken")))
    })
}

// ---------------------------------------------------------------- parameters

async fn parameters(ctx: &Ctx, q: &Query) -> Result<Markup, ApiError> {
    let next = param(q, "next");
    let req = page_request(next);
    let v = ctx.call("DescribeParameters", req).await?;
    let list = v["Parameters"].as_array().cloned().unwrap_or_default();
    Ok(html! {
        h1 { "Parameters" }
        p.note { "Values are not shown until asked for; a SecureString is decrypted only for a principal allowed to, and only on request." }
        div.scroll {
            table.grid #parameters {
                thead { tr { th { "Name" } th { "Type" } th { "Version" } th { "Modified" } th { "By" } th { "Value" } } }
                tbody {
                    @if list.is_empty() { tr { td colspan="6" .empty { "No parameter." } } }
                    @for p in &list {
                        @let secure = s(p, "Type") == "SecureString";
                        tr {
                            td { (s(p, "Name")) }
                            td { (s(p, "Type")) }
                            td { (p["Version"]) }
                            td { (time(&p["LastModifiedDate"])) }
                            td.id { (s(p, "LastModifiedUser")) }
                            td {
                                form method="post" action="/console/parameters/value" {
                                    input type="hidden" name="csrf" value=(ctx.session.csrf);
                                    input type="hidden" name="name" value=(s(p, "Name"));
                                    @if secure {
                                        input type="hidden" name="decrypt" value="1";
                                        button.link type="submit" { "Decrypt and show" }
                                    } @else {
                                        button.link type="submit" { "Show" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        (pager("/console/parameters", "", next, s(&v, "NextToken")))
    })
}

/// One parameter's value, asked for explicitly (a POST: a SecureString is
/// decrypted only here, with `WithDecryption`, as the principal may).
async fn parameter_value(ctx: &Ctx, form: &Form) -> Result<Markup, ApiError> {
    let name = form.get("name").map(String::as_str).unwrap_or("");
    let decrypt = form.get("decrypt").is_some_and(|v| v == "1");
    let v = ctx
        .call(
            "GetParameter",
            json!({"Name": name, "WithDecryption": decrypt}),
        )
        .await?;
    let p = &v["Parameter"];
    Ok(html! {
        h1 { (name) }
        dl.details.wide {
            dt { "Type" } dd { (s(p, "Type")) }
            dt { "Version" } dd { (p["Version"]) }
            dt { "Modified" } dd { (time(&p["LastModifiedDate"])) }
            dt { "Value" } dd { pre.value #parameter-value { (s(p, "Value")) } }
        }
        p { a href="/console/parameters" { "« Parameters" } }
    })
}

// ---------------------------------------------------------------- audit

async fn audit(ctx: &Ctx, q: &Query) -> Result<Markup, ApiError> {
    let (key, value, start, end, next) = (
        param(q, "key"),
        param(q, "value"),
        param(q, "start"),
        param(q, "end"),
        param(q, "next"),
    );
    let mut req = page_request(next);
    if !key.is_empty() && !value.is_empty() {
        req["LookupAttributes"] = json!([{"AttributeKey": key, "AttributeValue": value}]);
    }
    let stamp = |t: &str| {
        if t.len() == 16 {
            format!("{t}:00Z")
        } else {
            t.to_string()
        }
    };
    if !start.is_empty() {
        req["StartTime"] = json!(stamp(start));
    }
    if !end.is_empty() {
        req["EndTime"] = json!(stamp(end));
    }
    let v = ctx.call("LookupEvents", req).await;
    let filter_qs = qs(&[
        ("key", key),
        ("value", value),
        ("start", start),
        ("end", end),
    ]);
    Ok(html! {
        h1 { "Audit trail" }
        form.filters method="get" action="/console/audit" {
            select name="key" aria-label="Attribute" {
                option value="" { "Any event" }
                @for k in ["EventName", "Username", "EventId", "ResourceName", "ResourceType", "ReadOnly", "AccessKeyId", "EventSource"] {
                    option value=(k) selected[k == key] { (k) }
                }
            }
            input type="text" name="value" placeholder="value" value=(value) aria-label="Value";
            label { "from " input type="datetime-local" name="start" value=(start); }
            label { "to " input type="datetime-local" name="end" value=(end); }
            button type="submit" { "Look up" }
            @if !filter_qs.is_empty() { a href="/console/audit" { "Clear" } }
        }
        @match &v {
            Err(e) => (error_box(e)),
            Ok(v) => {
                @let list = v["Events"].as_array().cloned().unwrap_or_default();
                div.scroll {
                    table.grid #events {
                        thead { tr { th { "Time" } th { "Event" } th { "User" } th { "Source" } th { "Outcome" } th { "Record" } } }
                        tbody {
                            @if list.is_empty() { tr { td colspan="6" .empty { "No event." } } }
                            @for e in &list {
                                @let rec: Value = serde_json::from_str(s(e, "CloudTrailEvent")).unwrap_or(Value::Null);
                                tr {
                                    td { (time(&e["EventTime"])) }
                                    td { (s(e, "EventName")) }
                                    td { (s(e, "Username")) }
                                    td.id { (s(&rec, "sourceIPAddress")) " " (rec["additionalEventData"]["tether"]["transport"].as_str().unwrap_or("")) }
                                    td { @if rec["errorCode"].is_string() { span.pill.bad { (s(&rec, "errorCode")) } } @else { span.pill.ok { "OK" } } }
                                    td { details { summary { "JSON" } pre.json { (serde_json::to_string_pretty(&rec).unwrap_or_default()) } } }
                                }
                            }
                        }
                    }
                }
                (pager("/console/audit", &filter_qs, next, s(v, "NextToken")))
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_values_renders_as_text() {
        let v = json!({
            "InstanceInformationList": [{
                "InstanceId": "mi-0123456789abcdef0",
                "Name": "<script>alert(1)</script>",
                "PingStatus": "Online",
                "Tags": [{"Key": "k", "Value": "<img src=x onerror=alert(1)>"}],
            }],
            "Summary": {"Total": 1, "PingStatus": {"Online": 1}},
        });
        let out = fleet_table(&v, "", "").into_string();
        assert!(
            out.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{out}"
        );
        assert!(out.contains("&lt;img src=x onerror=alert(1)&gt;"), "{out}");
        assert!(!out.contains("<script>") && !out.contains("<img"), "{out}");
    }

    #[test]
    fn inventory_changes_read_as_old_to_new_newest_first() {
        let v = json!({"Changes": [
            {"TypeName": "AWS:Application", "CaptureTime": "2026-01-01T00:00:00Z",
             "Added": [{"Name": "curl", "Version": "7.88"}], "Removed": [],
             "Changed": [{"Attributes": ["Version"],
                          "Before": {"Name": "openssl", "Version": "3.0.11"},
                          "After": {"Name": "openssl", "Version": "3.0.15"}}]},
            {"TypeName": "Custom:RackInfo", "CaptureTime": "2026-01-02T00:00:00Z",
             "Added": [{"Rack": "<b>5</b>"}], "Removed": [{"Rack": "4"}], "Changed": []},
        ]});
        let out = inventory_changes(&v).into_string();
        let (rack, openssl) = (
            out.find("Custom:RackInfo").unwrap(),
            out.find("openssl").unwrap(),
        );
        assert!(rack < openssl, "newest first: {out}");
        assert!(
            out.contains("<del>3.0.11</del> → <ins>3.0.15</ins>"),
            "{out}"
        );
        assert!(
            out.contains("<del>4</del> → <ins>&lt;b&gt;5&lt;/b&gt;</ins>"),
            "one custom entry replaced reads as changed: {out}"
        );
        assert!(out.contains(">Added<") && out.contains("curl"), "{out}");
        assert!(out.contains("datetime=\"2026-01-02T00:00:00Z\""), "{out}");
    }

    #[test]
    fn tag_filters_split_on_the_first_equals() {
        assert_eq!(tag_filter("env=prod"), ("env".into(), Some("prod".into())));
        assert_eq!(tag_filter("a=b=c"), ("a".into(), Some("b=c".into())));
        assert_eq!(tag_filter("env"), ("env".into(), None));
    }
}
