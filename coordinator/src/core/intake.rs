//! What agents send back: invocation reports (started, with live output;
//! refused; finished), certificate renewals and inventory uploads.

use tether_ssm::state::Detail;
use tether_store::{
    Finish, InstanceRow, InvocationResult, OutputChunk, PluginResult, Start, WriteOp,
};
use tether_util::time::now_ms;
use tracing::{info, warn};

use super::{AgentError, Coordinator};
use crate::associations::{self, InventoryUpload};

/// One invocation's report, as the gRPC edge decoded it.
#[derive(Clone, Debug)]
pub enum Report {
    /// The invocation runs; any live output of its running step comes along.
    Started {
        command_id: String,
        started_ms: Option<i64>,
        output: Vec<OutputChunk>,
    },
    /// The agent refused the envelope (a signature, an address, an expiry…).
    Refused { command_id: String, why: String },
    /// The invocation ended.
    Finished {
        command_id: String,
        result: InvocationResult,
    },
    /// A report without a state: nothing to do but say so.
    Unknown { command_id: String },
}

impl Coordinator {
    /// Stores what an agent reports. Idempotent: a report for an invocation
    /// that is already terminal changes nothing.
    pub async fn report(&self, id: &str, reports: Vec<Report>) -> Result<(), AgentError> {
        let now = now_ms();
        self.seen(id, None);
        for r in reports {
            match r {
                Report::Started {
                    command_id,
                    started_ms,
                    output,
                } => {
                    // Batched with the other hot-path writes: 10,000 agents
                    // acknowledging at once must not take SQLite's write lock
                    // 10,000 times.
                    let op = WriteOp::Start(Start {
                        command_id: command_id.clone(),
                        instance_id: id.to_string(),
                        start_ms: started_ms,
                    });
                    let (mut known, _) = self.write(op).await?;
                    for chunk in &output {
                        known |= self.store.append_output(&command_id, id, chunk).await?;
                    }
                    // Neither took: already terminal (a late report), or not
                    // this instance's to report at all.
                    if !known {
                        self.unless_invocation(id, &command_id, "started").await?;
                    }
                }
                Report::Refused { command_id, why } => {
                    // Only an invocation the agent never accepted can fail this
                    // way; a refused replay of a finished one changes nothing.
                    warn!(instance_id = %id, %command_id, detail = %why,
                        "agent refused a command envelope");
                    let status = self.store.invocation_status(&command_id, id).await?;
                    if status.is_none() {
                        not_sent(id, &command_id, "refused");
                    }
                    if status.is_some_and(|status| status == "Pending") {
                        let result = refused(&why, now);
                        self.store
                            .finish_invocation(&command_id, id, &result, now)
                            .await?;
                    }
                }
                Report::Unknown { command_id } => {
                    warn!(instance_id = %id, %command_id, "report without a state ignored");
                }
                Report::Finished { command_id, result } => {
                    let detail = result.detail;
                    let op = WriteOp::Finish(Finish {
                        command_id,
                        instance_id: id.to_string(),
                        result,
                    });
                    let (stored, op) = self.write(op).await?;
                    if let WriteOp::Finish(f) = op {
                        if stored {
                            self.ring_waiting(&f.command_id).await?;
                            info!(instance_id = %id, command_id = %f.command_id, status = detail.as_str(), "invocation finished");
                        } else {
                            // A result sent again is normal; one for another's command is not.
                            self.unless_invocation(id, &f.command_id, "finished")
                                .await?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Logs a report for a command this instance was never sent (an
    /// invocation of another instance's, or of no command at all): it
    /// changes nothing, but it means an agent is confused or misbehaving.
    async fn unless_invocation(
        &self,
        instance_id: &str,
        command_id: &str,
        what: &str,
    ) -> Result<(), AgentError> {
        if self
            .store
            .invocation_status(command_id, instance_id)
            .await?
            .is_none()
        {
            not_sent(instance_id, command_id, what);
        }
        Ok(())
    }

    /// A new client certificate for the instance's new key.
    pub async fn renew_certificate(
        &self,
        instance: &InstanceRow,
        csr_pem: &str,
    ) -> Result<String, AgentError> {
        self.pki
            .issue_client_cert(&instance.instance_id, csr_pem, self.client_cert_lifetime)
            .map_err(|e| AgentError::Internal(e.to_string()))
    }

    /// Stores an inventory upload; gives back the types to send in full.
    pub async fn put_inventory(
        &self,
        instance: &InstanceRow,
        upload: InventoryUpload,
    ) -> Result<Vec<String>, AgentError> {
        Ok(associations::put_inventory(&self.store, &instance.instance_id, upload).await?)
    }
}

fn not_sent(instance_id: &str, command_id: &str, what: &str) {
    warn!(
        %instance_id,
        %command_id,
        report = what,
        "report ignored: this instance has no invocation of that command (another node's command, or none)"
    );
}

/// The outcome of an envelope the agent refused.
fn refused(why: &str, now: i64) -> InvocationResult {
    InvocationResult {
        detail: Detail::Failed,
        response_code: -1,
        start_ms: None,
        end_ms: Some(now),
        plugins: vec![PluginResult {
            name: "envelope".into(),
            detail: Detail::Failed,
            response_code: -1,
            start_ms: None,
            end_ms: Some(now),
            stdout: Vec::new(),
            stderr: format!("the agent refused the command envelope: {why}").into_bytes(),
            stdout_truncated: false,
            stderr_truncated: false,
        }],
    }
}
