//! The words the results table uses for what happened: a step's resolution and an event's kind.
//! Typed here, written as text in both databases.

use std::fmt;

use serde::{Serialize, Serializer};

/// Why a step stopped where it did, beside its status: what the engine, a person or a
/// condition decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    /// It failed for good and the run went on (`on_failure: continue`) or ended.
    Failure,
    /// Someone pressed Skip on its pause.
    Decision,
    /// The run was aborted while it was paused or waiting.
    Abort,
    /// Its `if:` was false.
    Condition,
    /// A step it needs did not succeed.
    Dependency,
}

super::text_enum!(Resolution {
    Failure => "failure",
    Decision => "decision",
    Abort => "abort",
    Condition => "condition",
    Dependency => "dependency",
});

macro_rules! event_kinds {
    ($($(#[$doc:meta])* $v:ident => $s:literal),* $(,)?) => {
        /// What an event log entry records. A kind this version does not know (written by a
        /// newer one) reads back as [`EventKind::Other`] rather than failing the whole log.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum EventKind {
            $($(#[$doc])* $v,)*
            Other(String),
        }

        impl EventKind {
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$v => $s,)*
                    Self::Other(s) => s,
                }
            }
        }

        impl From<&str> for EventKind {
            fn from(s: &str) -> Self {
                match s {
                    $($s => Self::$v,)*
                    other => Self::Other(other.to_string()),
                }
            }
        }
    };
}

event_kinds! {
    RunRequested => "run_requested",
    RequestApproved => "request_approved",
    RequestCancelled => "request_cancelled",
    /// The pipeline changed under a pending request: offramp cancelled it.
    RequestStale => "request_stale",
    RunApproved => "run_approved",
    RunCreated => "run_created",
    RunStarted => "run_started",
    RunClaimed => "run_claimed",
    RunResumed => "run_resumed",
    RunPaused => "run_paused",
    RunSucceeded => "run_succeeded",
    RunFailed => "run_failed",
    RunAborted => "run_aborted",
    StepStarted => "step_started",
    StepFinished => "step_finished",
    StepFailed => "step_failed",
    StepPaused => "step_paused",
    StepSkipped => "step_skipped",
    /// A step that is not idempotent was interrupted: whether it changed anything is unknown.
    StepOutcomeUnknown => "step_outcome_unknown",
    AttemptStarted => "attempt_started",
    AttemptFailed => "attempt_failed",
    /// A mutating request written ahead, before it is sent (the audit trail).
    RequestSent => "request_sent",
    RequestAnswered => "request_answered",
    /// A person's Retry / Skip / Abort.
    Decision => "decision",
    PauseReminder => "pause_reminder",
    /// A request refused at the front door (not an approver, bad input…).
    Refused => "refused",
    ApproverAdded => "approver_added",
    ApproverRemoved => "approver_removed",
}

impl From<String> for EventKind {
    fn from(s: String) -> Self {
        match EventKind::from(s.as_str()) {
            EventKind::Other(_) => EventKind::Other(s),
            known => known,
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, not `write_str`: tables align kinds with `{:<16}`.
        f.pad(self.as_str())
    }
}

impl Serialize for EventKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl PartialEq<str> for EventKind {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for EventKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    #[test]
    fn each_kind_reads_back_as_itself_and_unknown_ones_are_kept() {
        let known = [EventKind::RunRequested, EventKind::Decision, EventKind::StepOutcomeUnknown, EventKind::Refused];
        for kind in known {
            assert_eq!(EventKind::from(kind.as_str()), kind);
            assert_eq!(EventKind::from(kind.as_str().to_string()), kind);
            assert_eq!(serde_json::to_value(&kind).unwrap(), serde_json::json!(kind.as_str()));
        }
        // Tables align kinds and statuses with width specifiers.
        assert_eq!(format!("[{:<14}]", EventKind::RunCreated), "[run_created   ]");
        assert_eq!(format!("[{:>7}]", Resolution::Abort), "[  abort]");
        let newer = EventKind::from("run_teleported");
        assert_eq!(newer, EventKind::Other("run_teleported".into()));
        assert_eq!(newer, "run_teleported");
    }

    #[test]
    fn resolutions_round_trip_and_an_unknown_one_is_corrupt() {
        for r in [
            Resolution::Failure,
            Resolution::Decision,
            Resolution::Abort,
            Resolution::Condition,
            Resolution::Dependency,
        ] {
            assert_eq!(Resolution::from_str(r.as_str()).unwrap(), r);
            assert_eq!(serde_json::to_value(r).unwrap(), serde_json::json!(r.as_str()));
        }
        assert!(Resolution::from_str("vibes").is_err());
    }
}
