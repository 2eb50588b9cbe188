//! What a command's steps add up to: which steps run and which are skipped
//! or never started, what status each gets, the invocation's overall status
//! and response code, and whether the node reboots once the result is
//! reported. The exit codes with a meaning beyond success and failure are
//! amazon-ssm-agent's: 168 (success, skip the remaining steps), 169 (failure,
//! skip the remaining steps), 194 (success, reboot after reporting).
//!
//! Pure: plain types and functions, no files, processes or clock. `run` asks
//! [`Invocation::next_step`] before each step, tells [`Invocation::ran`] how
//! each step it ran ended, and builds the report from [`Invocation::outcome`].

/// The step succeeded; the remaining steps are skipped.
pub const EXIT_SUCCESS_AND_SKIP: i32 = 168;
/// The step failed; the remaining steps are skipped.
pub const EXIT_FAILURE_AND_SKIP: i32 = 169;
/// The step succeeded; the node reboots once the result is reported.
pub const EXIT_SUCCESS_AND_REBOOT: i32 = 194;

/// Why a step is skipped after an earlier step exited 168 or 169 (its output).
pub const SKIPPED_AFTER_EXIT_CODE: &str =
    "Step execution skipped: an earlier step exited 168 or 169";

/// A step's status, or an invocation's, as reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Success,
    Failed,
    TimedOut,
    Cancelled,
}

impl Status {
    /// How much this status outweighs the others in an invocation's overall
    /// status: a cancellation over a timeout over a failure over success.
    fn weight(self) -> u8 {
        match self {
            Status::Success => 0,
            Status::Failed => 1,
            Status::TimedOut => 2,
            Status::Cancelled => 3,
        }
    }
}

/// The overall status of steps with `statuses`: the heaviest among them
/// (Cancelled, then TimedOut, then Failed), Success when there is none.
pub fn overall(statuses: impl IntoIterator<Item = Status>) -> Status {
    statuses
        .into_iter()
        .max_by_key(|s| s.weight())
        .filter(|s| *s != Status::Success)
        .unwrap_or(Status::Success)
}

/// How a step that ran ended, as its supervisor recorded it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ended {
    pub exit_code: i32,
    pub timed_out: bool,
    pub cancelled: bool,
    /// Something went wrong around the step that its exit code does not
    /// show (its output could not be recorded, e.g. on a full disk): it
    /// failed, whatever the code.
    pub error: bool,
}

/// The status of a step that ran: cancelled, timed out, or by its exit code.
pub fn step_status(ended: Ended) -> Status {
    if ended.cancelled {
        Status::Cancelled
    } else if ended.timed_out {
        Status::TimedOut
    } else {
        match ended.exit_code {
            _ if ended.error => Status::Failed,
            0 | EXIT_SUCCESS_AND_SKIP | EXIT_SUCCESS_AND_REBOOT => Status::Success,
            _ => Status::Failed,
        }
    }
}

/// What becomes of the next step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Run it (or pick up the supervisor already running it); report how it
    /// ended with [`Invocation::ran`].
    Run,
    /// Not run, reported Success with this reason as its output.
    Skip(String),
    /// Never started: the command was cancelled first; reported Cancelled.
    Cancelled,
}

/// What the steps added up to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub status: Status,
    /// The exit code of the last step that ran; 0 when none ran.
    pub response_code: i32,
    /// Whether a step asked for a reboot (exit code 194, neither cancelled
    /// nor timed out): it follows once the result is reported.
    pub reboot: bool,
}

/// A command's steps folded in order: [`Invocation::next_step`] for each,
/// and [`Invocation::ran`] for each it said to run.
#[derive(Clone, Debug)]
pub struct Invocation {
    status: Status,
    skip_rest: bool,
    reboot: bool,
    last_code: i32,
}

impl Default for Invocation {
    fn default() -> Self {
        Invocation {
            status: Status::Success,
            skip_rest: false,
            reboot: false,
            last_code: 0,
        }
    }
}

impl Invocation {
    /// What becomes of the next step, given whether the command is cancelled
    /// by now, whether this step was started before (a supervisor was set
    /// up for it, so it is picked up, not abandoned) and the reason its
    /// precondition skips it, if it does. A step not started is never started
    /// once the command is cancelled; otherwise a step after one that exited
    /// 168 or 169, or whose precondition failed, is skipped.
    pub fn next_step(
        &mut self,
        cancelled: bool,
        started: bool,
        precondition: Option<&str>,
    ) -> Next {
        if cancelled && !started {
            self.fold(Status::Cancelled);
            return Next::Cancelled;
        }
        if self.skip_rest || precondition.is_some() {
            self.fold(Status::Success);
            let why = precondition.unwrap_or(SKIPPED_AFTER_EXIT_CODE);
            return Next::Skip(why.to_string());
        }
        Next::Run
    }

    /// Records how a step that ran ended; returns its status.
    pub fn ran(&mut self, ended: Ended) -> Status {
        let status = step_status(ended);
        self.last_code = ended.exit_code;
        if matches!(
            ended.exit_code,
            EXIT_SUCCESS_AND_SKIP | EXIT_FAILURE_AND_SKIP
        ) {
            self.skip_rest = true;
        }
        if status == Status::Success && ended.exit_code == EXIT_SUCCESS_AND_REBOOT {
            self.reboot = true;
        }
        self.fold(status);
        status
    }

    /// The steps so far, added up.
    pub fn outcome(&self) -> Outcome {
        Outcome {
            status: self.status,
            response_code: self.last_code,
            reboot: self.reboot,
        }
    }

    fn fold(&mut self, step: Status) {
        self.status = overall([self.status, step]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A step that exited 0 but whose output could not be recorded (a full
    /// disk) failed; its exit code stays the response code.
    #[test]
    fn an_error_around_a_step_fails_it_whatever_its_code() {
        let mut inv = Invocation::default();
        let ended = Ended {
            exit_code: 0,
            timed_out: false,
            cancelled: false,
            error: true,
        };
        assert_eq!(step_status(ended), Status::Failed);
        assert_eq!(inv.ran(ended), Status::Failed);
        assert_eq!(inv.outcome().status, Status::Failed);
        assert_eq!(inv.outcome().response_code, 0);
    }

    /// One step of a table row: the situation before it, and how it ends if run.
    #[derive(Clone, Copy)]
    struct StepCase {
        /// The command is cancelled by the time this step comes up.
        cancelled: bool,
        /// Its supervisor was set up before (an agent restart, a cancel mid-step).
        started: bool,
        /// Its precondition skips it.
        precondition: Option<&'static str>,
        /// How it ends if it runs.
        ends: Ended,
    }

    const fn exits(exit_code: i32) -> StepCase {
        StepCase {
            cancelled: false,
            started: false,
            precondition: None,
            ends: Ended {
                exit_code,
                timed_out: false,
                cancelled: false,
                error: false,
            },
        }
    }

    const fn times_out() -> StepCase {
        StepCase {
            ends: Ended {
                exit_code: 137,
                timed_out: true,
                cancelled: false,
                error: false,
            },
            ..exits(0)
        }
    }

    /// Killed by a cancellation while it ran.
    const fn killed(exit_code: i32) -> StepCase {
        StepCase {
            cancelled: true,
            started: true,
            ends: Ended {
                exit_code,
                timed_out: false,
                cancelled: true,
                error: false,
            },
            ..exits(0)
        }
    }

    /// Comes up after the command was cancelled.
    const fn after_cancel(step: StepCase) -> StepCase {
        StepCase {
            cancelled: true,
            ..step
        }
    }

    const fn unmet(step: StepCase) -> StepCase {
        StepCase {
            precondition: Some("precondition not met"),
            ..step
        }
    }

    /// What a step got: R = ran with that status, S = skipped, C = never started.
    #[derive(Debug, PartialEq, Eq)]
    enum Got {
        R(Status),
        S(&'static str),
        C,
    }
    use Got::{C, R, S};
    use Status::{Cancelled, Failed, Success, TimedOut};

    const AFTER: &str = SKIPPED_AFTER_EXIT_CODE;
    const PRE: &str = "precondition not met";

    fn fold(steps: &[StepCase]) -> (Vec<Got>, Outcome) {
        let mut inv = Invocation::default();
        let got = steps
            .iter()
            .map(
                |s| match inv.next_step(s.cancelled, s.started, s.precondition) {
                    Next::Run => R(inv.ran(s.ends)),
                    Next::Skip(why) if why == AFTER => S(AFTER),
                    Next::Skip(why) if why == PRE => S(PRE),
                    Next::Skip(why) => panic!("unexpected reason {why:?}"),
                    Next::Cancelled => C,
                },
            )
            .collect();
        (got, inv.outcome())
    }

    #[test]
    fn every_rule_of_step_outcomes() {
        let done = |status, response_code, reboot| Outcome {
            status,
            response_code,
            reboot,
        };
        #[rustfmt::skip]
        let table: Vec<(&str, Vec<StepCase>, Vec<Got>, Outcome)> = vec![
            ("no steps", vec![], vec![], done(Success, 0, false)),
            ("all succeed", vec![exits(0), exits(0), exits(0)],
                vec![R(Success), R(Success), R(Success)], done(Success, 0, false)),
            ("a failure in the middle: the rest still run, the code is the last step's",
                vec![exits(0), exits(3), exits(0)],
                vec![R(Success), R(Failed), R(Success)], done(Failed, 0, false)),
            ("the last step fails", vec![exits(0), exits(2)],
                vec![R(Success), R(Failed)], done(Failed, 2, false)),
            ("168: success, the rest skipped", vec![exits(0), exits(168), exits(1), exits(0)],
                vec![R(Success), R(Success), S(AFTER), S(AFTER)], done(Success, 168, false)),
            ("169: failure, the rest skipped", vec![exits(169), exits(0)],
                vec![R(Failed), S(AFTER)], done(Failed, 169, false)),
            ("194: success, reboot after reporting", vec![exits(194), exits(0)],
                vec![R(Success), R(Success)], done(Success, 0, true)),
            ("194 alone", vec![exits(194)], vec![R(Success)], done(Success, 194, true)),
            ("194 then a failure: failed, and still a reboot", vec![exits(194), exits(1)],
                vec![R(Success), R(Failed)], done(Failed, 1, true)),
            ("194 then 168: the reboot stands", vec![exits(194), exits(168), exits(0)],
                vec![R(Success), R(Success), S(AFTER)], done(Success, 168, true)),
            ("a timeout: timed out, the rest still run",
                vec![exits(0), times_out(), exits(0)],
                vec![R(Success), R(TimedOut), R(Success)], done(TimedOut, 0, false)),
            ("a timeout outweighs a failure", vec![exits(1), times_out()],
                vec![R(Failed), R(TimedOut)], done(TimedOut, 137, false)),
            ("a timed-out step that exited 194 asks for no reboot",
                vec![StepCase { ends: Ended { exit_code: 194, timed_out: true, cancelled: false, error: false }, ..exits(0) }],
                vec![R(TimedOut)], done(TimedOut, 194, false)),
            ("cancelled mid-step: later steps never start",
                vec![exits(0), killed(137), after_cancel(exits(0)), after_cancel(exits(0))],
                vec![R(Success), R(Cancelled), C, C], done(Cancelled, 137, false)),
            ("cancelled before anything started", vec![after_cancel(exits(0)), after_cancel(exits(0))],
                vec![C, C], done(Cancelled, 0, false)),
            ("a cancellation outweighs a timeout and a failure",
                vec![exits(1), times_out(), killed(137)],
                vec![R(Failed), R(TimedOut), R(Cancelled)], done(Cancelled, 137, false)),
            ("a cancelled step that exited 194 asks for no reboot", vec![killed(194)],
                vec![R(Cancelled)], done(Cancelled, 194, false)),
            ("a step started before the cancel is picked up and runs to its end",
                vec![StepCase { started: true, ..after_cancel(exits(0)) }, after_cancel(exits(0))],
                vec![R(Success), C], done(Cancelled, 0, false)),
            ("a cancelled step that exited 168: the rest are cancelled",
                vec![killed(168), after_cancel(exits(0))],
                vec![R(Cancelled), C], done(Cancelled, 168, false)),
            ("cancelled after 168: steps not started are cancelled, not skipped",
                vec![exits(168), after_cancel(exits(0))],
                vec![R(Success), C], done(Cancelled, 168, false)),
            ("an unmet precondition skips one step, with its own reason",
                vec![exits(0), unmet(exits(1)), exits(5)],
                vec![R(Success), S(PRE), R(Failed)], done(Failed, 5, false)),
            ("after 168 a step's own precondition reason wins",
                vec![exits(168), unmet(exits(0)), exits(0)],
                vec![R(Success), S(PRE), S(AFTER)], done(Success, 168, false)),
            ("only skipped steps: success, code 0", vec![unmet(exits(1))],
                vec![S(PRE)], done(Success, 0, false)),
            ("a step that could not start (-1) fails", vec![exits(-1), exits(0)],
                vec![R(Failed), R(Success)], done(Failed, 0, false)),
            ("killed by a signal (128 + n) fails", vec![exits(143)],
                vec![R(Failed)], done(Failed, 143, false)),
        ];
        for (name, steps, want_steps, want) in table {
            let (got_steps, got) = fold(&steps);
            assert_eq!(got_steps, want_steps, "{name}: the steps");
            assert_eq!(got, want, "{name}: the outcome");
            // The outcome's status is the plain fold over the steps' statuses.
            let statuses = got_steps.iter().map(|g| match g {
                R(s) => *s,
                S(_) => Success,
                C => Cancelled,
            });
            assert_eq!(overall(statuses), got.status, "{name}: overall()");
        }
    }

    #[test]
    fn overall_status_weighs_cancelled_then_timed_out_then_failed() {
        let table: &[(&[Status], Status)] = &[
            (&[], Success),
            (&[Success, Success], Success),
            (&[Success, Failed], Failed),
            (&[TimedOut, Failed, Success], TimedOut),
            (&[Failed, Cancelled, TimedOut], Cancelled),
        ];
        for (steps, want) in table {
            assert_eq!(overall(steps.iter().copied()), *want, "{steps:?}");
        }
    }
}
