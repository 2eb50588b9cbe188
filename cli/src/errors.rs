//! What the CLI refuses or fails with, printed on stderr and exited as the
//! aws CLI v2 prints and exits (its `errorhandler.py`): a blank line, the
//! message, a newline; exit 252 for bad parameters or syntax, 253 for
//! configuration, 254 for an error the service answered, 255 for anything
//! else. Nothing is ever printed on stdout on error.

use crate::args::ArgError;

/// Exit status: bad parameters or syntax (`PARAM_VALIDATION_ERROR_RC`).
pub const EXIT_PARAMETER: u8 = 252;
/// Exit status: configuration (`CONFIGURATION_ERROR_RC`).
pub const EXIT_CONFIGURATION: u8 = 253;
/// Exit status: the service answered with an error (`CLIENT_ERROR_RC`).
pub const EXIT_SERVICE: u8 = 254;
/// Exit status: anything else (`GENERAL_ERROR_RC`).
pub const EXIT_GENERAL: u8 = 255;

/// The usage text argparse errors show (awscli's `USAGE`, for `tether`).
pub const USAGE: &str = "tether [options] <command> [<subcommand>] [parameters]\n\
To see help text, you can run:\n\
\n  tether help\n  tether <command> help\n  tether <command> <subcommand> help\n";

/// A failure of one CLI run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CliError {
    /// The words could not be parsed (argparse, or unknown options).
    #[error("{0}")]
    Args(#[from] ArgError),
    /// A flag's value could not be read: `Error parsing parameter '--x': …`.
    #[error("Error parsing parameter '{flag}': {message}")]
    Parameter { flag: String, message: String },
    /// botocore's client-side checks: `Parameter validation failed:` and one
    /// line per problem.
    #[error("Parameter validation failed:\n{0}")]
    Validation(String),
    /// `--query` is not a JMESPath expression.
    #[error("Bad value for --query {query}: {message}")]
    Query { query: String, message: String },
    /// The coordinator answered with an error.
    #[error("An error occurred ({kind}) when calling the {operation} operation: {message}")]
    Service {
        kind: String,
        operation: String,
        message: String,
    },
    /// The profile, operator.json or another setting is missing or wrong.
    #[error("{message}")]
    Configuration { message: String, exit: u8 },
    /// Anything else: the coordinator could not be reached, a waiter failed.
    #[error("{0}")]
    General(String),
    /// `get-command-invocation --follow` ended on an invocation that did not
    /// succeed: exit 1, as a script expects of a failed step.
    #[error("{0}")]
    Followed(String),
}

impl CliError {
    /// A configuration problem (exit 253).
    pub fn config(message: impl Into<String>) -> Self {
        CliError::Configuration {
            message: message.into(),
            exit: EXIT_CONFIGURATION,
        }
    }

    pub fn parameter(flag: &str, message: impl std::fmt::Display) -> Self {
        CliError::Parameter {
            flag: flag.to_owned(),
            message: message.to_string(),
        }
    }

    /// The exit status the aws CLI v2 gives this failure.
    pub fn exit(&self) -> u8 {
        match self {
            CliError::Args(_)
            | CliError::Parameter { .. }
            | CliError::Validation(_)
            | CliError::Query { .. } => EXIT_PARAMETER,
            CliError::Service { .. } => EXIT_SERVICE,
            CliError::Configuration { exit, .. } => *exit,
            CliError::General(_) => EXIT_GENERAL,
            CliError::Followed(_) => 1,
        }
    }

    /// What goes to stderr, byte for byte as the aws CLI v2 writes it.
    pub fn stderr(&self) -> String {
        match self {
            CliError::Args(ArgError::Parse(message)) => {
                format!("\nusage: {USAGE}\ntether: error: {message}\n\n")
            }
            CliError::Args(unknown @ ArgError::Unknown(_)) => {
                format!("\nusage: {USAGE}\n{unknown}\n\n")
            }
            CliError::Followed(message) => format!("{message}\n"),
            other => format!("\n{other}\n"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_print_and_exit_as_aws_cli_v2() {
        let usage = "usage: tether [options] <command> [<subcommand>] [parameters]\nTo see help text, you can run:\n\n  tether help\n  tether <command> help\n  tether <command> <subcommand> help\n";
        let cases = [
            (
                CliError::Args(ArgError::Parse(
                    "the following arguments are required: --document-name".into(),
                )),
                format!("\n{usage}\ntether: error: the following arguments are required: --document-name\n\n"),
                252,
            ),
            (
                CliError::Args(ArgError::Unknown(vec!["--bogus".into()])),
                format!("\n{usage}\nUnknown options: --bogus\n\n"),
                252,
            ),
            (
                CliError::Validation(
                    "Invalid value for parameter MaxResults, value: 0, valid min value: 1".into(),
                ),
                "\nParameter validation failed:\nInvalid value for parameter MaxResults, value: 0, valid min value: 1\n".into(),
                252,
            ),
            (
                CliError::Service {
                    kind: "InvalidCommandId".into(),
                    operation: "ListCommands".into(),
                    message: "no".into(),
                },
                "\nAn error occurred (InvalidCommandId) when calling the ListCommands operation: no\n".into(),
                254,
            ),
            (CliError::config("no operator.json"), "\nno operator.json\n".into(), 253),
            (
                CliError::General("Waiter CommandExecuted failed: Max attempts exceeded".into()),
                "\nWaiter CommandExecuted failed: Max attempts exceeded\n".into(),
                255,
            ),
        ];
        for (err, text, exit) in cases {
            assert_eq!(err.stderr(), text);
            assert_eq!(err.exit(), exit, "{err:?}");
        }
    }
}
