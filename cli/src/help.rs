//! `tether help`, `tether VERB help` (or `--help`) and shell completion, all
//! from the model the verbs are built from: a verb's help is its
//! operation's documentation, its synopsis and every option with its type
//! (and, for structures, their members in shorthand), the enum values, and
//! what the answer holds, as `aws ssm VERB help` shows them; completion
//! for bash and zsh knows the verbs, their options and the enum values.
//!
//! Pure: it returns text.

use std::fmt::Write as _;

use serde_json::Value;
use tether_ssm::model::{self, Model};

use crate::params::{self, VerbOption};

/// The global options, with what they take and do.
pub const GLOBAL_HELP: &[(&str, &str, &str)] = &[
    (
        "--debug",
        "",
        "Log the request, the answer and timings on stderr, every secret redacted.",
    ),
    (
        "--output",
        "string",
        "The output format: json (the default), text or table.",
    ),
    (
        "--query",
        "string",
        "A JMESPath query to filter the answer with.",
    ),
    (
        "--profile",
        "string",
        "A named profile of the config file ($TETHER_CONFIG_FILE, ~/.config/tether/config); default $TETHER_PROFILE.",
    ),
    (
        "--config",
        "string",
        "operator.json to use (default: the profile's operator_config, $TETHER_CONFIG, ~/.config/tether/operator.json, /var/lib/tether/operator.json).",
    ),
    (
        "--region",
        "string",
        "Accepted as the aws CLI takes it; the coordinator's region is in operator.json.",
    ),
    (
        "--no-paginate",
        "",
        "Make one call only, and print its NextToken.",
    ),
    (
        "--color",
        "string",
        "Colour table output: on, off or auto (when stdout is a terminal).",
    ),
    (
        "--no-cli-pager",
        "",
        "Do not page the output (tether never pages; accepted for scripts).",
    ),
    (
        "--cli-read-timeout",
        "integer",
        "Seconds to wait for an answer (default 60; 0: forever).",
    ),
    (
        "--cli-connect-timeout",
        "integer",
        "Seconds to wait for a connection (default 60; 0: forever).",
    ),
    ("--version", "", "Print the version."),
];

/// HTML documentation as plain text: paragraphs, list items as `* `, wrapped.
pub fn plain(html: &str, indent: usize) -> String {
    let mut text = String::new();
    let mut tag = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => {
                in_tag = true;
                tag.clear();
            }
            '>' if in_tag => {
                in_tag = false;
                let name = tag
                    .trim_start_matches('/')
                    .split_whitespace()
                    .next()
                    .unwrap_or("");
                match name {
                    "p" | "ul" | "ol" if tag.starts_with('/') => text.push_str("\n\n"),
                    "li" if !tag.starts_with('/') => text.push_str("\n* "),
                    "br" => text.push('\n'),
                    _ => {}
                }
            }
            c if in_tag => tag.push(c),
            c => text.push(c),
        }
    }
    let text = text
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&amp;", "&");
    let mut out = String::new();
    for para in text.split("\n\n").map(str::trim).filter(|p| !p.is_empty()) {
        for line in para.lines().map(str::trim).filter(|l| !l.is_empty()) {
            wrap(&mut out, line, indent, 79);
        }
        out.push('\n');
    }
    out
}

fn wrap(out: &mut String, text: &str, indent: usize, width: usize) {
    let pad = " ".repeat(indent);
    let mut line = String::new();
    for word in text.split_whitespace() {
        if !line.is_empty() && indent + line.chars().count() + 1 + word.chars().count() > width {
            let _ = writeln!(out, "{pad}{line}");
            line.clear();
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    if !line.is_empty() {
        let _ = writeln!(out, "{pad}{line}");
    }
}

/// The type an option shows (`string`, `list`, `structure`, `boolean`, …).
fn type_name(m: &'static Model, shape: &str) -> &'static str {
    m.shape_type(shape)
}

/// A structure's shorthand syntax, as the aws CLI's help shows it.
fn shorthand_syntax(m: &'static Model, shape: &str) -> Option<String> {
    let def = m.shape(shape)?;
    let (structure, list) = match def["type"].as_str()? {
        "structure" => (shape, false),
        "list" => {
            let member = def["member"]["shape"].as_str()?;
            if m.shape_type(member) != "structure" {
                return None;
            }
            (member, true)
        }
        _ => return None,
    };
    let parts: Vec<String> = m
        .members(structure)
        .iter()
        .filter_map(|(name, d)| {
            let s = d["shape"].as_str()?;
            Some(match m.shape_type(s) {
                "list" => format!("{name}=string,string"),
                "structure" | "map" => return None,
                t => format!("{name}={t}"),
            })
        })
        .collect();
    if parts.is_empty() {
        return None;
    }
    let one = parts.join(",");
    Some(if list { format!("{one} ...") } else { one })
}

/// `tether VERB help` for an operation.
pub fn operation(operation: &str) -> String {
    let m = model::model();
    let verb = model::cli_name(operation);
    let opts = params::options(operation, false);
    let mut out = String::new();
    let _ = writeln!(out, "NAME\n       {verb} -\n\nDESCRIPTION");
    out.push_str(&plain(
        m.operation(operation)
            .and_then(|o| o["documentation"].as_str())
            .unwrap_or(""),
        7,
    ));
    let _ = writeln!(out, "SYNOPSIS\n            {verb}");
    for o in &opts {
        if o.negated {
            continue;
        }
        let arg = match o.spec.arity {
            crate::args::Arity::Flag => {
                if opts.iter().any(|x| {
                    x.negated
                        && x.member.as_ref().map(|m| m.name) == o.member.as_ref().map(|m| m.name)
                }) {
                    format!("{} | --no-{}", o.spec.name, &o.spec.name[2..])
                } else {
                    o.spec.name.clone()
                }
            }
            _ => format!("{} <value>", o.spec.name),
        };
        if o.spec.required {
            let _ = writeln!(out, "          {arg}");
        } else {
            let _ = writeln!(out, "          [{arg}]");
        }
    }
    out.push_str("\nOPTIONS\n");
    for o in &opts {
        option(&mut out, m, o);
    }
    out.push_str("GLOBAL OPTIONS\n");
    for (flag, kind, help) in GLOBAL_HELP {
        if kind.is_empty() {
            let _ = writeln!(out, "       {flag}");
        } else {
            let _ = writeln!(out, "       {flag} ({kind})");
        }
        wrap(&mut out, help, 10, 79);
        out.push('\n');
    }
    out.push_str("OUTPUT\n");
    match m.output_shape(operation) {
        Some(shape) => {
            for (name, def) in m.members(shape).into_iter().chain(m.extra_members(shape)) {
                let s = def["shape"].as_str().unwrap_or("");
                let _ = writeln!(out, "       {name} -> ({})", type_name(m, s));
                out.push_str(&plain(def["documentation"].as_str().unwrap_or(""), 10));
            }
        }
        None => out.push_str("       None\n"),
    }
    out
}

fn option(out: &mut String, m: &'static Model, o: &VerbOption) {
    if o.negated {
        return;
    }
    match &o.member {
        Some(member) => {
            let kind = type_name(m, member.shape);
            let _ = writeln!(out, "       {} ({kind})", o.spec.name);
            out.push_str(&plain(member.documentation, 10));
            if let Some(values) = m
                .shape(member.shape)
                .and_then(|s| s["enum"].as_array())
                .or_else(|| {
                    let inner = m.shape(member.shape)?["member"]["shape"].as_str()?;
                    m.shape(inner)?["enum"].as_array()
                })
            {
                out.push_str("          Possible values:\n\n");
                for v in values.iter().filter_map(Value::as_str) {
                    let _ = writeln!(out, "          o {v}\n");
                }
            }
            if let Some(syntax) = shorthand_syntax(m, member.shape) {
                let _ = writeln!(out, "       Shorthand Syntax:\n\n          {syntax}\n");
            }
        }
        None => {
            let kind = match o.spec.arity {
                crate::args::Arity::Flag => "boolean",
                _ if o.spec.integer => "integer",
                _ => "string",
            };
            let _ = writeln!(out, "       {} ({kind})", o.spec.name);
            wrap(out, &o.help, 10, 79);
            out.push('\n');
        }
    }
}

/// `tether help`: the verbs.
pub fn top(verbs: &[String]) -> String {
    let mut out = String::from(
        "NAME\n       tether - the Tether coordinator and its operator CLI\n\n\
         DESCRIPTION\n       Every aws ssm verb the coordinator serves, with the aws CLI's flags,\n       \
         output formats and errors, and Tether's own verbs. `tether VERB help`\n       \
         shows a verb's options. `tether serve --help`: the coordinator.\n\n\
         SYNOPSIS\n          tether [options] <command> [parameters]\n\nAVAILABLE COMMANDS\n",
    );
    for v in verbs {
        let _ = writeln!(out, "       o {v}\n");
    }
    out.push_str("GLOBAL OPTIONS\n");
    for (flag, _, help) in GLOBAL_HELP {
        let _ = writeln!(out, "       {flag}");
        wrap(&mut out, help, 10, 79);
        out.push('\n');
    }
    out
}

/// `tether wait help` and `tether wait WAITER help`.
pub fn waiter(name: Option<&str>) -> String {
    let m = model::model();
    match name.and_then(|n| m.waiter(n)) {
        None => {
            let mut out = String::from(
                "NAME\n       wait -\n\nDESCRIPTION\n       Wait until a particular condition is satisfied. Each subcommand polls\n       an API until the listed requirement is met.\n\nAVAILABLE WAITERS\n",
            );
            for w in m.waiter_names() {
                let _ = writeln!(out, "       o {}\n", model::cli_name(w));
            }
            out
        }
        Some(w) => {
            let mut out = format!(
                "NAME\n       {} -\n\nDESCRIPTION\n       Wait until the {} answer satisfies the waiter. It polls every {} seconds\n       until a successful state has been reached. This will exit with a return\n       code of 255 after {} failed checks.\n\n",
                model::cli_name(w.name),
                w.operation,
                w.delay,
                w.max_attempts
            );
            let op = operation(w.operation);
            if let Some(i) = op.find("SYNOPSIS") {
                out.push_str(&op[i..]);
            }
            out
        }
    }
}

/// One verb for completion: its name, its options, and the enum values of
/// the options that have them.
type VerbCompletion = (String, Vec<String>, Vec<(String, Vec<String>)>);

/// Every verb with its options and each option's enum values, for completion.
fn completion_table(verbs: &[String]) -> Vec<VerbCompletion> {
    let m = model::model();
    verbs
        .iter()
        .map(|verb| {
            let Some(op) = crate::operation_of(verb) else {
                return (verb.clone(), Vec::new(), Vec::new());
            };
            let opts = params::options(op, false);
            let names: Vec<String> = opts.iter().map(|o| o.spec.name.clone()).collect();
            let mut enums = Vec::new();
            for o in &opts {
                let Some(member) = &o.member else { continue };
                let shape = m.shape(member.shape);
                let values = shape.and_then(|s| s["enum"].as_array()).or_else(|| {
                    let inner = shape?["member"]["shape"].as_str()?;
                    m.shape(inner)?["enum"].as_array()
                });
                if let Some(values) = values {
                    enums.push((
                        o.spec.name.clone(),
                        values
                            .iter()
                            .filter_map(Value::as_str)
                            .map(str::to_owned)
                            .collect(),
                    ));
                }
            }
            (verb.clone(), names, enums)
        })
        .collect()
}

/// A bash completion script (also loaded by zsh through `bashcompinit`).
pub fn bash(verbs: &[String]) -> String {
    let globals: Vec<&str> = GLOBAL_HELP.iter().map(|(f, _, _)| *f).collect();
    let mut out = String::from(
        "# tether completion for bash (and zsh through bashcompinit), generated by `tether completion bash`.\n\
         _tether() {\n    local cur prev verb i\n    cur=\"${COMP_WORDS[COMP_CWORD]}\"\n    prev=\"${COMP_WORDS[COMP_CWORD-1]}\"\n    verb=\"\"\n    \
         for ((i = 1; i < COMP_CWORD; i++)); do\n        case \"${COMP_WORDS[i]}\" in\n            -*) ;;\n            *) verb=\"${COMP_WORDS[i]}\"; break ;;\n        esac\n    done\n    \
         case \"$prev\" in\n        --output) COMPREPLY=($(compgen -W \"json text table\" -- \"$cur\")); return ;;\n        \
         --color) COMPREPLY=($(compgen -W \"on off auto\" -- \"$cur\")); return ;;\n        \
         --generate-cli-skeleton) COMPREPLY=($(compgen -W \"input output yaml-input\" -- \"$cur\")); return ;;\n    esac\n",
    );
    let table = completion_table(verbs);
    out.push_str("    case \"$verb\" in\n");
    for (verb, opts, enums) in &table {
        let _ = writeln!(out, "        {verb})");
        if !enums.is_empty() {
            out.push_str("            case \"$prev\" in\n");
            for (flag, values) in enums {
                let _ = writeln!(
                    out,
                    "                {flag}) COMPREPLY=($(compgen -W \"{}\" -- \"$cur\")); return ;;",
                    values.join(" ")
                );
            }
            out.push_str("            esac\n");
        }
        let _ = writeln!(
            out,
            "            COMPREPLY=($(compgen -W \"{} help\" -- \"$cur\")); return ;;",
            opts.join(" ")
        );
    }
    let waiters: Vec<String> = model::model()
        .waiter_names()
        .iter()
        .map(|w| model::cli_name(w))
        .collect();
    let _ = writeln!(
        out,
        "        wait) COMPREPLY=($(compgen -W \"{}\" -- \"$cur\")); return ;;\n        \
         completion) COMPREPLY=($(compgen -W \"bash zsh\" -- \"$cur\")); return ;;\n    esac\n    \
         COMPREPLY=($(compgen -W \"{} {} wait completion help serve\" -- \"$cur\"))\n}}\ncomplete -F _tether tether",
        waiters.join(" "),
        verbs.join(" "),
        globals.join(" ")
    );
    out
}

/// A zsh completion script: the bash one through `bashcompinit`, as the
/// aws CLI's zsh completion is.
pub fn zsh(verbs: &[String]) -> String {
    format!(
        "#compdef tether\n# tether completion for zsh, generated by `tether completion zsh`.\n\
         autoload -U +X bashcompinit && bashcompinit\n{}",
        bash(verbs)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_and_completion_come_from_the_model() {
        let h = operation("SendCommand");
        assert!(
            h.starts_with("NAME\n       send-command -\n\nDESCRIPTION\n       Runs commands"),
            "{h}"
        );
        assert!(h.contains("          --document-name <value>\n"), "{h}");
        assert!(h.contains("          [--instance-ids <value>]\n"), "{h}");
        assert!(h.contains("       --document-hash-type (string)"), "{h}");
        assert!(h.contains("          o Sha256\n"), "{h}");
        assert!(
            h.contains(
                "       Shorthand Syntax:\n\n          Key=string,Values=string,string ...\n"
            ),
            "{h}"
        );
        let g = operation("GetCommandInvocation");
        assert!(
            g.contains("       [--full-output]\n") || g.contains("          [--full-output]\n"),
            "{g}"
        );
        assert!(
            g.contains("       ResolvedDocumentVersion -> (string)"),
            "{g}"
        );
        let w = waiter(Some("CommandExecuted"));
        assert!(
            w.contains("every 5 seconds") && w.contains("after 20 failed checks"),
            "{w}"
        );
        let verbs = vec!["send-command".to_owned(), "list-commands".to_owned()];
        let b = bash(&verbs);
        assert!(
            b.contains("--document-hash-type) COMPREPLY=($(compgen -W \"Sha256 Sha1\""),
            "{b}"
        );
        assert!(
            b.contains("wait) COMPREPLY=($(compgen -W \"command-executed\""),
            "{b}"
        );
        assert!(b.ends_with("complete -F _tether tether\n"));
        assert!(zsh(&verbs).starts_with("#compdef tether\n"));
        assert_eq!(
            plain("<p>One <i>two</i>.</p><ul><li><p>a</p></li></ul>", 2),
            "  One two.\n\n  * a\n\n"
        );
    }
}
