//! `tether wait WAITER`: botocore's SSM waiters (`waiters-2.json`, embedded
//! in the model), with botocore's semantics: call the waiter's operation,
//! let the first acceptor that matches decide (success: exit 0, silently;
//! failure: stop; retry: call again after `delay` seconds), at most
//! `maxAttempts` calls, and fail with botocore's words
//! (`Waiter CommandExecuted failed: Max attempts exceeded`).
//!
//! This module decides; the calls are made through the closure it is given.

use serde_json::Value;
use tether_ssm::model::{AcceptorState, Matcher, Waiter};

use crate::errors::CliError;
use crate::query::Query;

/// The aws CLI's name of a waiter: `CommandExecuted` → `command-executed`.
pub fn cli_name(waiter: &str) -> String {
    tether_ssm::model::cli_name(waiter)
}

/// What one call answered: the response, or the service's error code and message.
pub type Answer = Result<Value, (String, String)>;

/// Which acceptor matches `answer`, if one does: (state, explanation).
pub fn decide(
    waiter: &Waiter,
    answer: &Answer,
) -> Result<Option<(AcceptorState, String)>, CliError> {
    for a in &waiter.acceptors {
        let matched = match (&a.matcher, answer) {
            (Matcher::Error(code), Err((kind, _))) => kind == code,
            (Matcher::Path(arg, expected), Ok(v)) => &Query::compile(arg)?.search(v)? == *expected,
            (Matcher::PathAll(arg, expected), Ok(v)) => match Query::compile(arg)?.search(v)? {
                Value::Array(items) => !items.is_empty() && items.iter().all(|i| i == *expected),
                _ => false,
            },
            (Matcher::PathAny(arg, expected), Ok(v)) => match Query::compile(arg)?.search(v)? {
                Value::Array(items) => items.iter().any(|i| i == *expected),
                _ => false,
            },
            // Every answer that is not an error is a 200.
            (Matcher::Status(code), Ok(_)) => *code == 200,
            _ => false,
        };
        if matched {
            return Ok(Some((a.state, explanation(&a.matcher))));
        }
    }
    Ok(None)
}

/// botocore's `AcceptorConfig.explanation`.
fn explanation(m: &Matcher) -> String {
    let shown = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => crate::output::py_str(other),
    };
    match m {
        Matcher::Path(arg, expected) => format!(
            "For expression \"{arg}\" we matched expected path: \"{}\"",
            shown(expected)
        ),
        Matcher::PathAll(arg, expected) => format!(
            "For expression \"{arg}\" all members matched excepted path: \"{}\"",
            shown(expected)
        ),
        Matcher::PathAny(arg, expected) => format!(
            "For expression \"{arg}\" we matched expected path: \"{}\" at least once",
            shown(expected)
        ),
        Matcher::Status(code) => format!("Matched expected HTTP status code: {code}"),
        Matcher::Error(code) => format!("Matched expected service error code: {code}"),
    }
}

/// Runs `waiter`: `call` makes one call of its operation. Calls until an
/// acceptor says success (Ok) or failure, or `max_attempts` calls were made.
pub async fn wait<F, Fut>(waiter: &Waiter, mut call: F) -> Result<(), CliError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Answer, CliError>>,
{
    let failed =
        |reason: String| CliError::General(format!("Waiter {} failed: {reason}", waiter.name));
    let mut last_matched: Option<String> = None;
    let mut attempts = 0;
    loop {
        attempts += 1;
        let answer = call().await?;
        match decide(waiter, &answer)? {
            Some((AcceptorState::Success, _)) => return Ok(()),
            Some((AcceptorState::Failure, why)) => {
                return Err(failed(format!(
                    "Waiter encountered a terminal failure state: {why}"
                )));
            }
            Some((AcceptorState::Retry, why)) => last_matched = Some(why),
            None => {
                if let Err((kind, message)) = &answer {
                    return Err(failed(format!("An error occurred ({kind}): {message}")));
                }
            }
        }
        if attempts >= waiter.max_attempts {
            return Err(failed(match &last_matched {
                None => "Max attempts exceeded".to_owned(),
                Some(why) => format!("Max attempts exceeded. Previously accepted state: {why}"),
            }));
        }
        tokio::time::sleep(std::time::Duration::from_secs(waiter.delay)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn command_executed() -> Waiter {
        tether_ssm::model::model()
            .waiter("CommandExecuted")
            .expect("botocore's SSM waiter")
    }

    #[test]
    fn acceptors_decide_as_botocores() {
        let w = command_executed();
        assert_eq!(cli_name(w.name), "command-executed");
        let status = |s: &str| -> Answer { Ok(json!({"Status": s})) };
        for (answer, want) in [
            (status("Success"), Some(AcceptorState::Success)),
            (status("InProgress"), Some(AcceptorState::Retry)),
            (status("Failed"), Some(AcceptorState::Failure)),
            (status("Cancelling"), Some(AcceptorState::Failure)),
            (
                Err(("InvocationDoesNotExist".into(), "not yet".into())),
                Some(AcceptorState::Retry),
            ),
            (Err(("InvalidCommandId".into(), "no".into())), None),
        ] {
            let got = decide(&w, &answer).unwrap().map(|(s, _)| s);
            assert_eq!(got, want, "{answer:?}");
        }
        let (_, why) = decide(&w, &status("Failed")).unwrap().unwrap();
        assert_eq!(
            why,
            r#"For expression "Status" we matched expected path: "Failed""#
        );
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_ends_as_botocore_ends_it() {
        let mut w = command_executed();
        // Fails on a terminal failure state.
        let err = wait(&w, || async { Ok(Ok(json!({"Status": "Failed"}))) })
            .await
            .unwrap_err();
        assert_eq!(
            err.stderr(),
            "\nWaiter CommandExecuted failed: Waiter encountered a terminal failure state: For expression \"Status\" we matched expected path: \"Failed\"\n"
        );
        assert_eq!(err.exit(), 255);
        // An error no acceptor expects ends it at once.
        let err = wait(&w, || async {
            Ok(Err(("InvalidCommandId".to_owned(), "bad".to_owned())))
        })
        .await
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "Waiter CommandExecuted failed: An error occurred (InvalidCommandId): bad"
        );
        // Retries until the attempts run out, `delay` apart.
        w.max_attempts = 3;
        let calls = std::sync::atomic::AtomicU64::new(0);
        let start = tokio::time::Instant::now();
        let err = wait(&w, || {
            calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async { Ok(Ok(json!({"Status": "InProgress"}))) }
        })
        .await
        .unwrap_err();
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 3);
        assert_eq!(start.elapsed(), std::time::Duration::from_secs(10));
        assert_eq!(
            err.to_string(),
            "Waiter CommandExecuted failed: Max attempts exceeded. Previously accepted state: For expression \"Status\" we matched expected path: \"InProgress\""
        );
        // Success after retries.
        let n = std::sync::atomic::AtomicU64::new(0);
        wait(&w, || {
            let k = n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async move {
                Ok(Ok(
                    json!({"Status": if k < 2 { "Pending" } else { "Success" }}),
                ))
            }
        })
        .await
        .unwrap();
    }
}
