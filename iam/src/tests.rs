//! The evaluator against tables: explicit Deny over Allow, NotAction and
//! NotResource, wildcards, every condition operator, policy variables — with
//! the examples of IAM's and Systems Manager's documentation among them.

use crate::eval::{Context, Decision, Request, evaluate};
use crate::policy::{Policy, Vocabulary};

const ACCOUNT: &str = "123456789012";
const LAB_NODE: &str = "arn:aws:ssm:us-east-1:123456789012:managed-instance/mi-0123456789abcdef0";
const SHELL_DOC: &str = "arn:aws:ssm:us-east-1:123456789012:document/AWS-RunShellScript";

fn vocabulary() -> Vocabulary {
    Vocabulary {
        actions: [
            "ssm:SendCommand",
            "ssm:ListCommands",
            "ssm:GetCommandInvocation",
            "ssm:DescribeInstanceInformation",
            "ssm:GetParameter",
            "iam:CreateUser",
            "iam:PutUserPolicy",
            "kms:Decrypt",
            "s3:GetObject",
        ]
        .map(String::from)
        .to_vec(),
        resources: vec![
            (
                "ssm".into(),
                [
                    "managed-instance",
                    "instance",
                    "document",
                    "association",
                    "parameter",
                ]
                .map(String::from)
                .to_vec(),
            ),
            ("ec2".into(), vec!["instance".into()]),
            ("iam".into(), vec!["user".into()]),
            ("s3".into(), vec!["bucket".into()]),
        ],
    }
}

fn policy(json: &str) -> Policy {
    Policy::parse(json, &Vocabulary::default()).unwrap_or_else(|e| panic!("{json}: {e}"))
}

/// (policies, action, resource, context, allowed?)
type Case<'a> = (
    &'a [&'a str],
    &'a str,
    &'a str,
    &'a [(&'a str, &'a str)],
    bool,
);

#[test]
fn decisions_table() {
    // From "Restricting Run Command access based on tags" (Systems Manager
    // User Guide): the document, and instances tagged Finance=WebServers.
    let ssm_doc_example = r#"{
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Action": ["ssm:SendCommand"],
             "Resource": ["arn:aws:ssm:*:*:document/AWS-RunShellScript"]},
            {"Effect": "Allow", "Action": ["ssm:SendCommand"],
             "Resource": ["arn:aws:ssm:*:*:managed-instance/*"],
             "Condition": {"StringLike": {"ssm:resourceTag/Finance": ["WebServers"]}}}
        ]}"#;
    // From IAM's "Denies access to AWS based on the source IP".
    let deny_outside_ip = r#"{
        "Version": "2012-10-17",
        "Statement": {"Effect": "Deny", "Action": "*", "Resource": "*",
            "Condition": {"NotIpAddress": {"aws:SourceIp": ["192.0.2.0/24", "203.0.113.0/24"]}}}}"#;
    let allow_all = r#"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "*", "Resource": "*"}}"#;
    // From IAM's "Allows access within specific dates".
    let dates = r#"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "ssm:*", "Resource": "*",
        "Condition": {"DateGreaterThan": {"aws:CurrentTime": "2020-04-01T00:00:00Z"},
                      "DateLessThan": {"aws:CurrentTime": "2020-06-30T23:59:59Z"}}}}"#;
    // NotAction: everything but IAM.
    let not_iam = r#"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "NotAction": "iam:*", "Resource": "*"}}"#;
    // NotResource: everything but one document.
    let not_shell = r#"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "ssm:SendCommand",
        "NotResource": "arn:aws:ssm:*:*:document/AWS-RunShellScript"}}"#;
    let read_only = r#"{"Version": "2012-10-17", "Statement": {"Effect": "Allow",
        "Action": ["ssm:List*", "ssm:Get*", "ssm:Describe*"], "Resource": "*"}}"#;
    let deny_send = r#"{"Version": "2012-10-17", "Statement": {"Sid": "NoSend", "Effect": "Deny", "Action": "ssm:SendCommand", "Resource": "*"}}"#;
    // From IAM's "BoolIfExists" example: deny unless MFA was used.
    let mfa = r#"{"Version": "2012-10-17", "Statement": {"Effect": "Deny", "Action": "*", "Resource": "*",
        "Condition": {"BoolIfExists": {"aws:MultiFactorAuthPresent": "false"}}}}"#;
    // Policy variables (2012): a user's own objects; and 2008 takes them literally.
    let home = r#"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "s3:GetObject",
        "Resource": "arn:aws:s3:::bucket/home/${aws:username}/*"}}"#;
    let home_2008 = r#"{"Version": "2008-10-17", "Statement": {"Effect": "Allow", "Action": "s3:GetObject",
        "Resource": "arn:aws:s3:::bucket/home/${aws:username}/*"}}"#;
    // ABAC: a principal's team tag must equal the resource's.
    let abac = r#"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "ssm:SendCommand", "Resource": "*",
        "Condition": {"StringEquals": {"ssm:resourceTag/Team": "${aws:PrincipalTag/team}"}}}}"#;
    let not_equals = r#"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "ssm:SendCommand", "Resource": "*",
        "Condition": {"StringNotEquals": {"ssm:resourceTag/Env": "prod"}}}}"#;
    let equals_ignore_case = r#"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "ssm:SendCommand", "Resource": "*",
        "Condition": {"StringEqualsIgnoreCase": {"ssm:resourceTag/Env": "LAB"}}}}"#;
    let numeric = r#"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "ssm:*", "Resource": "*",
        "Condition": {"NumericLessThanEquals": {"s3:max-keys": "10"}}}}"#;
    let null_check = r#"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "ssm:*", "Resource": "*",
        "Condition": {"Null": {"ssm:resourceTag/Env": "false"}}}}"#;
    let arn_like = r#"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "ssm:*", "Resource": "*",
        "Condition": {"ArnLike": {"aws:PrincipalArn": "arn:aws:iam::123456789012:user/ops-*"}}}}"#;
    let ipv6 = r#"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "ssm:*", "Resource": "*",
        "Condition": {"IpAddress": {"aws:SourceIp": ["::1/128", "10.0.0.1"]}}}}"#;

    let lab: &[(&str, &str)] = &[("ssm:resourceTag/Finance", "WebServers")];
    let cases: &[Case] = &[
        // Allow by document; by tag only with the tag.
        (
            &[ssm_doc_example],
            "ssm:SendCommand",
            "arn:aws:ssm:us-east-1:123456789012:document/AWS-RunShellScript",
            &[],
            true,
        ),
        (&[ssm_doc_example], "ssm:SendCommand", LAB_NODE, lab, true),
        (
            &[ssm_doc_example],
            "ssm:SendCommand",
            LAB_NODE,
            &[("ssm:resourceTag/Finance", "Payroll")],
            false,
        ),
        (&[ssm_doc_example], "ssm:SendCommand", LAB_NODE, &[], false),
        (&[ssm_doc_example], "ssm:ListCommands", "*", &[], false),
        // Actions match without case; resources with it.
        (&[ssm_doc_example], "SSM:sendcommand", SHELL_DOC, &[], true),
        (
            &[ssm_doc_example],
            "ssm:SendCommand",
            "arn:aws:ssm:us-east-1:123456789012:document/aws-runshellscript",
            &[],
            false,
        ),
        // Explicit Deny beats Allow; implicit deny without a match.
        (
            &[allow_all, deny_outside_ip],
            "ssm:SendCommand",
            LAB_NODE,
            &[("aws:SourceIp", "198.51.100.7")],
            false,
        ),
        (
            &[allow_all, deny_outside_ip],
            "ssm:SendCommand",
            LAB_NODE,
            &[("aws:SourceIp", "192.0.2.44")],
            true,
        ),
        // NotIpAddress on a request with no source IP: negated, key absent → applies.
        (
            &[allow_all, deny_outside_ip],
            "ssm:SendCommand",
            LAB_NODE,
            &[],
            false,
        ),
        (
            &[allow_all, deny_send],
            "ssm:SendCommand",
            LAB_NODE,
            &[],
            false,
        ),
        (&[allow_all, deny_send], "ssm:ListCommands", "*", &[], true),
        (&[], "ssm:ListCommands", "*", &[], false),
        // Dates.
        (
            &[dates],
            "ssm:ListCommands",
            "*",
            &[("aws:CurrentTime", "2020-05-01T12:00:00Z")],
            true,
        ),
        (
            &[dates],
            "ssm:ListCommands",
            "*",
            &[("aws:CurrentTime", "2020-07-01T00:00:00Z")],
            false,
        ),
        (
            &[dates],
            "ssm:ListCommands",
            "*",
            &[("aws:CurrentTime", "1585699200")],
            false,
        ),
        (&[dates], "ssm:ListCommands", "*", &[], false),
        // NotAction, NotResource.
        (&[not_iam], "ssm:SendCommand", LAB_NODE, &[], true),
        (
            &[not_iam],
            "iam:CreateUser",
            "arn:aws:iam::123456789012:user/bob",
            &[],
            false,
        ),
        (&[not_shell], "ssm:SendCommand", LAB_NODE, &[], true),
        (&[not_shell], "ssm:SendCommand", SHELL_DOC, &[], false),
        // Wildcards in actions.
        (&[read_only], "ssm:ListCommands", "*", &[], true),
        (&[read_only], "ssm:GetCommandInvocation", "*", &[], true),
        (&[read_only], "ssm:SendCommand", LAB_NODE, &[], false),
        // BoolIfExists.
        (&[allow_all, mfa], "ssm:ListCommands", "*", &[], false),
        (
            &[allow_all, mfa],
            "ssm:ListCommands",
            "*",
            &[("aws:MultiFactorAuthPresent", "false")],
            false,
        ),
        (
            &[allow_all, mfa],
            "ssm:ListCommands",
            "*",
            &[("aws:MultiFactorAuthPresent", "true")],
            true,
        ),
        // Policy variables.
        (
            &[home],
            "s3:GetObject",
            "arn:aws:s3:::bucket/home/alice/notes.txt",
            &[("aws:username", "alice")],
            true,
        ),
        (
            &[home],
            "s3:GetObject",
            "arn:aws:s3:::bucket/home/bob/notes.txt",
            &[("aws:username", "alice")],
            false,
        ),
        (
            &[home],
            "s3:GetObject",
            "arn:aws:s3:::bucket/home/alice/notes.txt",
            &[],
            false,
        ),
        (
            &[home_2008],
            "s3:GetObject",
            "arn:aws:s3:::bucket/home/alice/notes.txt",
            &[("aws:username", "alice")],
            false,
        ),
        (
            &[abac],
            "ssm:SendCommand",
            LAB_NODE,
            &[
                ("ssm:resourceTag/Team", "web"),
                ("aws:PrincipalTag/team", "web"),
            ],
            true,
        ),
        (
            &[abac],
            "ssm:SendCommand",
            LAB_NODE,
            &[
                ("ssm:resourceTag/Team", "db"),
                ("aws:PrincipalTag/team", "web"),
            ],
            false,
        ),
        (
            &[abac],
            "ssm:SendCommand",
            LAB_NODE,
            &[("ssm:resourceTag/Team", "web")],
            false,
        ),
        // StringNotEquals: absent key holds, another value holds, the value does not.
        (&[not_equals], "ssm:SendCommand", LAB_NODE, &[], true),
        (
            &[not_equals],
            "ssm:SendCommand",
            LAB_NODE,
            &[("ssm:resourceTag/Env", "lab")],
            true,
        ),
        (
            &[not_equals],
            "ssm:SendCommand",
            LAB_NODE,
            &[("ssm:resourceTag/Env", "prod")],
            false,
        ),
        (
            &[equals_ignore_case],
            "ssm:SendCommand",
            LAB_NODE,
            &[("ssm:resourceTag/Env", "lab")],
            true,
        ),
        // Context keys are matched without case.
        (
            &[equals_ignore_case],
            "ssm:SendCommand",
            LAB_NODE,
            &[("SSM:RESOURCETAG/ENV", "Lab")],
            true,
        ),
        (
            &[numeric],
            "ssm:ListCommands",
            "*",
            &[("s3:max-keys", "10")],
            true,
        ),
        (
            &[numeric],
            "ssm:ListCommands",
            "*",
            &[("s3:max-keys", "11")],
            false,
        ),
        (
            &[numeric],
            "ssm:ListCommands",
            "*",
            &[("s3:max-keys", "ten")],
            false,
        ),
        (
            &[null_check],
            "ssm:ListCommands",
            "*",
            &[("ssm:resourceTag/Env", "lab")],
            true,
        ),
        (&[null_check], "ssm:ListCommands", "*", &[], false),
        (
            &[arn_like],
            "ssm:ListCommands",
            "*",
            &[(
                "aws:PrincipalArn",
                "arn:aws:iam::123456789012:user/ops-alice",
            )],
            true,
        ),
        (
            &[arn_like],
            "ssm:ListCommands",
            "*",
            &[("aws:PrincipalArn", "arn:aws:iam::123456789012:user/dev-bob")],
            false,
        ),
        (
            &[ipv6],
            "ssm:ListCommands",
            "*",
            &[("aws:SourceIp", "::1")],
            true,
        ),
        (
            &[ipv6],
            "ssm:ListCommands",
            "*",
            &[("aws:SourceIp", "10.0.0.1")],
            true,
        ),
        (
            &[ipv6],
            "ssm:ListCommands",
            "*",
            &[("aws:SourceIp", "10.0.0.2")],
            false,
        ),
    ];
    for (i, (policies, action, resource, ctx, want)) in cases.iter().enumerate() {
        let parsed: Vec<Policy> = policies.iter().map(|p| policy(p)).collect();
        let refs: Vec<&Policy> = parsed.iter().collect();
        let mut context = Context::new();
        for (k, v) in *ctx {
            context.set(k, *v);
        }
        let got = evaluate(
            &refs,
            &Request {
                action,
                resource,
                context: &context,
            },
        );
        assert_eq!(
            got.is_allowed(),
            *want,
            "case {i}: {action} on {resource} with {ctx:?}: {got:?}"
        );
    }
}

#[test]
fn set_operators_on_multi_valued_keys() {
    let for_all = policy(
        r#"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "ssm:*", "Resource": "*",
        "Condition": {"ForAllValues:StringEquals": {"aws:TagKeys": ["Env", "Team"]}}}}"#,
    );
    let for_any = policy(
        r#"{"Version": "2012-10-17", "Statement": {"Effect": "Allow", "Action": "ssm:*", "Resource": "*",
        "Condition": {"ForAnyValue:StringEquals": {"aws:TagKeys": ["Env"]}}}}"#,
    );
    for (p, keys, want) in [
        (&for_all, Some(vec!["Env"]), true),
        (&for_all, Some(vec!["Env", "Team"]), true),
        (&for_all, Some(vec!["Env", "Owner"]), false),
        // Every value of none: true (as IAM warns).
        (&for_all, None, true),
        (&for_any, Some(vec!["Owner", "Env"]), true),
        (&for_any, Some(vec!["Owner"]), false),
        (&for_any, None, false),
    ] {
        let mut ctx = Context::new();
        if let Some(keys) = &keys {
            ctx.set_all("aws:TagKeys", keys.iter().map(|k| k.to_string()).collect());
        }
        let got = evaluate(
            &[p],
            &Request {
                action: "ssm:ListCommands",
                resource: "*",
                context: &ctx,
            },
        );
        assert_eq!(got.is_allowed(), want, "{keys:?}");
    }
}

#[test]
fn the_decision_names_its_statement() {
    let allow = policy(
        r#"{"Version": "2012-10-17", "Statement": [{"Sid": "Everything", "Effect": "Allow", "Action": "*", "Resource": "*"}]}"#,
    );
    let deny = policy(
        r#"{"Version": "2012-10-17", "Statement": [
        {"Sid": "Reads", "Effect": "Allow", "Action": "ssm:List*", "Resource": "*"},
        {"Sid": "NoSend", "Effect": "Deny", "Action": "ssm:SendCommand", "Resource": "*"}]}"#,
    );
    let ctx = Context::new();
    let req = Request {
        action: "ssm:SendCommand",
        resource: LAB_NODE,
        context: &ctx,
    };
    match evaluate(&[&allow, &deny], &req) {
        Decision::ExplicitlyDenied(d) => {
            assert_eq!(
                (d.policy, d.statement, d.sid.as_deref()),
                (1, 1, Some("NoSend"))
            )
        }
        other => panic!("{other:?}"),
    }
    match evaluate(&[&allow], &req) {
        Decision::Allowed(d) => assert_eq!(d.sid.as_deref(), Some("Everything")),
        other => panic!("{other:?}"),
    }
    assert_eq!(evaluate(&[], &req), Decision::ImplicitlyDenied);
}

#[test]
fn malformed_policies_are_refused_naming_statement_and_field() {
    let v = vocabulary();
    let ok = format!(
        r#"{{"Version": "2012-10-17", "Statement": [{{"Sid": "Lab", "Effect": "Allow", "Action": ["ssm:SendCommand", "ssm:Get*"],
           "Resource": ["arn:aws:ssm:us-east-1:{ACCOUNT}:document/AWS-RunShellScript", "arn:aws:ssm:*:*:managed-instance/mi-*", "*"],
           "Condition": {{"StringEquals": {{"ssm:resourceTag/Env": "lab"}}, "Bool": {{"aws:SecureTransport": true}}}}}}]}}"#
    );
    Policy::parse(&ok, &v).unwrap();
    for (text, fragment) in [
        ("not json", "not valid JSON"),
        ("[]", "must be a JSON object"),
        (r#"{"Version": "2012-10-17"}"#, "Statement is required"),
        (r#"{"Version": "2020-01-01", "Statement": []}"#, "Version"),
        (
            r#"{"Version": "2012-10-17", "Statement": [], "Extra": 1}"#,
            "unknown field \"Extra\"",
        ),
        (
            r#"{"Version": "2012-10-17", "Statement": []}"#,
            "non-empty list",
        ),
        (
            r#"{"Statement": {"Action": "ssm:*", "Resource": "*"}}"#,
            "Statement 1: Effect is required",
        ),
        (
            r#"{"Statement": {"Effect": "allow", "Action": "ssm:*", "Resource": "*"}}"#,
            "Effect \"allow\" must be Allow or Deny",
        ),
        (
            r#"{"Statement": [{"Effect": "Allow", "Action": "ssm:*", "Resource": "*"}, {"Sid": "Two", "Effect": "Allow", "Resource": "*"}]}"#,
            "Statement 2 (Sid Two): Action (or NotAction) is required",
        ),
        (
            r#"{"Statement": {"Effect": "Allow", "Action": "ssm:*", "NotAction": "iam:*", "Resource": "*"}}"#,
            "not both",
        ),
        (
            r#"{"Statement": {"Effect": "Allow", "Action": "ssm:*"}}"#,
            "Resource (or NotResource) is required",
        ),
        (
            r#"{"Statement": {"Effect": "Allow", "Action": [], "Resource": "*"}}"#,
            "Action must name at least one value",
        ),
        (
            r#"{"Statement": {"Effect": "Allow", "Action": 7, "Resource": "*"}}"#,
            "Action must be a string or a list of strings",
        ),
        (
            r#"{"Statement": {"Effect": "Allow", "Action": "SendCommand", "Resource": "*"}}"#,
            "must be service:Action",
        ),
        (
            r#"{"Statement": {"Effect": "Allow", "Action": "ssm:SendComand", "Resource": "*"}}"#,
            "is not an action Tether knows (did you mean ssm:SendCommand?)",
        ),
        (
            r#"{"Statement": {"Effect": "Allow", "Action": "smm:SendCommand", "Resource": "*"}}"#,
            "there is no service \"smm\"",
        ),
        (
            r#"{"Statement": {"Effect": "Allow", "Action": "ssm:*", "Resource": "arn:aws:ssm:us-east-1:123:document/x"}}"#,
            "must be 12 digits",
        ),
        (
            r#"{"Statement": {"Effect": "Allow", "Action": "ssm:*", "Resource": "arn:aws:ssm:us-east-1:123456789012:documnt/x"}}"#,
            "ssm has no resource type \"documnt\"",
        ),
        (
            r#"{"Statement": {"Effect": "Allow", "Action": "ssm:*", "Resource": "arn:aws:sms:us-east-1:123456789012:document/x"}}"#,
            "there is no service \"sms\"",
        ),
        (
            r#"{"Statement": {"Effect": "Allow", "Action": "ssm:*", "Resource": "document/x"}}"#,
            "must be * or an ARN",
        ),
        (
            r#"{"Statement": {"Effect": "Allow", "Action": "ssm:*", "Resource": "arn:aws-cn:ssm:us-east-1:123456789012:document/x"}}"#,
            "the partition must be aws",
        ),
        (
            r#"{"Statement": {"Effect": "Allow", "Principal": "*", "Action": "ssm:*", "Resource": "*"}}"#,
            "must not name a principal",
        ),
        (
            r#"{"Statement": {"Effect": "Allow", "Action": "ssm:*", "Resource": "*", "Conditions": {}}}"#,
            "unknown field \"Conditions\"",
        ),
        (
            r#"{"Statement": {"Effect": "Allow", "Action": "ssm:*", "Resource": "*", "Condition": {"StringEqual": {"a": "b"}}}}"#,
            "unknown operator \"StringEqual\"",
        ),
        (
            r#"{"Statement": {"Effect": "Allow", "Action": "ssm:*", "Resource": "*", "Condition": {"DateLessThan": {"aws:CurrentTime": "soon"}}}}"#,
            "\"soon\" is not a valid value for DateLessThan",
        ),
        (
            r#"{"Statement": {"Effect": "Allow", "Action": "ssm:*", "Resource": "*", "Condition": {"IpAddress": {"aws:SourceIp": "10.0.0.300/8"}}}}"#,
            "not a valid value for IpAddress",
        ),
        (
            r#"{"Statement": {"Effect": "Allow", "Action": "ssm:*", "Resource": "*", "Condition": {"Bool": {"aws:SecureTransport": "yes"}}}}"#,
            "not a valid value for Bool",
        ),
        (
            r#"{"Statement": {"Effect": "Allow", "Action": "ssm:*", "Resource": "*", "Condition": {"NullIfExists": {"a": "true"}}}}"#,
            "Null takes no IfExists",
        ),
        (
            r#"{"Statement": {"Effect": "Allow", "Action": "ssm:*", "Resource": "*", "Condition": {"StringEquals": {"a": []}}}}"#,
            "non-empty list",
        ),
        (
            r#"{"Statement": [{"Sid": "A", "Effect": "Allow", "Action": "ssm:*", "Resource": "*"}, {"Sid": "A", "Effect": "Deny", "Action": "ssm:*", "Resource": "*"}]}"#,
            "Statement 2 (Sid A): the Sid is used by another statement",
        ),
        (
            r#"{"Statement": {"Sid": "no spaces allowed", "Effect": "Allow", "Action": "ssm:*", "Resource": "*"}}"#,
            "Sid \"no spaces allowed\" must be letters and digits only",
        ),
    ] {
        let e = Policy::parse(text, &v).expect_err(text);
        assert!(e.message.contains(fragment), "{text}: {}", e.message);
    }
}
