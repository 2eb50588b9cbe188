//! Tether's rotation of the CA and the command-signing key
//! (`DescribeTrustRotation`, `StartTrustRotation`, `SwitchTrustRotation`,
//! `FinishTrustRotation`): each step is taken in the shared secrets
//! directory (`pki`), in force on this replica at once and on every other
//! within `limits::TRUST_RELOAD_INTERVAL`; agents follow through their
//! trust bundle at their next poll. Served on the operator channel only.

use serde_json::{Value, json};
use tether_ssm::ApiError;
use tether_util::time::now_ms;

use super::wire::ts;
use crate::core::Coordinator;
use crate::pki::{self, RotationError};

/// The answer of every step: where the rotation stands.
fn rotation_json(c: &Coordinator, r: &pki::Rotation) -> Value {
    let keys = c.pki.keys();
    let mut v = json!({
        "Generation": r.generation.max(1),
        "Phase": r.phase.name(),
        "CaPin": pki::ca_pin(&keys.ca_cert_der),
        "TrustedCaPins": keys.trusted_ca_ders.iter().map(|d| pki::ca_pin(d)).collect::<Vec<_>>(),
        "CommandSigningPublicKey": hex::encode(c.pki.signing_public_key()),
    });
    let dates = [
        (
            "PreviousClientCertificatesAcceptedUntil",
            r.previous_accepted_until_ms,
        ),
        ("StartedDate", r.started_ms),
        ("SwitchedDate", r.switched_ms),
        ("FinishedDate", r.finished_ms),
    ];
    for (name, ms) in dates {
        if let Some(ms) = ms {
            v[name] = ts(ms);
        }
    }
    json!({ "Rotation": v })
}

fn api_error(op: &str, e: RotationError) -> ApiError {
    match e {
        RotationError::WrongPhase { .. } => {
            ApiError::new("IncorrectRotationStateException", e.to_string())
        }
        RotationError::Pki(e) => ApiError::new("InternalServerError", format!("{op}: {e}")),
    }
}

pub(super) async fn describe(c: &Coordinator) -> Result<Value, ApiError> {
    let r = c
        .pki
        .rotation()
        .map_err(|e| api_error("DescribeTrustRotation", e.into()))?;
    Ok(rotation_json(c, &r))
}

/// Runs one step off the async threads (it writes key files under a lock).
async fn step(
    c: &Coordinator,
    op: &'static str,
    f: impl FnOnce(&pki::Pki) -> Result<pki::Rotation, RotationError> + Send + 'static,
) -> Result<Value, ApiError> {
    let pki = c.pki.clone();
    let r = tokio::task::spawn_blocking(move || f(&pki))
        .await
        .map_err(|e| ApiError::new("InternalServerError", format!("{op}: {e}")))?
        .map_err(|e| api_error(op, e))?;
    tracing::info!(
        operation = op,
        generation = r.generation,
        phase = r.phase.name(),
        ca_pin = %c.pki.pin(),
        "trust rotation step taken"
    );
    Ok(rotation_json(c, &r))
}

pub(super) async fn start(c: &Coordinator) -> Result<Value, ApiError> {
    step(c, "StartTrustRotation", |p| p.start_rotation(now_ms())).await
}

pub(super) async fn switch(c: &Coordinator) -> Result<Value, ApiError> {
    let lifetime = c.client_cert_lifetime;
    step(c, "SwitchTrustRotation", move |p| {
        p.switch_rotation(now_ms(), lifetime)
    })
    .await
}

pub(super) async fn finish(c: &Coordinator) -> Result<Value, ApiError> {
    step(c, "FinishTrustRotation", |p| p.finish_rotation(now_ms())).await
}
