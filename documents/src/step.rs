//! Steps: reads schema 1.2 `runtimeConfig` plugins and schema 2.2
//! `mainSteps` into one step definition, and turns definitions plus resolved
//! parameters into the concrete [`Step`]s an agent runs on one platform.
//! `aws:runShellScript` and `aws:runPowerShellScript` take the inputs
//! `runCommand`, `workingDirectory` and `timeoutSeconds`; `aws:softwareInventory`
//! (the step of `AWS-GatherSoftwareInventory`) takes one `Enabled`/`Disabled`
//! input per inventory type.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::error::DocumentError;
use crate::message::UnknownName;
use crate::node::{Node, Obj, wrong_type};
use crate::parameter::{ParameterDef, check_timeout};
use crate::template::Template;

/// The operating systems a step can run on, named as SSM's `PlatformType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PlatformType {
    Linux,
    Windows,
    MacOs,
}

impl PlatformType {
    /// In SSM's order (`DescribeDocument` lists `Windows`, `Linux`, `MacOS`).
    pub const ALL: [PlatformType; 3] = [
        PlatformType::Windows,
        PlatformType::Linux,
        PlatformType::MacOs,
    ];

    /// The SSM name: `Linux`, `Windows` or `MacOS`.
    pub fn as_str(self) -> &'static str {
        match self {
            PlatformType::Linux => "Linux",
            PlatformType::Windows => "Windows",
            PlatformType::MacOs => "MacOS",
        }
    }
}

impl fmt::Display for PlatformType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PlatformType {
    type Err = UnknownName;

    /// Accepts the SSM names in any case (`MacOS`, `macos`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PlatformType::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| UnknownName::new("platform type", s, "Linux, Windows, MacOS"))
    }
}

/// What a step does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StepAction {
    RunShellScript,
    RunPowerShellScript,
    /// Gathers inventory in the agent itself: no script runs.
    SoftwareInventory,
    /// Replaces the agent with a signed release (`Tether-UpdateAgent`), in
    /// the agent itself: no script runs.
    UpdateAgent,
}

impl StepAction {
    pub const ALL: [StepAction; 4] = [
        StepAction::RunShellScript,
        StepAction::RunPowerShellScript,
        StepAction::SoftwareInventory,
        StepAction::UpdateAgent,
    ];

    /// The SSM action (plugin) name.
    pub fn as_str(self) -> &'static str {
        match self {
            StepAction::RunShellScript => "aws:runShellScript",
            StepAction::RunPowerShellScript => "aws:runPowerShellScript",
            StepAction::SoftwareInventory => "aws:softwareInventory",
            StepAction::UpdateAgent => "tether:updateAgent",
        }
    }

    /// Where the action can run: shell scripts on Unix, PowerShell everywhere
    /// (`pwsh` on Linux and macOS), as SSM reports for the AWS- documents.
    pub fn platforms(self) -> &'static [PlatformType] {
        match self {
            StepAction::RunShellScript => &[PlatformType::Linux, PlatformType::MacOs],
            StepAction::RunPowerShellScript | StepAction::SoftwareInventory => &PlatformType::ALL,
            // The agent's releases are Linux builds.
            StepAction::UpdateAgent => &[PlatformType::Linux],
        }
    }

    pub fn supports(self, platform: PlatformType) -> bool {
        self.platforms().contains(&platform)
    }
}

impl fmt::Display for StepAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StepAction {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StepAction::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| {
                UnknownName::new(
                    "action",
                    s,
                    "aws:runShellScript, aws:runPowerShellScript, aws:softwareInventory, tether:updateAgent",
                )
            })
    }
}

/// One step, ready to run: commands interpolated, timeout checked.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// The 1.2 property `id` (e.g. `0.aws:runShellScript`) or the 2.2 step `name`.
    pub name: String,
    pub action: StepAction,
    /// The script lines, to be joined with `\n`; a line may itself hold newlines.
    pub commands: Vec<String>,
    /// Empty for the agent's default.
    pub working_directory: String,
    pub timeout_seconds: u32,
    /// Why the step does not run on this platform, if it does not.
    pub skipped: Option<String>,
    /// `aws:softwareInventory` and `tether:updateAgent`: each input with its
    /// placeholders filled.
    pub inputs: BTreeMap<String, String>,
}

/// A step as the document defines it, placeholders still in.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct StepDef {
    pub(crate) name: String,
    /// Where the step sits in the document, for messages.
    pub(crate) path: String,
    /// Where its inputs sit (`mainSteps[0].inputs`; the property itself in 1.2).
    pub(crate) inputs_path: String,
    pub(crate) action: StepAction,
    pub(crate) precondition: Option<PlatformType>,
    /// One template per `runCommand` entry; a lone placeholder expands to all its values.
    pub(crate) run_command: Vec<Template>,
    pub(crate) working_directory: Template,
    pub(crate) timeout_seconds: Option<Template>,
    /// `aws:softwareInventory` and `tether:updateAgent` inputs.
    pub(crate) inventory: Vec<(String, Template)>,
}

impl StepDef {
    /// Every template with the field it came from, for the placeholder check.
    pub(crate) fn templates(&self) -> Vec<(String, &Template)> {
        let mut out: Vec<(String, &Template)> = self
            .run_command
            .iter()
            .enumerate()
            .map(|(i, t)| (format!("{}.runCommand[{i}]", self.inputs_path), t))
            .collect();
        out.push((
            format!("{}.workingDirectory", self.inputs_path),
            &self.working_directory,
        ));
        if let Some(t) = &self.timeout_seconds {
            out.push((format!("{}.timeoutSeconds", self.inputs_path), t));
        }
        for (k, t) in &self.inventory {
            out.push((format!("{}.{k}", self.inputs_path), t));
        }
        out
    }

    /// The platforms this step runs on: its action's, narrowed by its precondition.
    pub(crate) fn platforms(&self) -> Vec<PlatformType> {
        self.action
            .platforms()
            .iter()
            .copied()
            .filter(|p| self.precondition.is_none_or(|want| want == *p))
            .collect()
    }

    /// The concrete step for `platform`; see [`crate::Document::plan`].
    pub(crate) fn plan(
        &self,
        defs: &[ParameterDef],
        params: &BTreeMap<String, Vec<String>>,
        platform: PlatformType,
    ) -> Result<Step, DocumentError> {
        let values = |name: &str| {
            params
                .get(name)
                .ok_or_else(|| DocumentError::UnresolvedParameter {
                    name: name.to_owned(),
                })
        };
        let is_list = |name: &str| defs.iter().any(|d| d.name == name && d.kind.is_list());
        // Inside a longer string a list parameter is written as a JSON array, as
        // the SSM agent does; a single-valued parameter as its value.
        let inline = |name: &str| -> Result<String, DocumentError> {
            let values = values(name)?;
            Ok(match values.as_slice() {
                [one] if !is_list(name) => one.clone(),
                many => serde_json::Value::from(many.to_vec()).to_string(),
            })
        };

        let mut commands = Vec::new();
        for line in &self.run_command {
            match line.whole_param() {
                Some(name) => commands.extend(values(name)?.iter().cloned()),
                None => commands.push(line.render(inline)?),
            }
        }
        let working_directory = self.working_directory.render(inline)?;
        let timeout_seconds = match &self.timeout_seconds {
            None => crate::DEFAULT_EXECUTION_TIMEOUT_SECS,
            Some(template) => {
                let value = template.render(inline)?;
                check_timeout(&value).map_err(|rule| match template.whole_param() {
                    // Name what the operator typed, not the document's plumbing.
                    Some(param) => DocumentError::InvalidParameterValue {
                        name: param.to_owned(),
                        value: value.clone(),
                        rule: format!("{rule} (timeoutSeconds of step {:?})", self.name),
                    },
                    None => DocumentError::InvalidStepTimeout {
                        step: self.name.clone(),
                        value: value.clone(),
                        rule,
                    },
                })?
            }
        };
        let skipped = match self.precondition {
            Some(want) if want != platform => Some(format!(
                "precondition StringEquals [platformType, {want}] does not match platform {platform}"
            )),
            _ if !self.action.supports(platform) => {
                Some(format!("action {} does not run on {platform}", self.action))
            }
            _ => None,
        };
        let inputs = self
            .inventory
            .iter()
            .map(|(k, t)| Ok((k.clone(), t.render(inline)?)))
            .collect::<Result<_, DocumentError>>()?;
        Ok(Step {
            name: self.name.clone(),
            action: self.action,
            commands,
            working_directory,
            timeout_seconds,
            skipped,
            inputs,
        })
    }
}

const INPUT_FIELDS: &[&str] = &["runCommand", "workingDirectory", "timeoutSeconds"];
/// The inputs of `aws:softwareInventory`, as in `AWS-GatherSoftwareInventory`.
pub const INVENTORY_INPUTS: &[&str] = &[
    "applications",
    "awsComponents",
    "networkConfig",
    "files",
    "services",
    "windowsRoles",
    "windowsRegistry",
    "windowsUpdates",
    "instanceDetailedInformation",
    "billingInfo",
    "customInventory",
];
/// The inputs of `tether:updateAgent`, as the parameters of
/// `AWS-UpdateSSMAgent`: `version` (empty = the fleet's target) and
/// `allowDowngrade` (`true` or `false`).
pub const UPDATE_AGENT_INPUTS: &[&str] = &["version", "allowDowngrade"];

/// Reads schema 1.2 `runtimeConfig`: plugin name → `{"properties": [...]}`.
pub(crate) fn parse_runtime_config(node: &Node) -> Result<Vec<StepDef>, DocumentError> {
    let config = Obj::new("runtimeConfig", node)?;
    let mut steps = Vec::new();
    for (plugin, body) in config.entries() {
        let plugin_path = config.child(plugin);
        let action = parse_action(&plugin_path, plugin)?;
        let body = Obj::new(&plugin_path, body)?;
        body.only(&["properties", "description", "settings"])?;
        // The agent echoes back an empty `settings`; anything in it we cannot honour.
        if let Some(settings) = body.get("settings")
            && !matches!(settings, Node::Null)
            && !matches!(settings, Node::Map(m) if m.is_empty())
        {
            return Err(DocumentError::UnknownField {
                field: body.child("settings"),
                allowed: "null or {} (plugin settings are not supported)".to_owned(),
            });
        }
        let properties_path = body.child("properties");
        // The agent takes one property object as well as a list of them.
        let properties: Vec<&Node> = match body.required("properties")? {
            Node::List(items) => items.iter().collect(),
            one @ Node::Map(_) => vec![one],
            other => return Err(wrong_type(&properties_path, "a list of objects", other)),
        };
        for (i, property) in properties.into_iter().enumerate() {
            let path = format!("{properties_path}[{i}]");
            let obj = Obj::new(&path, property)?;
            obj.only(&["id", "runCommand", "workingDirectory", "timeoutSeconds"])?;
            let name = obj
                .opt_string("id")?
                .unwrap_or_else(|| format!("{i}.{}", action.as_str()));
            steps.push(parse_inputs(name, path.clone(), action, None, &obj)?);
        }
    }
    Ok(steps)
}

/// Reads schema 2.2 `mainSteps`.
pub(crate) fn parse_main_steps(node: &Node) -> Result<Vec<StepDef>, DocumentError> {
    let Node::List(items) = node else {
        return Err(wrong_type("mainSteps", "a list of steps", node));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let path = format!("mainSteps[{i}]");
            let step = Obj::new(&path, item)?;
            step.only(&["action", "name", "inputs", "precondition"])?;
            let action = match step.required("action")? {
                Node::String(s) => parse_action(&step.child("action"), s)?,
                other => return Err(wrong_type(&step.child("action"), "a string", other)),
            };
            let name = match step.required("name")? {
                Node::String(s) => s.clone(),
                other => return Err(wrong_type(&step.child("name"), "a string", other)),
            };
            let precondition = step
                .get("precondition")
                .map(|p| parse_precondition(&step.child("precondition"), p))
                .transpose()?;
            let inputs_path = step.child("inputs");
            let inputs = Obj::new(&inputs_path, step.required("inputs")?)?;
            let named = match action {
                StepAction::SoftwareInventory => Some(INVENTORY_INPUTS),
                StepAction::UpdateAgent => Some(UPDATE_AGENT_INPUTS),
                StepAction::RunShellScript | StepAction::RunPowerShellScript => None,
            };
            if let Some(allowed) = named {
                inputs.only(allowed)?;
                return parse_named_inputs(
                    name,
                    path.clone(),
                    action,
                    allowed,
                    precondition,
                    &inputs,
                );
            }
            inputs.only(INPUT_FIELDS)?;
            parse_inputs(name, path.clone(), action, precondition, &inputs)
        })
        .collect()
}

/// A step name is not empty and holds no control character: none of
/// Unicode's Cc (C0 with NUL, DEL, C1), no line or paragraph separator, and
/// no bidirectional embedding, override or isolate (text that displays in
/// another order than it reads).
fn check_step_name(name: &str, path: &str) -> Result<(), DocumentError> {
    if name.is_empty() {
        return Err(DocumentError::EmptyStepName {
            field: path.to_owned(),
        });
    }
    let bad = name.chars().find_map(|c| {
        let what = match c {
            '\0' => "a NUL character",
            c if c.is_control() => "a control character",
            '\u{2028}' | '\u{2029}' => "a line separator",
            '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' => {
                "a bidirectional control"
            }
            _ => return None,
        };
        Some((what, c))
    });
    match bad {
        Some((what, c)) => Err(DocumentError::StepNameControl {
            field: path.to_owned(),
            name: name.to_owned(),
            what,
            code: u32::from(c),
        }),
        None => Ok(()),
    }
}

fn parse_action(field: &str, value: &str) -> Result<StepAction, DocumentError> {
    value.parse().map_err(|_| DocumentError::UnknownAction {
        field: field.to_owned(),
        value: value.to_owned(),
    })
}

fn parse_inputs(
    name: String,
    path: String,
    action: StepAction,
    precondition: Option<PlatformType>,
    inputs: &Obj<'_>,
) -> Result<StepDef, DocumentError> {
    check_step_name(&name, &path)?;
    let run_path = inputs.child("runCommand");
    let run_command = match inputs.required("runCommand")? {
        Node::String(s) => vec![Template::parse(s)],
        Node::List(lines) => lines
            .iter()
            .enumerate()
            .map(|(i, line)| match line {
                Node::String(s) => Ok(Template::parse(s)),
                other => Err(wrong_type(&format!("{run_path}[{i}]"), "a string", other)),
            })
            .collect::<Result<_, _>>()?,
        other => {
            return Err(wrong_type(
                &run_path,
                "a string or a list of strings",
                other,
            ));
        }
    };
    let working_directory =
        Template::parse(&inputs.opt_string("workingDirectory")?.unwrap_or_default());
    let timeout_path = inputs.child("timeoutSeconds");
    let timeout_seconds = match inputs.get("timeoutSeconds") {
        None | Some(Node::Null) => None,
        Some(Node::String(s)) => Some(s.clone()),
        Some(Node::Number(n)) => Some(n.to_string()),
        Some(other) => return Err(wrong_type(&timeout_path, "a string or a number", other)),
    };
    let timeout_seconds = timeout_seconds.map(|text| {
        let template = Template::parse(&text);
        // A literal timeout is checked now rather than at every send.
        if template.params().next().is_none() {
            check_timeout(&text).map_err(|rule| DocumentError::InvalidTimeout {
                field: timeout_path.clone(),
                value: text.clone(),
                rule,
            })?;
        }
        Ok::<_, DocumentError>(template)
    });
    Ok(StepDef {
        name,
        path,
        inputs_path: inputs.path.to_owned(),
        action,
        precondition,
        run_command,
        working_directory,
        timeout_seconds: timeout_seconds.transpose()?,
        inventory: Vec::new(),
    })
}

/// The inputs of an action the agent carries out itself (`allowed`: its
/// input names, each an optional string).
fn parse_named_inputs(
    name: String,
    path: String,
    action: StepAction,
    allowed: &[&str],
    precondition: Option<PlatformType>,
    inputs: &Obj<'_>,
) -> Result<StepDef, DocumentError> {
    check_step_name(&name, &path)?;
    let mut inventory = Vec::new();
    for k in allowed {
        if let Some(v) = inputs.opt_string(k)? {
            inventory.push((k.to_string(), Template::parse(&v)));
        }
    }
    Ok(StepDef {
        name,
        path,
        inputs_path: inputs.path.to_owned(),
        action,
        precondition,
        run_command: Vec::new(),
        working_directory: Template::parse(""),
        timeout_seconds: None,
        inventory,
    })
}

/// `{"StringEquals": ["platformType", "Linux"]}` — the only precondition SSM
/// Command documents had for years, and the only one Tether evaluates.
fn parse_precondition(field: &str, node: &Node) -> Result<PlatformType, DocumentError> {
    let invalid = |reason: String| DocumentError::InvalidPrecondition {
        field: field.to_owned(),
        reason,
    };
    let obj = Obj::new(field, node)?;
    let operands = match obj.entries() {
        [(op, operands)] if op == "StringEquals" => operands,
        [(op, _)] => {
            return Err(invalid(format!(
                "operator {op:?} is not supported (supported: StringEquals)"
            )));
        }
        _ => {
            return Err(invalid(
                "expected exactly one operator, as in {\"StringEquals\": [\"platformType\", \"Linux\"]}"
                    .to_owned(),
            ));
        }
    };
    match operands {
        Node::List(pair) => match pair.as_slice() {
            [Node::String(variable), Node::String(value)] if variable == "platformType" => value
                .parse()
                .map_err(|e: UnknownName| invalid(e.to_string())),
            [Node::String(variable), Node::String(_)] => Err(invalid(format!(
                "variable {variable:?} is not supported (supported: platformType)"
            ))),
            _ => Err(invalid(
                "StringEquals takes two strings: [\"platformType\", PLATFORM]".to_owned(),
            )),
        },
        other => Err(wrong_type(
            &obj.child("StringEquals"),
            "a list of two strings",
            other,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in PlatformType::ALL {
            assert_eq!(p.as_str().parse::<PlatformType>(), Ok(p));
        }
        assert_eq!("macos".parse::<PlatformType>(), Ok(PlatformType::MacOs));
        assert!("Solaris".parse::<PlatformType>().is_err());
        for a in StepAction::ALL {
            assert_eq!(a.as_str().parse::<StepAction>(), Ok(a));
        }
        assert!("aws:runDocument".parse::<StepAction>().is_err());
    }

    #[test]
    fn preconditions() {
        let cases: &[(&str, Result<PlatformType, &str>)] = &[
            (
                r#"{"StringEquals":["platformType","Windows"]}"#,
                Ok(PlatformType::Windows),
            ),
            (
                r#"{"StringEquals":["platformType","MacOS"]}"#,
                Ok(PlatformType::MacOs),
            ),
            (
                r#"{"StringEquals":["platformType","Plan9"]}"#,
                Err(r#"platform type "Plan9" is unknown"#),
            ),
            (
                r#"{"StringEquals":["platformVersion","10"]}"#,
                Err(r#"variable "platformVersion" is not supported"#),
            ),
            (
                r#"{"StringLike":["platformType","Linux"]}"#,
                Err(r#"operator "StringLike" is not supported"#),
            ),
            (
                r#"{"StringEquals":["platformType"]}"#,
                Err("StringEquals takes two strings"),
            ),
            (r#"{}"#, Err("expected exactly one operator")),
            (
                r#""Linux""#,
                Err("precondition: expected an object, found a string"),
            ),
        ];
        for (json, want) in cases {
            let node: Node = serde_json::from_str(json).expect("test JSON is valid");
            match (parse_precondition("precondition", &node), want) {
                (Ok(got), Ok(want)) => assert_eq!(got, *want, "{json}"),
                (Err(e), Err(needle)) => {
                    assert!(
                        e.to_string().contains(needle),
                        "{json}: {e} lacks {needle:?}"
                    );
                }
                (got, want) => panic!("{json}: wanted {want:?}, got {got:?}"),
            }
        }
    }
}
