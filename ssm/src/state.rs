//! The invocation and command state machines: pure functions, no IO.
//!
//! Statuses and their details follow the SSM API (`CommandInvocationStatus`,
//! `CommandStatus`, `StatusDetails`); this module is the one place that knows
//! how an invocation's detail maps to its status and how invocations add up to
//! their command's status and counts.

use crate::rate::Rate;

/// An invocation's `StatusDetails`: the precise state, from which `Status` follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detail {
    Pending,
    InProgress,
    Delayed,
    Success,
    DeliveryTimedOut,
    ExecutionTimedOut,
    Failed,
    Cancelled,
    Undeliverable,
    Terminated,
    /// CancelCommand reached a delivered invocation; its agent has yet to stop it.
    Cancelling,
}

impl Detail {
    pub const ALL: [Detail; 11] = [
        Detail::Pending,
        Detail::InProgress,
        Detail::Delayed,
        Detail::Success,
        Detail::DeliveryTimedOut,
        Detail::ExecutionTimedOut,
        Detail::Failed,
        Detail::Cancelled,
        Detail::Undeliverable,
        Detail::Terminated,
        Detail::Cancelling,
    ];

    /// The `StatusDetails` string.
    pub fn as_str(self) -> &'static str {
        match self {
            Detail::Pending => "Pending",
            Detail::InProgress => "In Progress",
            Detail::Delayed => "Delayed",
            Detail::Success => "Success",
            Detail::DeliveryTimedOut => "Delivery Timed Out",
            Detail::ExecutionTimedOut => "Execution Timed Out",
            Detail::Failed => "Failed",
            Detail::Cancelled => "Cancelled",
            Detail::Undeliverable => "Undeliverable",
            Detail::Terminated => "Terminated",
            Detail::Cancelling => "Cancelling",
        }
    }

    pub fn parse(s: &str) -> Option<Detail> {
        Detail::ALL.into_iter().find(|d| d.as_str() == s)
    }

    /// The invocation `Status` this detail belongs to.
    pub fn status(self) -> &'static str {
        match self {
            Detail::Pending => "Pending",
            Detail::InProgress => "InProgress",
            Detail::Delayed => "Delayed",
            Detail::Success => "Success",
            Detail::DeliveryTimedOut | Detail::ExecutionTimedOut => "TimedOut",
            Detail::Failed | Detail::Undeliverable | Detail::Terminated => "Failed",
            Detail::Cancelled => "Cancelled",
            Detail::Cancelling => "Cancelling",
        }
    }

    /// Whether nothing more can happen to an invocation in this state.
    pub fn is_terminal(self) -> bool {
        !matches!(
            self,
            Detail::Pending | Detail::InProgress | Detail::Delayed | Detail::Cancelling
        )
    }

    /// Whether this outcome counts against the command's MaxErrors.
    pub fn is_error(self) -> bool {
        matches!(self, Detail::Failed | Detail::ExecutionTimedOut)
    }
}

/// What a command's invocations add up to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandSummary {
    pub status: &'static str,
    pub status_details: &'static str,
    pub target_count: i64,
    pub completed_count: i64,
    pub error_count: i64,
    pub delivery_timed_out_count: i64,
}

/// How many errors MaxErrors allows among `targets` invocations.
pub fn max_errors_allowed(max_errors: Rate, targets: i64) -> i64 {
    let allowed = max_errors.errors_allowed(u64::try_from(targets).unwrap_or(0));
    i64::try_from(allowed).unwrap_or(i64::MAX)
}

/// The command's status and counts from its invocations' details.
pub fn summarize(details: &[Detail], max_errors: Rate) -> CommandSummary {
    let mut counts: Vec<(Detail, i64)> = Vec::new();
    for d in details {
        match counts.iter_mut().find(|(x, _)| x == d) {
            Some((_, n)) => *n += 1,
            None => counts.push((*d, 1)),
        }
    }
    summarize_counts(&counts, max_errors)
}

/// [`summarize`] from how many invocations are in each state.
pub fn summarize_counts(counts: &[(Detail, i64)], max_errors: Rate) -> CommandSummary {
    let n: i64 = counts.iter().map(|(_, k)| k).sum();
    let count = |f: &dyn Fn(Detail) -> bool| -> i64 {
        counts.iter().filter(|(d, _)| f(*d)).map(|(_, k)| k).sum()
    };
    let completed = count(&|d| d.is_terminal());
    let errors = count(&|d| d.is_error());
    let delivery_timed_out = count(&|d| d == Detail::DeliveryTimedOut);
    let undelivered = count(&|d| matches!(d, Detail::DeliveryTimedOut | Detail::Undeliverable));
    let (status, status_details) = if completed < n {
        if completed == 0 && count(&|d| d == Detail::Pending) == n {
            ("Pending", "Pending")
        } else if count(&|d| d == Detail::Cancelling) > 0 {
            ("Cancelling", "Cancelling")
        } else {
            ("InProgress", "In Progress")
        }
    } else if count(&|d| d == Detail::Cancelled) > 0 {
        ("Cancelled", "Cancelled")
    } else if errors > max_errors_allowed(max_errors, n) {
        if count(&|d| d == Detail::Failed) > 0 {
            ("Failed", "Failed")
        } else {
            ("TimedOut", "Execution Timed Out")
        }
    } else if n > 0 && delivery_timed_out == n {
        ("TimedOut", "Delivery Timed Out")
    } else if undelivered > 0 || errors > 0 {
        // Everything ran that could, within the error budget, but not all succeeded.
        ("Success", "Incomplete")
    } else {
        ("Success", "Success")
    };
    CommandSummary {
        status,
        status_details,
        target_count: n,
        completed_count: completed,
        error_count: errors,
        delivery_timed_out_count: delivery_timed_out,
    }
}

#[cfg(test)]
mod tests {
    use super::Detail::*;
    use super::*;

    #[test]
    fn details_round_trip_and_map_to_statuses() {
        for d in Detail::ALL {
            assert_eq!(Detail::parse(d.as_str()), Some(d));
        }
        let table = [
            (Pending, "Pending", false),
            (InProgress, "InProgress", false),
            (Success, "Success", true),
            (DeliveryTimedOut, "TimedOut", true),
            (ExecutionTimedOut, "TimedOut", true),
            (Failed, "Failed", true),
            (Undeliverable, "Failed", true),
            (Terminated, "Failed", true),
            (Cancelled, "Cancelled", true),
            (Cancelling, "Cancelling", false),
        ];
        for (d, status, terminal) in table {
            assert_eq!((d.status(), d.is_terminal()), (status, terminal), "{d:?}");
        }
    }

    /// Invocation details, MaxErrors, expected (Status, StatusDetails), expected counts.
    type Case<'a> = (&'a [Detail], &'a str, (&'a str, &'a str), [i64; 4]);

    #[test]
    fn command_summary_table() {
        let table: &[Case] = &[
            (
                &[Pending, Pending],
                "0",
                ("Pending", "Pending"),
                [2, 0, 0, 0],
            ),
            (
                &[InProgress, Pending],
                "0",
                ("InProgress", "In Progress"),
                [2, 0, 0, 0],
            ),
            (
                &[Success, Pending],
                "0",
                ("InProgress", "In Progress"),
                [2, 1, 0, 0],
            ),
            (
                &[Success, Success],
                "0",
                ("Success", "Success"),
                [2, 2, 0, 0],
            ),
            (&[Success, Failed], "0", ("Failed", "Failed"), [2, 2, 1, 0]),
            (
                &[Success, Failed],
                "1",
                ("Success", "Incomplete"),
                [2, 2, 1, 0],
            ),
            (
                &[Success, Failed],
                "50%",
                ("Success", "Incomplete"),
                [2, 2, 1, 0],
            ),
            (
                &[ExecutionTimedOut],
                "0",
                ("TimedOut", "Execution Timed Out"),
                [1, 1, 1, 0],
            ),
            (
                &[DeliveryTimedOut],
                "0",
                ("TimedOut", "Delivery Timed Out"),
                [1, 1, 0, 1],
            ),
            (
                &[DeliveryTimedOut, Success],
                "0",
                ("Success", "Incomplete"),
                [2, 2, 0, 1],
            ),
            (
                &[Cancelling, Cancelled],
                "0",
                ("Cancelling", "Cancelling"),
                [2, 1, 0, 0],
            ),
            (
                &[Cancelled, Success],
                "0",
                ("Cancelled", "Cancelled"),
                [2, 2, 0, 0],
            ),
        ];
        for (details, max_errors, (status, status_details), counts) in table {
            let s = summarize(details, max_errors.parse().unwrap());
            assert_eq!(
                (s.status, s.status_details),
                (*status, *status_details),
                "{details:?}"
            );
            assert_eq!(
                [
                    s.target_count,
                    s.completed_count,
                    s.error_count,
                    s.delivery_timed_out_count
                ],
                *counts,
                "{details:?}"
            );
        }
    }
}
